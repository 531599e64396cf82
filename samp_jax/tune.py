"""`samp-jax tune`: measure candidate plans, recommend one, write the report, store the plan.

Candidates, as in SAMP: for each mode family (ffn_int8, full_int8, ffn_fp8,
full_fp8) the plans with 0..L quantized layers. Which layers go first is ours
to choose: "sensitivity" quantizes first the layers whose quantization alone
costs least on the dev set; "first" and "last" are the fixed orders to compare.
Measurements are cached in the checkpoint (`tune_cache.json`), keyed by the
plan, the scales, the dev set and, for latency, the device and profile.
Latency depends only on how many layers run in each mode (every layer has the
same shapes), so plans with the same modes in another order share one timing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from pallas_kernels._platform import default_device
from samp_jax.allocator import (
    DEFAULT_RULE,
    RULES,
    Measured,
    NoFeasiblePlan,
    fastest_above,
    most_accurate_under,
    top_by_ratio,
)
from samp_jax.checkpoint import Checkpoint, load_checkpoint, set_default_plan
from samp_jax.evaluation import DevSet, evaluate, headline
from samp_jax.layerwise import LayerwiseModel
from samp_jax.model import SampModel
from samp_jax.plan import Plan

log = logging.getLogger(__name__)

FAMILIES = ("ffn_int8", "full_int8", "ffn_fp8", "full_fp8")
ORDERS = ("sensitivity", "first", "last")
CACHE_FILE = "tune_cache.json"


@dataclasses.dataclass
class PlanResult:
    plan: str
    family: str
    order: str
    layers: int  # quantized layers
    metrics: dict[str, float]
    accuracy: float  # the task's headline metric
    latency_ms: float


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


def measure_latency(model: SampModel, batch: int, seq: int, *, warmup: int = 3, repeats: int = 20) -> float:
    """Median milliseconds of the model's compiled executable at (batch, seq) on random real-token ids."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, model.config.vocab_size, (batch, seq)).astype(np.int32)
    mask = np.ones_like(ids)
    run = model.executable("head", batch, seq)
    args = [jax.device_put(a) for a in (ids, mask, np.zeros_like(ids))]
    for _ in range(warmup):
        jax.block_until_ready(run(model._params, *args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(run(model._params, *args))
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Tuner:
    """Measures plans of one checkpoint on one dev set and device profile, with a persistent cache."""

    def __init__(self, checkpoint: str | Path, dev: DevSet, *, batch: int = 32, seq: int = 128,
                 dtype: str = "fp16", probs: str = "uint8", progress: bool = True, repeats: int = 20,
                 layerwise: bool = False):
        """`layerwise`: measure accuracy with `LayerwiseModel` (compiled per layer mode, not per plan)."""
        self.path = Path(checkpoint)
        self.ckpt: Checkpoint = load_checkpoint(self.path)
        if self.ckpt.scales is None:
            raise ValueError(f"{self.path} has no activation scales: run `samp-jax calibrate` first")
        self.dev, self.batch, self.seq, self.dtype, self.probs = dev, batch, seq, dtype, probs
        self.progress, self.repeats, self.layerwise = progress, repeats, layerwise
        self.num_layers = self.ckpt.config.num_layers
        device = default_device()
        self.device = f"{device.platform}:{device.device_kind}"
        scales = self.ckpt.scales
        self._acc_key = _fingerprint([dev.task, dev.inputs, dev.labels, scales.method, scales.activations])
        self._lat_key = _fingerprint([self.device, jax.__version__, batch, seq])
        self.cache_path = self.path / CACHE_FILE
        self.cache = {"accuracy": {}, "latency": {}}
        if self.cache_path.is_file():
            try:
                self.cache = json.loads(self.cache_path.read_text())
            except json.JSONDecodeError as e:  # a damaged cache costs only time: say so, start afresh
                log.warning("ignoring damaged measurement cache %s (%s); measuring again", self.cache_path, e)
        self.hits = 0

    def plan(self, layers: Sequence[str]) -> Plan:
        return Plan(tuple(layers), dtype=self.dtype, probs=self.probs)

    def _save(self) -> None:
        self.cache_path.write_text(json.dumps(self.cache, indent=1, sort_keys=True) + "\n")

    def metrics(self, plan: Plan) -> dict[str, float]:
        key = f"{self._acc_key}|{plan.to_string()}" + ("|layerwise" if self.layerwise else "")
        if key in self.cache["accuracy"]:
            self.hits += 1
            return self.cache["accuracy"][key]
        m = evaluate((LayerwiseModel if self.layerwise else SampModel)(self.ckpt, plan), self.dev)
        self.cache["accuracy"][key] = m
        self._save()
        return m

    def latency(self, plan: Plan) -> float:
        modes = ",".join(f"{m}x{n}" for m, n in sorted(Counter(plan.layers).items()))
        key = f"{self._lat_key}|{modes}|{plan.dtype}|{plan.embedding}|{plan.probs}"
        if key in self.cache["latency"]:
            self.hits += 1
            return self.cache["latency"][key]
        ms = measure_latency(SampModel(self.ckpt, plan), self.batch, self.seq, repeats=self.repeats)
        self.cache["latency"][key] = ms
        self._save()
        return ms

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
        for f in families:
            if f not in FAMILIES:
                raise ValueError(f"unknown mode family {f!r}; known: {FAMILIES}")
        if rule not in RULES:
            raise ValueError(f"unknown allocation rule {rule!r}; known: {sorted(RULES)}")
        need_sens = "sensitivity" in orders
        sens = {}
        if need_sens:
            for f in tqdm(families, desc="layer sensitivity", disable=not self.progress):
                sens[f] = self.sensitivity(f)
        jobs = [(f, o, k, p) for f in families for o in orders for k, p in self.candidates(f, o, sens.get(f, []))]
        results = []
        for f, o, k, p in tqdm(jobs, desc="plans", unit="plan", disable=not self.progress):
            m = self.metrics(p)
            results.append(PlanResult(p.to_string(), f, o, k, m, headline(self.dev.task, m), self.latency(p)))
        base = next(r for r in results if r.layers == 0)
        meas = {r.plan: Measured(r.plan, r.accuracy, r.latency_ms) for r in results}
        by_plan = {r.plan: r for r in results}
        main_order = orders[0]
        picks = {}
        for f in families:
            walk = sorted((r for r in results if r.family == f and r.order == main_order), key=lambda r: r.layers)
            picks[f] = walk[RULES[rule]([r.accuracy for r in walk], [r.latency_ms for r in walk])].plan
        top5 = [p.plan for p in top_by_ratio(list(meas.values()), meas[base.plan], k=5)]
        infeasible = None
        recommendation = None
        try:
            if max_latency_ms is not None:
                recommendation = by_plan[most_accurate_under(list(meas.values()), max_latency_ms).plan]
                reason = f"most accurate plan within {max_latency_ms:g} ms"
            elif min_accuracy is not None:
                recommendation = by_plan[fastest_above(list(meas.values()), min_accuracy).plan]
                reason = f"fastest plan with {TASK_LABEL[self.dev.task]} >= {min_accuracy:g}"
            else:
                ranked = top_by_ratio([meas[p] for p in picks.values()], meas[base.plan], k=len(picks))
                recommendation = by_plan[ranked[0].plan] if ranked else base
                reason = (f"accuracy-decay-aware rule ({rule}) per family over the {main_order} order; "
                          "of the family picks, the best speedup / accuracy loss")
        except NoFeasiblePlan as e:
            infeasible, reason = str(e), "no plan meets the target"
        meta = {
            "date": time.strftime("%Y-%m-%d"), "checkpoint": str(self.path), "task": self.dev.task,
            "metric": TASK_LABEL[self.dev.task], "dev_examples": len(self.dev), "device": self.device,
            "jax": jax.__version__, "profile": {"batch": self.batch, "seq": self.seq}, "dtype": self.dtype,
            "probs": self.probs, "layerwise": self.layerwise, "scales": self.ckpt.scales.method, "rule": rule,
            "orders": list(orders),
            "targets": {"max_latency_ms": max_latency_ms, "min_accuracy": min_accuracy}, "cache_hits": self.hits,
        }
        return TuneReport(meta, sens, results, recommendation, reason, picks, top5, infeasible)


TASK_LABEL = {"classification": "accuracy", "matching": "F1", "ner": "entity F1"}


def store_recommendation(checkpoint: str | Path, report: TuneReport) -> None:
    if report.recommendation is not None:
        set_default_plan(checkpoint, report.recommendation.plan)
