"""One model called from many threads at once, with any mix of settings, answers as it does sequentially;
direct calls on ids reuse the bucketed executables and the executable cache stays bounded."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import samp_jax
from samp_jax import model as model_module
from tests.conftest import make_hf_model

THREADS = 8


@pytest.fixture(scope="module")
def model(tmp_path_factory, minilm_dir):
    folder = tmp_path_factory.mktemp("tiny_bert_threads")
    make_hf_model(folder, "BertForSequenceClassification", tokenizer_from=minilm_dir, seed=3)
    return samp_jax.load(folder)


def _texts(real_sentences):
    # Long enough that max_length=16 cuts most of them: a truncated result differs from the full one.
    return [s * 2 for s in real_sentences] + [f"{a} {b}" for a, b in zip(real_sentences, real_sentences[::-1])]


def test_concurrent_predict_with_mixed_truncation_equals_sequential(model, real_sentences):
    texts = _texts(real_sentences)
    full = model.predict(texts, batch_size=8)
    cut = model.predict(texts, batch_size=8, truncation=True, max_length=16)
    assert full != cut, "the fixture must make truncation visible"
    jobs = [(i % 2 == 0, i % 5) for i in range(10 * THREADS)]  # (truncate?, rotation of the inputs)

    def run(job):
        truncate, shift = job
        items = texts[shift:] + texts[:shift]
        kw = dict(truncation=True, max_length=16) if truncate else {}
        got = model.predict(items, batch_size=8, **kw)
        want = cut if truncate else full
        return got == want[shift:] + want[:shift]

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(run, jobs))
    assert sum(results) == len(jobs), f"{len(jobs) - sum(results)} of {len(jobs)} concurrent results differ"


def test_concurrent_direct_calls_and_predict_equal_sequential(model, real_sentences):
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(16):
        b, s = int(rng.integers(1, 9)), int(rng.integers(3, 40))
        ids = rng.integers(5, model.config.vocab_size, (b, s)).astype(np.int32)
        mask = (np.arange(s)[None] < rng.integers(1, s + 1, (b, 1))).astype(np.int32)
        batches.append((ids, mask))
    want = [np.asarray(model(ids, mask)) for ids, mask in batches]
    texts = _texts(real_sentences)
    want_texts = model.predict(texts, truncation=True, max_length=24)

    def run(i):
        if i % 3 == 0:
            return model.predict(texts, truncation=True, max_length=24) == want_texts
        ids, mask = batches[i % len(batches)]
        return np.array_equal(np.asarray(model(ids, mask)), want[i % len(batches)])

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(run, range(6 * THREADS)))
    assert all(results), f"{results.count(False)} concurrent results differ from sequential ones"


def test_direct_calls_reuse_bucketed_executables(model):
    """Random shapes compile at most one executable per (batch bucket, sequence bucket)."""
    rng = np.random.default_rng(1)
    model._executables.clear()
    for _ in range(40):
        b, s = int(rng.integers(1, 20)), int(rng.integers(1, 129))
        ids = rng.integers(5, model.config.vocab_size, (b, s)).astype(np.int32)
        out = np.asarray(model(ids))
        assert out.shape == (b, 3) and np.isfinite(out).all()
    shapes = {key[1:3] for key in model._executables}
    assert shapes <= {(b, s) for b in (1, 2, 4, 8, 16, 32) for s in (32, 64, 128)}, shapes


@pytest.mark.parametrize("kind", ["head", "hidden"])
def test_a_padded_call_equals_the_exact_shape(model, kind):
    """Bucket padding is masked: real positions get what an executable of the caller's shape computes."""
    rng = np.random.default_rng(2)
    ids = rng.integers(5, model.config.vocab_size, (3, 21)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 15:] = 0
    types = np.zeros_like(ids)
    exact = np.asarray(model.compiled(kind, 3, 21)(ids, mask, types))
    call = model if kind == "head" else model.hidden_states
    got = np.asarray(call(ids, mask))
    assert got.shape == exact.shape
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5)


def test_the_executable_cache_is_bounded(model, monkeypatch):
    monkeypatch.setattr(model_module, "MAX_EXECUTABLES", 3)
    model._executables.clear()
    ids = np.ones((1, 4), np.int32)
    for b in (1, 2, 4, 8, 16):
        model(np.repeat(ids, b, axis=0))
    assert len(model._executables) == 3
    assert [k[1] for k in model._executables] == [4, 8, 16]  # least recently used went first
