"""The serving engine without HTTP: batch formation (token budget, maximum wait, grouping by length, no
starvation), answers equal to the model's own methods, deadlines, cancellation, overload, a bad request
failing alone, a failing batch, and draining.

A `Gate` holds every batch's output until opened, so the device looks busy for as long as a test needs:
the pipeline fills (`pipeline_depth` batches in flight) and later requests wait in the queue, where
deadlines, cancellation and batching act on them.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

import samp_jax
from samp_jax.serving import (
    BackendFailure,
    DeadlineExceeded,
    Embed,
    Engine,
    EngineConfig,
    InputTooLong,
    InvalidRequest,
    Overloaded,
    Predict,
    Rerank,
    ShuttingDown,
    Similarity,
    TokenizationFailed,
)
from samp_jax.serving.scheduler import BatchQueue, Entry, pad, row_buckets
from tests.conftest import load_tiny_models, nested_close

# Rows computed in another [rows, seq] shape differ from model.predict's by float reduction order only
# (XLA picks its GEMM and reduction tiling per shape): 1e-7 on unit vectors and softmax scores, measured.
TOL: dict[str, Any] = dict(rtol=1e-5, atol=2e-6)
SMALL = dict(max_batch_tokens=256, warmup=False)  # the tiny models take 128 tokens
WAIT = 20.0  # seconds any test waits for an answer before failing


# ---- batch formation, on plain entries -------------------------------------------------------------
def _entries(n: int, seq: int, t: float, model: str = "m", kind: str = "head", request: object = None) -> list[Entry]:
    ids = np.ones(seq // 2, np.int32)
    return [Entry(request if request is not None else object(), i, ids, ids * 0, model, kind, seq, t)
            for i in range(n)]


def test_row_buckets_fill_the_token_budget_with_powers_of_two():
    assert row_buckets(512, 32) == (1, 2, 4, 8, 16)
    assert row_buckets(500, 64) == (1, 2, 4)  # 7 rows fit 500 tokens; compiled shapes are powers of two
    assert row_buckets(16384, 32, max_batch_requests=64)[-1] == 64
    with pytest.raises(ValueError, match="exceeds max_batch_tokens=256"):
        row_buckets(256, 512)


def test_batches_keep_to_the_budget_and_one_length_bucket():
    q = BatchQueue(max_batch_tokens=256, max_wait=1.0)
    q.push(_entries(20, 32, 0.0) + _entries(5, 64, 0.0))
    sizes = []
    while len(q):
        b = q.next_batch(0.0, idle=True)
        assert b is not None and b.padded_tokens <= 256
        assert {e.seq for e in b.entries} <= {s for s in (32, 64) if s <= b.seq}
        sizes.append((b.rows, b.seq, len(b.entries)))
    assert sizes[:2] == [(8, 32, 8), (8, 32, 8)]  # the budget caps a batch at 8 x 32
    assert sum(n for *_, n in sizes) == 25


def test_a_busy_device_waits_for_a_full_batch_or_the_maximum_wait():
    q = BatchQueue(max_batch_tokens=256, max_wait=0.010)
    q.push(_entries(3, 32, 0.0))
    assert q.next_batch(0.005, idle=False) is None  # busy, not full, younger than max_wait: wait for company
    assert q.wakeup(0.005) == pytest.approx(0.005)
    b = q.next_batch(0.010, idle=False)
    assert b is not None and len(b.entries) == 3 and b.rows == 4
    q.push(_entries(8, 32, 0.020))  # a full batch goes at once, busy or not
    assert q.next_batch(0.020, idle=False) is not None
    q.push(_entries(1, 32, 0.030))
    assert q.next_batch(0.030, idle=True) is not None  # an idle device takes whatever waits


def test_full_groups_overtake_older_sequences_only_until_their_wait_runs_out():
    q = BatchQueue(max_batch_tokens=256, max_wait=0.010)
    old = _entries(1, 64, 0.0)
    q.push(old)
    t = 0.001
    q.push(_entries(8, 32, t))
    first = q.next_batch(t, idle=False)
    assert first is not None and first.seq == 32  # full and ready; the older one is still within max_wait
    q.push(_entries(8, 32, 0.011))  # another full group, but the old sequence's wait has run out
    second = q.next_batch(0.011, idle=False)
    assert second is not None and second.entries[0] is old[0]


def test_padding_rows_carry_shorter_sequences():
    q = BatchQueue(max_batch_tokens=256, max_wait=0.0)
    q.push(_entries(3, 64, 0.0) + _entries(5, 32, 0.001))
    b = q.next_batch(0.002, idle=True)
    assert b is not None and (b.rows, b.seq) == (4, 64)
    assert [e.seq for e in b.entries] == [64, 64, 64, 32]  # the fourth row would be padding anyway
    assert len(q) == 4


def test_discard_drops_a_requests_sequences_and_batches_never_mix_models_or_kinds():
    q = BatchQueue(max_batch_tokens=256, max_wait=0.0)
    gone = object()
    q.push(_entries(3, 32, 0.0, request=gone) + _entries(2, 32, 0.0, model="other") + _entries(2, 32, 0.0, kind="embed"))
    assert q.discard(gone) == 3 and len(q) == 4
    while len(q):
        b = q.next_batch(1.0, idle=True)
        assert b is not None and len({(e.model, e.kind) for e in b.entries}) == 1


def test_pad_lays_rows_out_as_the_tokenizer_front_end_does(minilm_dir):
    model = samp_jax.load(minilm_dir)
    tok = model.tokenizer
    encs = tok.encode(["a short text", "a somewhat longer text than the first one", "x"])
    want = tok.pad(encs)
    entries = [Entry(None, i, np.asarray(e.ids, np.int32), np.asarray(e.type_ids, np.int32), "m", "embed",
                     want.input_ids.shape[1], 0.0) for i, e in enumerate(encs)]
    ids, mask, types = pad(entries, want.input_ids.shape[0], want.input_ids.shape[1], model.config.pad_token_id)
    np.testing.assert_array_equal(ids, want.input_ids)
    np.testing.assert_array_equal(mask, want.attention_mask)
    np.testing.assert_array_equal(types, want.token_type_ids)


# ---- the engine on tiny random models -------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory, minilm_dir):
    specs: list[tuple[str, str, dict[str, Any]]] = [
        ("cls", "BertForSequenceClassification", {}),
        ("multi", "BertForSequenceClassification",
         dict(labels=("a", "b", "c", "d"), problem_type="multi_label_classification")),
        ("ner", "BertForTokenClassification", dict(labels=("O", "B-PER", "I-PER", "B-LOC", "I-LOC"))),
        ("cross", "BertForSequenceClassification", dict(labels=("relevance",))),
        ("enc", "BertModel", {}),
    ]
    return load_tiny_models(tmp_path_factory, minilm_dir, specs, "engine")


@pytest.fixture(scope="module")
def engine(models):
    with Engine(list(models.items()), EngineConfig(**SMALL)) as e:
        yield e


class Gate:
    """Holds every dispatched batch's output until `open` is set; records each batch's ids."""

    def __init__(self, engine: Engine, monkeypatch):
        self.open = threading.Event()
        self.seen: list[np.ndarray] = []
        real = engine.forwards.get

        def get(*key):
            forward = real(*key)

            def gated(ids, mask, types):
                self.seen.append(np.array(ids))
                return _Held(forward(ids, mask, types), self.open)

            return gated

        monkeypatch.setattr(engine.forwards, "get", get)

    def fill(self, engine: Engine, texts: list[str], **kw) -> list:
        """One request per batch until the pipeline is full: later requests wait in the queue."""
        futures = []
        for text in texts:
            futures.append(engine.submit(Predict([text]), **kw))
            self.wait_batches(len(futures))
        return futures

    def wait_batches(self, n: int) -> None:
        deadline = time.monotonic() + WAIT
        while len(self.seen) < n:
            assert time.monotonic() < deadline, f"{len(self.seen)} batches dispatched, waited for {n}"
            time.sleep(0.002)


class _Held:
    def __init__(self, out, event: threading.Event):
        self.out, self.event = out, event

    def __array__(self, dtype=None, copy=None):
        assert self.event.wait(WAIT), "the gate was never opened"
        return np.asarray(self.out)


def test_answers_equal_the_models_own_methods(engine, models, real_sentences):
    texts = real_sentences
    pairs = list(zip(texts[:6], texts[6:]))
    for name in ("cls", "multi", "ner"):
        got = engine.submit(Predict(texts), model=name).result(WAIT).value
        want = models[name].predict(texts)
        assert _close(got, want), name
    cross = engine.submit(Predict(pairs), model="cross").result(WAIT).value
    assert _close(cross, models["cross"].predict(pairs))
    enc = models["enc"]
    np.testing.assert_allclose(engine.submit(Embed(texts), model="enc").result(WAIT).value, enc.embed(texts), **TOL)
    np.testing.assert_allclose(engine.submit(Predict(pairs), model="enc").result(WAIT).value, enc.predict(pairs), **TOL)
    sims = engine.submit(Similarity(texts[0], texts[1:]), model="enc").result(WAIT).value
    np.testing.assert_allclose(sims, enc.similarity([(texts[0], t) for t in texts[1:]]), **TOL)
    raw = engine.submit(Predict(texts[:3], raw_scores=True), model="cls").result(WAIT).value
    np.testing.assert_allclose(np.stack(raw), _logits(models["cls"], texts[:3]), **TOL)


def test_unnormalized_embeddings_are_the_mean_of_the_hidden_states(engine, models, real_sentences):
    enc = models["enc"]
    got = engine.submit(Embed(real_sentences[:4], normalize=False), model="enc").result(WAIT).value
    b = enc.tokenizer.pad(enc.tokenizer.encode(real_sentences[:4]), pad_batch=False)
    hidden = np.asarray(enc.hidden_states(b.input_ids, b.attention_mask, b.token_type_ids))[:4]
    m = b.attention_mask[:4, :, None]
    np.testing.assert_allclose(got, (hidden * m).sum(1) / m.sum(1), rtol=1e-5, atol=1e-5)


def test_rerank_scores_by_the_cross_encoders_sigmoid_or_the_bi_encoders_cosine(engine, models, real_sentences):
    query, texts = real_sentences[0], real_sentences[1:5]
    got = engine.submit(Rerank(query, texts), model="cross").result(WAIT).value
    logits = [p["score"] for p in models["cross"].predict([(query, t) for t in texts])]
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-np.asarray(logits))), **TOL)
    raw = engine.submit(Rerank(query, texts, raw_scores=True), model="cross").result(WAIT).value
    np.testing.assert_allclose(raw, logits, **TOL)
    cos = engine.submit(Rerank(query, texts), model="enc").result(WAIT).value
    np.testing.assert_allclose(cos, models["enc"].similarity([(query, t) for t in texts]), **TOL)
    with pytest.raises(InvalidRequest, match="rerank needs a cross-encoder"):
        engine.submit(Rerank(query, texts), model="ner")


def test_requests_refused_at_the_door_name_the_field(engine):
    with pytest.raises(InvalidRequest, match=r"model='nope' is not served here") as e:
        engine.submit(Embed(["x"]), model="nope")
    assert e.value.field == "model"
    with pytest.raises(InvalidRequest, match=r"texts\[1\] is int") as e:
        engine.submit(Embed(["x", 3]), model="enc")
    assert e.value.field == "texts[1]"
    with pytest.raises(InvalidRequest, match="max_client_batch_size=32"):
        engine.submit(Embed(["x"] * 33), model="enc")
    with pytest.raises(InvalidRequest, match="not pairs"):
        engine.submit(Predict([("a", "b")]), model="ner")


def test_a_bad_request_fails_alone_and_its_batch_mates_are_answered(models, real_sentences, monkeypatch):
    with Engine(list(models.items()), EngineConfig(**SMALL, max_wait_ms=0)) as engine:
        gate = Gate(engine, monkeypatch)
        blockers = gate.fill(engine, real_sentences[:2], model="cls")  # what follows waits, to be batched together
        good = [engine.submit(Predict([t]), model="cls") for t in real_sentences[2:6]]
        too_long = engine.submit(Predict(["fine", "word " * 200]), model="cls")
        not_text = engine.submit(Predict(["fine", "bad \ud800 text"]), model="cls")
        gate.open.set()
        with pytest.raises(InputTooLong, match=r"inputs\[1\] is 202 tokens long, more than max_input_length=128"):
            too_long.result(WAIT)
        with pytest.raises(TokenizationFailed, match=r"inputs\[1\] is not valid Unicode"):
            not_text.result(WAIT)
        got = [f.result(WAIT).value[0] for f in blockers + good]
        assert _close(got, models["cls"].predict(real_sentences[:6]))
        assert len(gate.seen) == 3, "the four good requests ran as one batch"
        truncated = engine.submit(Predict(["word " * 200]), model="cls", truncate=True).result(WAIT)
        assert truncated.prompt_tokens == 128


def test_an_expired_request_is_dropped_unrun_and_answered_with_a_timeout(models, monkeypatch):
    with Engine([("cls", models["cls"])], EngineConfig(**SMALL, max_wait_ms=0)) as engine:
        gate = Gate(engine, monkeypatch)
        running = gate.fill(engine, ["one", "two"])
        late = engine.submit(Predict(["three"]), timeout=0.05)
        with pytest.raises(DeadlineExceeded, match="before it ran"):
            late.result(WAIT)
        gate.open.set()
        assert all(f.result(WAIT).value for f in running)
        assert len(gate.seen) == 2


def test_a_cancelled_request_never_runs(models, monkeypatch):
    with Engine([("cls", models["cls"])], EngineConfig(**SMALL, max_wait_ms=0)) as engine:
        gate = Gate(engine, monkeypatch)
        running = gate.fill(engine, ["one", "two"])
        gone = engine.submit(Predict(["never run me"]))
        assert gone.cancel()
        after = engine.submit(Predict(["four"]))
        gate.open.set()
        assert after.result(WAIT).value and all(f.result(WAIT).value for f in running)
        never = set(models["cls"].tokenizer.encode(["never run me"])[0].ids) - set(
            models["cls"].tokenizer.encode(["four"])[0].ids)
        assert not any(np.isin(list(never), ids).any() for ids in gate.seen)


def test_a_full_engine_refuses_at_once_then_serves_again(models, monkeypatch):
    with Engine([("cls", models["cls"])], EngineConfig(**SMALL, max_wait_ms=0, max_concurrent_requests=2)) as engine:
        gate = Gate(engine, monkeypatch)
        held = [engine.submit(Predict([t])) for t in ("one", "two")]
        t0 = time.perf_counter()
        with pytest.raises(Overloaded, match="max_concurrent_requests=2"):
            engine.submit(Predict(["three"]))
        assert time.perf_counter() - t0 < 0.1
        gate.open.set()
        [f.result(WAIT) for f in held]
        assert engine.submit(Predict(["three"])).result(WAIT).value


def test_a_failing_batch_fails_its_requests_and_the_engine_goes_on(models, monkeypatch):
    with Engine([("cls", models["cls"])], EngineConfig(**SMALL)) as engine:
        real = engine.forwards.get
        broken = {"once": True}

        def get(*key):
            if broken.pop("once", False):
                raise RuntimeError("device lost")
            return real(*key)

        monkeypatch.setattr(engine.forwards, "get", get)
        with pytest.raises(BackendFailure, match="device lost"):
            engine.submit(Predict(["one"])).result(WAIT)
        assert engine.submit(Predict(["two"])).result(WAIT).value and engine.healthy


def test_close_drains_what_it_holds_and_refuses_the_rest(models, monkeypatch):
    engine = Engine([("cls", models["cls"])], EngineConfig(**SMALL, max_wait_ms=0))
    gate = Gate(engine, monkeypatch)
    held = [engine.submit(Predict([t])) for t in ("one", "two", "three", "four")]
    threading.Timer(0.2, gate.open.set).start()
    engine.close(drain=True, timeout=WAIT)
    assert all(f.result(0).value for f in held)
    assert not engine.healthy
    with pytest.raises(ShuttingDown):
        engine.submit(Predict(["five"]))


def test_warmup_compiles_every_shape_of_the_budget(models):
    with Engine([("cls", models["cls"])], EngineConfig(max_batch_tokens=128, max_input_length=64)) as engine:
        served = engine.models["cls"]
        assert served.seq_buckets == (32, 64)
        assert served.shapes == len(row_buckets(128, 32)) + len(row_buckets(128, 64)) == len(engine.forwards)
        assert engine.startup_compile_s > 0


def _logits(model, texts):
    b = model.tokenizer.pad(model.tokenizer.encode(texts), pad_batch=False)
    return np.asarray(model(b.input_ids, b.attention_mask, b.token_type_ids))[: len(texts)]


def _close(got, want) -> bool:
    return nested_close(got, want, TOL)
