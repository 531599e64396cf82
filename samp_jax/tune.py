"""`samp-jax tune`: measure candidate plans, recommend one, write the report, store the plan.

Candidates, as in SAMP: for each mode family (ffn_int8, full_int8, ffn_fp8,
full_fp8) the plans with 0..L quantized layers, their unquantized parts in the
`dtype` asked for. Which layers go first is ours to choose: "sensitivity"
quantizes first the layers whose quantization alone costs least on the dev set;
"first" and "last" are the fixed orders to compare.

The reference every plan is measured against (speedup, accuracy lost, the
allocation rules' index 0) is the fastest float plan the device runs: fp16,
bf16 and fp32 are all measured, and the one with the lowest median latency is
the reference. A quantized plan is recommended only when it is faster than the
reference by more than the latency spreads (`samp_jax.allocator.clearly_faster`):
each latency is the median of `repeats` timed runs, its spread their
interquartile range.

A bi-encoder (a checkpoint without a task head) is tuned on matching: a pair
matches when the cosine similarity of its embeddings is >= a threshold, chosen
as the F1-maximising threshold of the reference float plan on the dev set and
held fixed for every other plan, so that all plans are judged by the same rule.

Measurements are cached in the checkpoint (`tune_cache.json`), keyed by the
plan, the scales, the dev set (and a bi-encoder's threshold) and, for latency,
the device and profile. Latency depends only on how many layers run in each
mode (every layer has the same shapes), so plans with the same modes in another
order share one timing. The cache holds each latency's timed runs; a damaged
cache is reported once and rebuilt, which costs only time.

Latencies may come from elsewhere instead (a GPU benchmark's records, say): pass
`Tuner(..., latency=source)`, a function of the plan giving its median in ms or a
`Timing`. The tuner then never times a plan itself and caches nothing for latency.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import jax
import numpy as np
from tqdm.auto import tqdm

from pallas_kernels import default_device
from samp_jax.allocator import (
    DEFAULT_RULE,
    RULES,
    Measured,
    NoFeasiblePlan,
    clearly_faster,
    fastest_above,
    most_accurate_under,
    rule_name,
    top_by_ratio,
)
from samp_jax.checkpoint import Checkpoint, load_checkpoint, set_default_plan
from samp_jax.evaluation import TASK_METRICS, DevSet, check_model_task, evaluate, headline, label_indices, pair_labels
from samp_jax.fileio import atomic_write_text
from samp_jax.layerwise import LayerwiseModel
from samp_jax.model import SampModel
from samp_jax.plan import LayerMode, Plan
from samp_jax.quant.build import check_plan
from samp_jax.quant.scales import Scales

log = logging.getLogger(__name__)

FAMILIES = ("ffn_int8", "full_int8", "ffn_fp8", "full_fp8")
ORDERS = ("sensitivity", "first", "last")
CACHE_FILE = "tune_cache.json"
FLOAT_DTYPES = ("fp16", "bf16", "fp32")  # the float plans measured; the fastest is the reference (ties: the first)


@dataclasses.dataclass
class PlanResult:
    plan: str
    family: str
    order: str
    layers: int  # quantized layers
    metrics: dict[str, float]
    accuracy: float  # the task's headline metric
    latency_ms: float  # median of the timed runs
    latency_q1_ms: float  # the interquartile range of the timed runs: the latency's spread
    latency_q3_ms: float

    def measured(self) -> Measured:
        return Measured(self.plan, self.accuracy, self.latency_ms, self.latency_q1_ms, self.latency_q3_ms)


@dataclasses.dataclass
class TuneReport:
    meta: dict[str, Any]
    sensitivity: dict[str, list[float]]
    results: list[PlanResult]
    recommendation: PlanResult | None
    reason: str
    family_picks: dict[str, str]
    top5: list[str]
    infeasible: str | None = None
    floats: list[PlanResult] = dataclasses.field(default_factory=list)  # fp16, bf16, fp32
    reference: PlanResult | None = None  # the fastest of `floats`


@dataclasses.dataclass(frozen=True)
class Timing:
    """A latency over repeated runs: the median (the headline) and the interquartile range [q1, q3]."""

    median: float
    q1: float
    q3: float

    @classmethod
    def of(cls, times_ms: Sequence[float]) -> Timing:
        med = statistics.median(times_ms)
        q1, q3 = (float(q) for q in np.percentile(times_ms, [25, 75]))
        return cls(med, min(q1, med), max(q3, med))  # the median inside its spread despite rounding


def check_profile(batch: Any, seq: Any, repeats: Any, max_seq_len: int | None = None) -> None:
    """ValueError naming the option unless batch >= 1, 1 <= seq <= max_seq_len and repeats >= 1 (all integers)."""

    def is_int(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not is_int(batch) or batch < 1:
        raise ValueError(f"batch={batch!r}: --batch, the latency profile's batch size, must be an integer >= 1")
    top = "" if max_seq_len is None else f" and <= the model's max_seq_len={max_seq_len}"
    if not is_int(seq) or seq < 1 or (max_seq_len is not None and seq > max_seq_len):
        raise ValueError(f"seq={seq!r}: --seq, the latency profile's sequence length, must be an integer >= 1{top}")
    if not is_int(repeats) or repeats < 1:
        raise ValueError(f"repeats={repeats!r}: --repeats, the timed runs per latency, must be an integer >= 1")


def measure_times(model: SampModel, batch: int, seq: int, *, warmup: int = 3, repeats: int = 20,
                  kind: str = "head") -> list[float]:
    """Milliseconds of each of `repeats` runs of the model's compiled executable (`kind`) at (batch, seq),
    on random real-token ids, after `warmup` untimed runs."""
    check_profile(batch, seq, repeats, model.config.max_seq_len)
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, model.config.vocab_size, (batch, seq)).astype(np.int32)
    mask = np.ones_like(ids)
    run = model.compiled(kind, batch, seq)
    args = [jax.device_put(a) for a in (ids, mask, np.zeros_like(ids))]
    for _ in range(warmup):
        jax.block_until_ready(run(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run(*args))
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def measure_latency(model: SampModel, batch: int, seq: int, *, warmup: int = 3, repeats: int = 20,
                    kind: str = "head") -> float:
    """Median milliseconds of the model's compiled executable at (batch, seq) on random real-token ids."""
    return statistics.median(measure_times(model, batch, seq, warmup=warmup, repeats=repeats, kind=kind))


LatencySource: TypeAlias = Callable[[Plan], "float | Timing"]
"""A plan's latency from elsewhere than this machine's clock: its median in ms, or a `Timing` with its spread."""


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cache_problem(cache: Any) -> str | None:
    """What is wrong with a loaded measurement cache, or None where it has the shape `Tuner` writes.

    A latency stored as a bare number (a median without its runs) is well formed but stale:
    `Tuner.timing` measures it again.
    """
    if not isinstance(cache, dict):
        return f"it holds a JSON {type(cache).__name__}, not an object"
    for part in ("accuracy", "latency"):
        if not isinstance(cache.get(part), dict):
            return f"its {part!r} entry is {type(cache.get(part)).__name__}, not an object"
    for key, m in cache["accuracy"].items():
        if not isinstance(m, dict) or not all(isinstance(k, str) and _is_number(v) for k, v in m.items()):
            return f"accuracy entry {key!r} is not an object of numbers"
    for key, t in cache["latency"].items():
        if _is_number(t):
            continue
        times = t.get("times_ms") if isinstance(t, dict) else None
        if not (isinstance(times, list) and times and all(_is_number(x) and 0 < x < math.inf for x in times)):
            return f"latency entry {key!r} holds no positive times_ms"
    return None


def load_cache(path: Path) -> dict[str, Any]:
    """The measurement cache at `path`; an empty one if there is none, or (with one warning) if it is damaged."""
    fresh: dict[str, Any] = {"accuracy": {}, "latency": {}}
    if not path.is_file():
        return fresh
    try:
        cache = json.loads(path.read_text(encoding="utf-8"))
        problem = _cache_problem(cache)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        problem = str(e)
    if problem is not None:  # a damaged cache costs only time: say so, start afresh
        log.warning("ignoring damaged measurement cache %s (%s); measuring again", path, problem)
        return fresh
    return cache


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Tuner:
    """Measures plans of one checkpoint on one dev set and device profile, with a persistent cache.

    Everything that can be checked without measuring is checked here: the profile (batch,
    seq, repeats), the dtype and probs, the model's task against the dev set's, the gold
    labels and the activation scales.
    """

    def __init__(self, checkpoint: str | Path, dev: DevSet, *, batch: int = 32, seq: int = 128,
                 dtype: str = "fp16", probs: str = "uint8", progress: bool = True, repeats: int = 20,
                 layerwise: bool = False, latency: LatencySource | None = None, smooth: str = ""):
        """`layerwise`: measure accuracy with `LayerwiseModel` (compiled per layer mode, not per plan).
        `latency`: where plans' latencies come from instead of timing them here (see `LatencySource`).
        `smooth`: the outlier migration strength every plan with a `full_*` layer takes (`Plan.smooth`)."""
        check_profile(batch, seq, repeats)
        if not len(dev):
            raise ValueError("the dev set holds no examples")
        self.path = Path(checkpoint)
        self.ckpt: Checkpoint = load_checkpoint(self.path)
        check_profile(batch, seq, repeats, self.ckpt.config.max_seq_len)
        kind = self.ckpt.task.kind
        check_model_task(dev.task, kind, self.path)
        self.bi_encoder = kind == "encoder"  # matching by cosine similarity >= self.threshold
        if self.bi_encoder:
            pair_labels(dev.labels)
        elif dev.task != "ner":
            label_indices(dev.labels, self.ckpt.task.labels)
        if self.ckpt.scales is None:
            raise ValueError(f"{self.path} has no activation scales: run `samp-jax calibrate` first")
        self.scales: Scales = self.ckpt.scales
        self.dev, self.batch, self.seq, self.dtype, self.probs = dev, batch, seq, dtype, probs
        self.smooth = smooth
        self.progress, self.repeats, self.layerwise = progress, repeats, layerwise
        self.latency_source = latency
        self.num_layers = self.ckpt.config.num_layers
        self.plan(["fp16"] * self.num_layers)  # validates dtype and probs
        if smooth:  # validates the strength, and that the scales have the per-channel ranges it needs
            check_plan(self.plan(["full_int8"] * self.num_layers), self.ckpt.config, self.ckpt.scales)
        self.threshold: float | None = None
        self._output = "embed" if self.bi_encoder else "head"  # the executable a served plan runs
        device = default_device()
        self.device = f"{device.platform}:{device.device_kind}"
        scales = self.scales
        self._acc_key = _fingerprint([dev.task, dev.inputs, dev.labels, scales.method, scales.activations])
        self._lat_key = _fingerprint([self.device, jax.__version__, batch, seq])
        self.cache_path = self.path / CACHE_FILE
        self.cache = load_cache(self.cache_path)
        self.timings: dict[str, Timing] = {}  # the timings `latency` gave in this run, by latency key
        self.hits = 0

    def plan(self, layers: Sequence[str]) -> Plan:
        smooth = self.smooth if any(LayerMode.parse(m).quantizes_attention for m in layers) else ""
        return Plan(tuple(layers), dtype=self.dtype, probs=self.probs, smooth=smooth)

    def float_plan(self, dtype: str) -> Plan:
        return Plan.uniform("fp16", self.num_layers, dtype=dtype, probs=self.probs)

    def _save(self) -> None:
        # atomic: a killed run leaves the old cache or the new; a link at the path is replaced, never followed
        atomic_write_text(self.cache_path, json.dumps(self.cache, indent=1, sort_keys=True) + "\n")

    def _accuracy_key(self, plan: Plan, threshold: float | None) -> str:
        key = f"{self._acc_key}|{plan.to_string()}" + ("|layerwise" if self.layerwise else "")
        if plan.smooth:  # a smoothed plan also reads the per-channel ranges
            key += "|" + _fingerprint([{k: v.tolist() for k, v in sorted(self.scales.channels.items())}])
        if self.bi_encoder:  # None: the threshold best for this plan
            key += "|cos>=" + ("best" if threshold is None else repr(float(threshold)))
        return key

    def _metrics(self, plan: Plan, threshold: float | None) -> dict[str, float]:
        key = self._accuracy_key(plan, threshold)
        cached = self.cache["accuracy"].get(key)
        needed = [TASK_METRICS[self.dev.task]] + (["threshold"] if self.bi_encoder else [])
        if cached is not None and all(k in cached for k in needed):
            self.hits += 1
            return cached
        model = (LayerwiseModel if self.layerwise else SampModel)(self.ckpt, plan)
        m = evaluate(model, self.dev, threshold=threshold)
        self.cache["accuracy"][key] = m
        if self.bi_encoder and threshold is None:  # the same numbers as evaluating at the threshold it chose
            self.cache["accuracy"][self._accuracy_key(plan, m["threshold"])] = m
        self._save()
        return m

    def choose_threshold(self, plan: Plan) -> float:
        """A bi-encoder's matching threshold: the F1-maximising one for `plan` on the dev set; held for `metrics`."""
        if not self.bi_encoder:
            raise ValueError(f"a matching threshold applies to a bi-encoder, {self.path} is {self.ckpt.task.kind!r}")
        self.threshold = float(self._metrics(plan, None)["threshold"])
        return self.threshold

    def metrics(self, plan: Plan) -> dict[str, float]:
        """The plan's dev-set metrics; a bi-encoder's at the threshold `choose_threshold` set (`run` sets it)."""
        if self.bi_encoder and self.threshold is None:
            raise ValueError("a bi-encoder's matching threshold is not chosen yet: call choose_threshold(reference plan)")
        return self._metrics(plan, self.threshold)

    def _latency_key(self, plan: Plan) -> str:
        modes = ",".join(f"{m}x{n}" for m, n in sorted(Counter(plan.layers).items()))
        key = f"{self._lat_key}|{modes}|{plan.dtype}|{plan.embedding}|{plan.probs}"
        key += f"|smooth:{plan.smooth}" if plan.smooth else ""  # timed, not assumed: a vector load per LayerNorm
        return key if self._output == "head" else f"{key}|{self._output}"

    def timing(self, plan: Plan) -> Timing:
        """The plan's latency: median and interquartile range of `repeats` timed runs (cached), or what
        the latency source gives (a bare median has no spread)."""
        if self.latency_source is not None:
            return _as_timing(self.latency_source(plan), plan)
        key = self._latency_key(plan)
        entry = self.cache["latency"].get(key)
        if isinstance(entry, dict):
            self.hits += 1
            return Timing.of(entry["times_ms"])
        # absent, or a median stored without its runs: measure again
        times = measure_times(SampModel(self.ckpt, plan), self.batch, self.seq, repeats=self.repeats,
                              kind=self._output)
        self.cache["latency"][key] = {"times_ms": times}
        self._save()
        return Timing.of(times)

    def latency(self, plan: Plan) -> float:
        """The plan's median latency in ms (`timing`'s; `spread` then gives its interquartile range)."""
        t = self.timing(plan)
        self.timings[self._latency_key(plan)] = t
        return t.median

    def spread(self, plan: Plan, median: float) -> tuple[float, float]:
        """The interquartile range `latency` found for the plan, if it gave this median; else no spread."""
        t = self.timings.get(self._latency_key(plan))
        return (t.q1, t.q3) if t is not None and t.median == median else (median, median)

    def result(self, plan: Plan, family: str, order: str, layers: int) -> PlanResult:
        m = self.metrics(plan)
        ms = self.latency(plan)
        q1, q3 = self.spread(plan, ms)
        return PlanResult(plan.to_string(), family, order, layers, m, headline(self.dev.task, m), ms, q1, q3)

    def sensitivity(self, family: str) -> list[float]:
        """The headline metric with only layer i quantized in `family`, for each layer i."""
        out = []
        for i in range(self.num_layers):
            layers = ["fp16"] * self.num_layers
            layers[i] = family
            out.append(headline(self.dev.task, self.metrics(self.plan(layers))))
        return out

    def candidates(self, family: str, order: str, sens: list[float]) -> list[tuple[int, Plan]]:
        if order == "sensitivity":
            ranked = sorted(range(self.num_layers), key=lambda i: (-sens[i], i))
        elif order == "first":
            ranked = list(range(self.num_layers))
        elif order == "last":
            ranked = list(reversed(range(self.num_layers)))
        else:
            raise ValueError(f"unknown layer order {order!r}; known: {ORDERS}")
        plans = []
        for k in range(self.num_layers + 1):
            layers = ["fp16"] * self.num_layers
            for i in ranked[:k]:
                layers[i] = family
            plans.append((k, self.plan(layers)))
        return plans

    def run(self, families: Sequence[str] = FAMILIES, orders: Sequence[str] = ORDERS, *,
            max_latency_ms: float | None = None, min_accuracy: float | None = None,
            rule: str = DEFAULT_RULE) -> TuneReport:
        """Measures the float plans and the candidates; recommends one of them.

        Recommendable: the float plans, and the quantized plans `clearly_faster` than the
        reference (the fastest float plan). With `max_latency_ms`, the most accurate of them
        under it; with `min_accuracy`, the fastest at or above it; with neither, `rule` walks
        each family's plans of the first order from the reference, and of the family picks
        the best speedup / accuracy loss over the reference is taken, or the reference if no
        pick is faster than it. `rule` may be an alias ("vs_fp16" for "vs_reference").
        """
        families, orders = list(families), list(orders)
        if not families or not orders:
            raise ValueError(f"need at least one mode family and one layer order, got {families} and {orders}")
        for f in families:
            if f not in FAMILIES:
                raise ValueError(f"unknown mode family {f!r}; known: {FAMILIES}")
        for o in orders:
            if o not in ORDERS:
                raise ValueError(f"unknown layer order {o!r}; known: {ORDERS}")
        rule = rule_name(rule)
        float_plans = [self.float_plan(d) for d in FLOAT_DTYPES]
        speed = {}
        for p in tqdm(float_plans, desc="float plans: latency", disable=not self.progress):
            speed[p.dtype] = self.latency(p)
        ref_dtype = min(FLOAT_DTYPES, key=lambda d: (speed[d], FLOAT_DTYPES.index(d)))
        if self.bi_encoder:
            self.choose_threshold(self.float_plan(ref_dtype))
        floats = [self.result(p, "float", "", 0) for p in tqdm(float_plans, desc="float plans: accuracy",
                                                                 disable=not self.progress)]
        ref = floats[FLOAT_DTYPES.index(ref_dtype)]
        sens = {}
        if "sensitivity" in orders:
            for f in tqdm(families, desc="layer sensitivity", disable=not self.progress):
                sens[f] = self.sensitivity(f)
        jobs = [(f, o, k, p) for f in families for o in orders for k, p in self.candidates(f, o, sens.get(f, []))]
        results = [self.result(p, f, o, k) for f, o, k, p in tqdm(jobs, desc="plans", unit="plan",
                                                                   disable=not self.progress)]
        meas = {r.plan: r.measured() for r in floats + results}
        by_plan = {r.plan: r for r in results + floats}
        base = meas[ref.plan]
        float_names = {r.plan for r in floats}
        pool = [m for p, m in meas.items() if p in float_names or clearly_faster(m, base)]
        main_order = orders[0]
        picks = {}
        for f in families:
            walk = [ref] + sorted((r for r in results if r.family == f and r.order == main_order and r.layers),
                                  key=lambda r: r.layers)
            picks[f] = walk[RULES[rule]([r.accuracy for r in walk], [r.latency_ms for r in walk],
                                        [(r.latency_q1_ms, r.latency_q3_ms) for r in walk])].plan
        top5 = [p.plan for p in top_by_ratio(list(meas.values()), base, k=5)]
        infeasible = None
        recommendation = None
        try:
            if max_latency_ms is not None:
                recommendation = by_plan[most_accurate_under(pool, max_latency_ms).plan]
                reason = f"most accurate plan within {max_latency_ms:g} ms"
            elif min_accuracy is not None:
                recommendation = by_plan[fastest_above(pool, min_accuracy).plan]
                reason = f"fastest plan with {TASK_LABEL[self.dev.task]} >= {min_accuracy:g}"
            else:
                ranked = top_by_ratio([meas[p] for p in picks.values()], base, k=len(picks))
                recommendation = by_plan[ranked[0].plan] if ranked else ref
                reason = (f"accuracy-decay-aware rule ({rule}) per family over the {main_order} order; "
                          f"of the family picks, the best speedup / accuracy loss against {ref.plan}"
                          if ranked else
                          f"{ref.plan}, the fastest float plan: no family pick of the accuracy-decay-aware rule "
                          f"({rule}) is faster than it beyond the latency spreads")
        except NoFeasiblePlan as e:
            infeasible, reason = str(e), "no plan meets the target"
        meta = {
            "date": time.strftime("%Y-%m-%d"), "checkpoint": str(self.path), "task": self.dev.task,
            "metric": TASK_LABEL[self.dev.task], "dev_examples": len(self.dev), "device": self.device,
            "jax": jax.__version__, "profile": {"batch": self.batch, "seq": self.seq}, "dtype": self.dtype,
            "probs": self.probs, "smooth": self.smooth, "layerwise": self.layerwise, "scales": self.scales.method,
            "rule": rule,
            "orders": list(orders), "reference": ref.plan, "reference_dtype": ref_dtype, "repeats": self.repeats,
            "latency_spread": "interquartile range of the timed runs",
            "matching_threshold": self.threshold,
            "targets": {"max_latency_ms": max_latency_ms, "min_accuracy": min_accuracy}, "cache_hits": self.hits,
        }
        return TuneReport(meta, sens, results, recommendation, reason, picks, top5, infeasible, floats, ref)


def _as_timing(value: float | Timing, plan: Plan) -> Timing:
    """A latency source's answer as a `Timing`; ValueError naming the plan unless it is a positive finite latency."""
    t = value if isinstance(value, Timing) else Timing(*(float(value),) * 3) if _is_number(value) else None
    if t is None or not all(_is_number(v) and 0 < v < math.inf for v in (t.median, t.q1, t.q3)):
        raise ValueError(f"the latency source gave {value!r} for plan {plan}; a positive finite number of ms "
                         "or a Timing is expected")
    return t


TASK_LABEL = {"classification": "accuracy", "matching": "F1", "ner": "entity F1"}


def store_recommendation(checkpoint: str | Path, report: TuneReport) -> None:
    if report.recommendation is not None:
        set_default_plan(checkpoint, report.recommendation.plan)
