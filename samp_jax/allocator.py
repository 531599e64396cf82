"""Choosing a precision plan from measured (accuracy, latency) pairs, as SAMP's allocator does.

Three questions, three rules:
- a latency ceiling: the most accurate plan under it (`most_accurate_under`);
- an accuracy floor: the fastest plan above it (`fastest_above`);
- neither: SAMP's accuracy-decay-aware rule (Algorithm 1) over one mode family
  ordered by the number of quantized layers, plus the top five plans by
  speedup / accuracy loss (`top_by_ratio`).

Algorithm 1 as printed (`accuracy_decay_aware`) does not reproduce the
paper's own recommendations: on its Table 2 it picks 2 of 12 quantized FFN
layers for AFQMC (paper: 8), 8 for IFLYTEK (paper: 12), 2 for TNEWS
(paper: 6); only AFQMC Fully-Quant (10) agrees. Its flaw: a plan that gains
both accuracy and speed sets `dr_min` to a negative value, after which no
plan that trades accuracy for speed can qualify. Of 72 readings searched
(reference point: running record / fp16 plan / previous plan; latency or
speedup axis; whether a both-gaining plan lowers `dr_min`; min or max), the
best, `accuracy_decay_aware_vs_fp16`, reproduces 3 of the 4 picks the paper
states (AFQMC Fully-Quant 10, IFLYTEK 12, TNEWS 6). No rule that judges each
plan by its own loss and gain against fp16 can reproduce all four: the
paper takes AFQMC's 8-layer plan (-0.0466 accuracy for +18.7% speed) but
refuses TNEWS's (-0.0109 for +18.3%), a strictly better trade. The fp16-
reference reading is therefore the default (`DEFAULT_RULE`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence


def _check(accuracies: Sequence[float], latencies: Sequence[float]) -> None:
    if len(accuracies) != len(latencies) or not accuracies:
        raise ValueError(f"need as many accuracies as latencies, got {len(accuracies)} and {len(latencies)}")
    for i, t in enumerate(latencies):
        if not t > 0:
            raise ValueError(f"latency {i} is {t}; latencies must be positive")


def accuracy_decay_aware(accuracies: Sequence[float], latencies: Sequence[float]) -> int:
    """SAMP's Algorithm 1 exactly as printed; index i is the plan with i quantized layers (0: fp16)."""
    _check(accuracies, latencies)
    dr_min = math.inf
    a_rec, t_rec = accuracies[0], latencies[0]
    best = 0
    for i in range(1, len(accuracies)):
        if latencies[i] == t_rec:
            continue  # no latency change: the rate is undefined (the paper's tables have none)
        dr = (accuracies[i] - a_rec) / (latencies[i] - t_rec)
        if dr < 0 or dr < dr_min:
            dr_min = dr
            a_rec, t_rec = accuracies[i], latencies[i]
            best = i
    return best


def accuracy_decay_aware_vs_fp16(accuracies: Sequence[float], latencies: Sequence[float]) -> int:
    """Algorithm 1 with each plan measured against the fp16 plan (index 0).

    A faster plan that loses no accuracy against fp16 is taken without
    lowering `dr_min`; otherwise the plan with the smallest accuracy lost per
    unit of latency gained over fp16 so far is taken. The walk keeps the last
    plan taken. Plans no faster than fp16 are never taken (a slower, more
    accurate plan would otherwise show a positive rate and qualify).
    """
    _check(accuracies, latencies)
    dr_min = math.inf
    best = 0
    for i in range(1, len(accuracies)):
        if latencies[i] >= latencies[0]:
            continue
        dr = (accuracies[i] - accuracies[0]) / (latencies[i] - latencies[0])
        if dr <= 0:  # no accuracy lost, latency gained
            best = i
        elif dr < dr_min:
            dr_min = dr
            best = i
    return best


RULES: dict[str, Callable[[Sequence[float], Sequence[float]], int]] = {
    "as_printed": accuracy_decay_aware,
    "vs_fp16": accuracy_decay_aware_vs_fp16,
}
DEFAULT_RULE = "vs_fp16"


@dataclasses.dataclass(frozen=True)
class Measured:
    """One plan's measurements."""

    plan: str
    accuracy: float
    latency_ms: float


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
    """The fastest plan at or above the accuracy floor (ties: the more accurate)."""
    ok = [p for p in plans if p.accuracy >= min_accuracy]
    if not ok:
        closest = sorted(plans, key=lambda p: -p.accuracy)[:3]
        raise NoFeasiblePlan(
            f"no plan reaches accuracy {min_accuracy:g}; the most accurate: "
            + ", ".join(f"{p.plan} ({p.accuracy:.4f}, {p.latency_ms:.3f} ms)" for p in closest),
            closest,
        )
    return min(ok, key=lambda p: (p.latency_ms, -p.accuracy))


def top_by_ratio(plans: Sequence[Measured], baseline: Measured, k: int = 5) -> list[Measured]:
    """The k plans with the best speedup / accuracy loss against `baseline`.

    Plans faster than the baseline only; a plan that loses no accuracy has an
    infinite ratio and ranks first (by speedup among themselves).
    """

    def key(p: Measured) -> tuple[float, float]:
        speedup = baseline.latency_ms / p.latency_ms
        loss = baseline.accuracy - p.accuracy
        return (math.inf if loss <= 0 else (speedup - 1) / loss, speedup)

    faster = [p for p in plans if p.latency_ms < baseline.latency_ms and p.plan != baseline.plan]
    return sorted(faster, key=key, reverse=True)[:k]


def pareto_front(plans: Sequence[Measured]) -> list[Measured]:
    """Plans no other plan beats on both accuracy and latency, fastest first."""
    front = []
    for p in sorted(plans, key=lambda p: (p.latency_ms, -p.accuracy)):
        if not front or p.accuracy > front[-1].accuracy:
            front.append(p)
    return front
