"""The accuracy study's bookkeeping (bench/accuracy.py, bench/_tasks.py): latency lookup and held-out data."""

from __future__ import annotations

import pytest

from bench.accuracy import lookup_latency, modes_key
from tests.conftest import DATA_DIR


def _table(times: dict[tuple[str, int], float], n: int = 12) -> dict:
    recs = {}
    for (fam, k), ms in times.items():
        layers = [fam] * k + ["fp16"] * (n - k)
        recs[modes_key(layers)] = {"modes": modes_key(layers), "median_ms": ms}
    return recs


def test_measured_counts_are_looked_up_and_the_rest_interpolated():
    table = _table({("fp16", 0): 2.0, ("full_int8", 6): 3.0, ("full_int8", 12): 3.6})
    assert lookup_latency(table, ["full_int8"] * 6 + ["fp16"] * 6) == (3.0, False)
    # which layers are quantized does not matter, only how many
    assert lookup_latency(table, ["fp16"] * 6 + ["full_int8"] * 6) == (3.0, False)
    ms, guessed = lookup_latency(table, ["full_int8"] * 3 + ["fp16"] * 9)
    assert guessed and ms == pytest.approx(2.5)
    ms, guessed = lookup_latency(table, ["full_int8"] * 9 + ["fp16"] * 3)
    assert guessed and ms == pytest.approx(3.3)


def test_unmeasured_families_and_mixed_plans_are_refused():
    table = _table({("fp16", 0): 2.0, ("full_int8", 12): 3.6})
    with pytest.raises(KeyError):
        lookup_latency(table, ["ffn_int8"] * 3 + ["fp16"] * 9)  # nothing measured for ffn_int8
    with pytest.raises(KeyError):
        lookup_latency(table, ["full_int8"] * 3 + ["ffn_int8"] * 3 + ["fp16"] * 6)  # two families


def test_held_out_data_is_disjoint_from_what_is_reported_and_trained_on():
    from bench._tasks import eval_set, read_classification, selection_set, task

    t = task("sst2")
    if not (DATA_DIR / t.train).is_file():
        pytest.skip(f"{DATA_DIR / t.train} absent (../shared/data)")
    record = {"seed": 0, "train_examples": 20000}
    held = selection_set(t, DATA_DIR, record, limit=300)
    texts, _ = read_classification(t, DATA_DIR, t.train)
    import numpy as np

    trained = {texts[i] for i in np.random.default_rng(0).permutation(len(texts))[:20000]}
    assert len(held) == 300 and not trained & set(held.inputs)
    mrpc = task("mrpc")
    if (DATA_DIR / mrpc.select).is_file():
        held = selection_set(mrpc, DATA_DIR, {})
        assert len(held) == 408 and not set(held.inputs) & set(eval_set(mrpc, DATA_DIR).inputs)
