"""Choosing a precision plan from measured (accuracy, latency) pairs, as SAMP's allocator does.

Three questions, three rules:
- a latency ceiling: the most accurate plan under it (`most_accurate_under`);
- an accuracy floor: the fastest plan above it (`fastest_above`);
- neither: SAMP's accuracy-decay-aware rule (Algorithm 1) over one mode family
  ordered by the number of quantized layers, plus the top five plans by
  speedup / accuracy loss (`top_by_ratio`).

The reference (index 0 of a rule's walk, the baseline of `top_by_ratio`) is the
plan every other is measured against; SAMP's is its fp16 plan, `samp-jax tune`'s
is the fastest float plan the device runs (fp16, bf16 or fp32).

Latencies are medians of repeated runs and carry a spread (`Measured.latency_lo_ms`
to `latency_hi_ms`; `samp-jax tune` gives the interquartile range). A plan counts
as faster than another only when the gap between the medians exceeds the spreads,
that is when its whole spread lies below the other's (`clearly_faster`); without
spreads this is the plain comparison of the medians. Differences inside the
spreads decide nothing: a rule never takes a plan for being faster by less.

Algorithm 1 as printed (`accuracy_decay_aware`) does not reproduce the
paper's own recommendations: on its Table 2 it picks 2 of 12 quantized FFN
layers for AFQMC (paper: 8), 8 for IFLYTEK (paper: 12), 2 for TNEWS
(paper: 6); only AFQMC Fully-Quant (10) agrees. Its flaw: a plan that gains
both accuracy and speed sets `dr_min` to a negative value, after which no
plan that trades accuracy for speed can qualify. Of 72 readings searched
(reference point: running record / fp16 plan / previous plan; latency or
speedup axis; whether a both-gaining plan lowers `dr_min`; min or max), the
best, the reference reading (`accuracy_decay_aware_vs_reference`, each plan
against the paper's fp16 plan), reproduces 3 of the 4 picks the paper
states (AFQMC Fully-Quant 10, IFLYTEK 12, TNEWS 6). No rule that judges each
plan by its own loss and gain against fp16 can reproduce all four: the
paper takes AFQMC's 8-layer plan (-0.0466 accuracy for +18.7% speed) but
refuses TNEWS's (-0.0109 for +18.3%), a strictly better trade. The reference
reading is therefore the default (`DEFAULT_RULE`, "vs_reference"). "vs_fp16"
names the same rule (an alias, `RULE_ALIASES`): the rule is unchanged, only
its reference in `samp-jax tune` is the fastest float plan rather than fp16.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

Spreads = Sequence[tuple[float, float]]


def _check(accuracies: Sequence[float], latencies: Sequence[float],
           spreads: Spreads | None = None) -> list[tuple[float, float]]:
    """Validates a walk; returns each plan's latency spread (lo, hi), the median itself where none is given."""
    if len(accuracies) != len(latencies) or not accuracies:
        raise ValueError(f"need as many accuracies as latencies, got {len(accuracies)} and {len(latencies)}")
    for i, t in enumerate(latencies):
        if not t > 0:
            raise ValueError(f"latency {i} is {t}; latencies must be positive")
    if spreads is None:
        return [(t, t) for t in latencies]
    if len(spreads) != len(latencies):
        raise ValueError(f"need a spread per latency, got {len(spreads)} for {len(latencies)}")
    for i, ((lo, hi), t) in enumerate(zip(spreads, latencies)):
        if not lo <= t <= hi:
            raise ValueError(f"spread {i} ({lo}, {hi}) does not hold its median latency {t}")
    return [(float(lo), float(hi)) for lo, hi in spreads]


def _apart(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """The two spreads do not overlap: the latencies differ by more than their spreads."""
    return a[1] < b[0] or b[1] < a[0]


def accuracy_decay_aware(accuracies: Sequence[float], latencies: Sequence[float],
                         spreads: Spreads | None = None) -> int:
    """SAMP's Algorithm 1 exactly as printed; index i is the plan with i quantized layers (0: the reference).

    A plan whose latency does not differ from the running record's by more than their spreads
    is skipped, as the printed rule skips an unchanged latency (the rate is undefined; within
    the spreads it is noise). `spreads`: (lo, hi) per plan; None: the medians alone.
    """
    spread = _check(accuracies, latencies, spreads)
    dr_min = math.inf
    a_rec, t_rec, s_rec = accuracies[0], latencies[0], spread[0]
    best = 0
    for i in range(1, len(accuracies)):
        if not _apart(spread[i], s_rec):
            continue  # no latency change beyond the spreads (the paper's tables have none)
        dr = (accuracies[i] - a_rec) / (latencies[i] - t_rec)
        if dr < 0 or dr < dr_min:
            dr_min = dr
            a_rec, t_rec, s_rec = accuracies[i], latencies[i], spread[i]
            best = i
    return best


def accuracy_decay_aware_vs_reference(accuracies: Sequence[float], latencies: Sequence[float],
                                      spreads: Spreads | None = None) -> int:
    """Algorithm 1 with each plan measured against the reference plan (index 0).

    A faster plan that loses no accuracy against the reference is taken without
    lowering `dr_min`; otherwise the plan with the smallest accuracy lost per
    unit of latency gained over the reference so far is taken. The walk keeps
    the last plan taken. Plans not faster than the reference are never taken (a
    slower, more accurate plan would otherwise show a positive rate and
    qualify); with `spreads` ((lo, hi) per plan), faster means the plan's whole
    spread lies below the reference's.
    """
    spread = _check(accuracies, latencies, spreads)
    dr_min = math.inf
    best = 0
    for i in range(1, len(accuracies)):
        if not spread[i][1] < spread[0][0]:
            continue
        dr = (accuracies[i] - accuracies[0]) / (latencies[i] - latencies[0])
        if dr <= 0:  # no accuracy lost, latency gained
            best = i
        elif dr < dr_min:
            dr_min = dr
            best = i
    return best


accuracy_decay_aware_vs_fp16 = accuracy_decay_aware_vs_reference  # the same rule under its alias `vs_fp16`

RULES: dict[str, Callable[..., int]] = {
    "as_printed": accuracy_decay_aware,
    "vs_reference": accuracy_decay_aware_vs_reference,
}
RULE_ALIASES = {"vs_fp16": "vs_reference"}
DEFAULT_RULE = "vs_reference"


def rule_name(name: str) -> str:
    """The rule's name in `RULES` (an alias resolved); ValueError for an unknown one."""
    name = RULE_ALIASES.get(name, name)
    if name not in RULES:
        raise ValueError(f"unknown allocation rule {name!r}; known: {sorted(RULES) + sorted(RULE_ALIASES)}")
    return name


@dataclasses.dataclass(frozen=True)
class Measured:
    """One plan's measurements: accuracy, median latency and the latency's spread (None: the median alone)."""

    plan: str
    accuracy: float
    latency_ms: float
    latency_lo_ms: float | None = None
    latency_hi_ms: float | None = None

    @property
    def spread(self) -> tuple[float, float]:
        lo, hi = self.latency_lo_ms, self.latency_hi_ms
        return (self.latency_ms if lo is None else lo, self.latency_ms if hi is None else hi)


def clearly_faster(a: Measured, b: Measured) -> bool:
    """`a` is faster than `b` by more than their spreads: a's whole spread lies below b's.

    Equivalently, b's median exceeds a's by more than a's upper spread plus b's lower spread.
    Without spreads: a's median is below b's.
    """
    return a.spread[1] < b.spread[0]


class NoFeasiblePlan(ValueError):
    """No plan meets the target; `closest` holds the nearest plans (best first)."""

    def __init__(self, message: str, closest: list[Measured]):
        super().__init__(message)
        self.closest = closest


def most_accurate_under(plans: Sequence[Measured], max_latency_ms: float) -> Measured:
    """The most accurate plan at or under the latency ceiling (ties: the faster)."""
    ok = [p for p in plans if p.latency_ms <= max_latency_ms]
    if not ok:
        closest = sorted(plans, key=lambda p: p.latency_ms)[:3]
        raise NoFeasiblePlan(
            f"no plan runs within {max_latency_ms:g} ms; the fastest: "
            + ", ".join(f"{p.plan} ({p.latency_ms:.3f} ms, accuracy {p.accuracy:.4f})" for p in closest),
            closest,
        )
    return max(ok, key=lambda p: (p.accuracy, -p.latency_ms))


def fastest_above(plans: Sequence[Measured], min_accuracy: float) -> Measured:
    """The fastest plan at or above the accuracy floor.

    Of the plans that meet the floor, the fastest (lowest median) and every plan it is not
    `clearly_faster` than tie on speed; of them, the most accurate (then the lower median).
    Without spreads: the lowest median, ties to the more accurate.
    """
    ok = [p for p in plans if p.accuracy >= min_accuracy]
    if not ok:
        closest = sorted(plans, key=lambda p: -p.accuracy)[:3]
        raise NoFeasiblePlan(
            f"no plan reaches accuracy {min_accuracy:g}; the most accurate: "
            + ", ".join(f"{p.plan} ({p.accuracy:.4f}, {p.latency_ms:.3f} ms)" for p in closest),
            closest,
        )
    fastest = min(ok, key=lambda p: (p.latency_ms, -p.accuracy))
    tied = [p for p in ok if not clearly_faster(fastest, p)]
    return max(tied, key=lambda p: (p.accuracy, -p.latency_ms))


def top_by_ratio(plans: Sequence[Measured], baseline: Measured, k: int = 5) -> list[Measured]:
    """The k plans with the best speedup / accuracy loss against `baseline`.

    Plans `clearly_faster` than the baseline only; a plan that loses no accuracy
    has an infinite ratio and ranks first (by speedup among themselves).
    Speedup and loss are of the medians and the accuracies.
    """

    def key(p: Measured) -> tuple[float, float]:
        speedup = baseline.latency_ms / p.latency_ms
        loss = baseline.accuracy - p.accuracy
        return (math.inf if loss <= 0 else (speedup - 1) / loss, speedup)

    faster = [p for p in plans if clearly_faster(p, baseline) and p.plan != baseline.plan]
    return sorted(faster, key=key, reverse=True)[:k]


def pareto_front(plans: Sequence[Measured]) -> list[Measured]:
    """Plans no other plan beats on both accuracy and latency, fastest first."""
    front: list[Measured] = []
    for p in sorted(plans, key=lambda p: (p.latency_ms, -p.accuracy)):
        if not front or p.accuracy > front[-1].accuracy:
            front.append(p)
    return front
