"""bench/serve.py's rising rates stop where the server saturates, past `--max-rate`, or at the end of their
share of `--time-budget` (the first rate always runs); the budget leaves the later servers their shares."""

from __future__ import annotations

import argparse
import math
import types

import pytest

from bench import serve


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(serve, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    return now


def _sweep(clock, monkeypatch, *, step_s=5.0, saturate_at=math.inf, deadline=math.inf, max_rate=1000.0):
    offered = []

    def offered_load(url, rate, duration, procs, texts_file, max_texts, work, seed):
        offered.append(rate)
        clock[0] += step_s
        return {"offered_rps": rate, "requests": int(rate), "ok": int(rate), "errors": {},
                "offered_texts_per_s": 2.0 * rate, "throughput_texts_per_s": 2.0 * min(rate, saturate_at),
                "p50_ms": 1.0, "p99_ms": 2.0, "max_client_lag_ms": 0.0}

    monkeypatch.setattr(serve, "offered_load", offered_load)
    args = argparse.Namespace(start_rate=10.0, max_rate=max_rate, duration=4.0, load_procs=1, max_texts=4,
                              max_p99_ms=2000.0)
    rates, end = serve.sweep("http://x", args, None, None, deadline)
    assert [r["offered_rps"] for r in rates] == offered
    return offered, end


def test_the_sweep_doubles_until_max_rate_or_saturation(clock, monkeypatch):
    assert _sweep(clock, monkeypatch) == ([10, 20, 40, 80, 160, 320, 640], "max rate")
    assert _sweep(clock, monkeypatch, saturate_at=50) == ([10, 20, 40, 80], "saturated")


def test_the_sweep_stops_rising_at_its_deadline_after_one_rate_at_least(clock, monkeypatch):
    # steps of 5 s: 1005 after the first, 1010 after the second; a third would end past 1012
    assert _sweep(clock, monkeypatch, deadline=1012.0) == ([10, 20], "time budget")
    assert _sweep(clock, monkeypatch, deadline=0.0) == ([10], "time budget")


def test_the_budget_splits_the_time_left_between_this_sweep_and_the_later_ones(clock):
    budget = serve.Budget(300.0, servers=3)  # ends at 1300
    budget.server_starts()
    clock[0] += 50.0  # this server took 50 s to reach its sweep; so will each later one (estimate)
    # left 250 s, less 2 later servers x 50 s and 3 offline runs: 90 s of sweeps, a third of it now
    assert budget.sweep_deadline() == pytest.approx(1050.0 + (250 - 100 - 3 * serve.Budget.OFFLINE_S) / 3)
    budget.server_starts()
    clock[0] += 10.0
    assert budget.sweep_deadline() == pytest.approx(1060.0 + (240 - 10 - 2 * serve.Budget.OFFLINE_S) / 2)
    assert serve.Budget(None, servers=3).sweep_deadline() == math.inf
