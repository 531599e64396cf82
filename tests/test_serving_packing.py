"""The serving engine with `packing=True`: batches of sequences laid end to end in rows (`samp_jax.packing`),
answers equal to the model's own methods, the padded path kept for what cannot pack."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import numpy as np
import pytest

import samp_jax
from samp_jax.serving import Embed, Engine, EngineConfig, Predict, Similarity
from samp_jax.serving.scheduler import BatchQueue, Entry, packed_row_buckets
from tests.conftest import load_tiny_models, make_hf_model, nested_close

TOL: dict[str, Any] = dict(rtol=1e-5, atol=2e-6)  # rows of another batch shape: float reduction order
WAIT = 20.0


def _entry(length: int, t: float, model: str = "m") -> Entry:
    ids = np.ones(length, np.int32)
    return Entry(object(), 0, ids, ids * 0, model, "head", 128, t)


def test_packed_row_buckets_step_by_16_past_16():
    assert packed_row_buckets(16384, 128) == (1, 2, 4, 8, *range(16, 129, 16))
    assert packed_row_buckets(16384, 512) == (1, 2, 4, 8, 16, 32)
    assert packed_row_buckets(500, 128) == (1, 2)
    with pytest.raises(ValueError, match="packed rows of 512 exceed max_batch_tokens=256"):
        packed_row_buckets(256, 512)


def test_a_packed_batch_takes_what_fits_its_rows_in_arrival_order():
    q = BatchQueue(512, max_wait=1.0, packed=frozenset({"m"}))
    lengths = [60, 5, 100, 30, 90, 70, 40]
    q.push([_entry(n, t=i) for i, n in enumerate(lengths)])
    assert q.next_batch(now=0.0, idle=False) is None  # 395 tokens wait: not yet 0.9 of 4 rows x 128
    q.push([_entry(128, t=7.0), _entry(20, t=8.0)])
    batch = q.next_batch(now=0.0, idle=False)  # 543 >= 0.9 x 512: full
    assert batch is not None and batch.packed and batch.seq == 128
    taken = [e.length for e in batch.entries]
    assert taken == lengths and batch.rows == 4  # 395 + 128 would pass 512; first fit lays 395 in 4 rows
    rest = q.next_batch(now=0.0, idle=True)
    assert [e.length for e in rest.entries] == [128, 20] and rest.rows == 2


@pytest.fixture(scope="module")
def models(tmp_path_factory, minilm_dir):
    specs = [("cls", "BertForSequenceClassification", {}),
             ("ner", "BertForTokenClassification", dict(labels=("O", "B-PER", "I-PER", "B-LOC", "I-LOC"))),
             ("enc", "BertModel", {})]
    return load_tiny_models(tmp_path_factory, minilm_dir, specs, "packed", seed=7)


@pytest.fixture(scope="module")
def engine(models):
    with Engine(list(models.items()), EngineConfig(max_batch_tokens=512, packing=True, warmup=False)) as e:
        yield e


def test_answers_equal_the_models_own_methods(engine, models, real_sentences, monkeypatch):
    seen = []
    real = engine.forwards.get

    def spy(*key):
        seen.append(key)
        return real(*key)

    monkeypatch.setattr(engine.forwards, "get", spy)
    texts = real_sentences + [" ".join(real_sentences[:2])]
    for name in ("cls", "ner"):
        assert nested_close(engine.submit(Predict(texts), model=name).result(WAIT).value,
                            models[name].predict(texts, packing=False), TOL), name
    enc = models["enc"]
    np.testing.assert_allclose(engine.submit(Embed(texts), model="enc").result(WAIT).value,
                               enc.embed(texts, packing=False), **TOL)
    np.testing.assert_allclose(engine.submit(Embed(texts[:5], normalize=False), model="enc").result(WAIT).value,
                               enc.embed(texts[:5], normalize=False, packing=False), rtol=1e-5, atol=1e-5)
    sims = engine.submit(Similarity(texts[0], texts[1:]), model="enc").result(WAIT).value
    np.testing.assert_allclose(sims, enc.similarity([(texts[0], t) for t in texts[1:]], packing=False), **TOL)
    assert seen and all(key[-1] is True for key in seen)  # every batch ran packed


def test_many_concurrent_requests_each_get_their_own_rows(engine, models, real_sentences):
    """Requests packed into shared rows: each answer is its own texts' (64 requests of 1-4 texts, bounded)."""
    rng = np.random.default_rng(0)
    jobs = [[real_sentences[int(i)] for i in rng.integers(0, len(real_sentences), int(rng.integers(1, 5)))]
            for _ in range(64)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = list(pool.map(lambda texts: engine.submit(Predict(texts), model="ner"), jobs))
    for texts, future in zip(jobs, futures):
        assert nested_close(future.result(WAIT).value, models["ner"].predict(texts, packing=False), TOL)


def test_warmup_compiles_the_packed_shapes_and_unpackable_models_stay_padded(models, tmp_path):
    make_hf_model(tmp_path, "DebertaV2ForSequenceClassification")
    from samp_jax.default_model import default_model_dir

    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        if (default_model_dir() / name).is_file():
            (tmp_path / name).write_bytes((default_model_dir() / name).read_bytes())
    deberta = samp_jax.load(tmp_path)
    with Engine([("cls", models["cls"]), ("deberta", deberta)],
                EngineConfig(max_batch_tokens=512, packing=True)) as e:
        assert e.models["cls"].packed and not e.models["deberta"].packed
        assert e.models["cls"].shapes == len(packed_row_buckets(512, 128))  # rows 1, 2, 4 of 128
        answer = e.submit(Predict(["a short one", "and another"]), model="deberta").result(WAIT).value
        assert nested_close(answer, deberta.predict(["a short one", "and another"]), TOL)
