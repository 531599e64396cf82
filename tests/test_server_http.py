"""`samp-jax serve` as a client sees it: the real server in a subprocess on 127.0.0.1 and a free port, talked to
with httpx.

Every route answers what the model's own methods answer on the same inputs (labels, spans and ids exactly;
floats within `TOL`, since the server batches rows in other shapes than `predict` does and XLA's reduction
order follows the shape); 64 concurrent clients are all answered correctly; bad input gets a 4xx naming the
field, a full queue 429 at once, an oversize body 413, a client that goes away is dropped, and SIGTERM
drains the requests held before the process exits 0. All traffic stays on loopback, bounded in count and
time.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import samp_jax
from samp_jax.serving import Engine, EngineConfig
from samp_jax.serving.app import create_app
from tests.conftest import make_hf_model, nested_close

TOL: dict[str, Any] = dict(rtol=1e-5, atol=2e-6)  # rows batched in another shape: float reduction order only (1e-7 measured)
START_TIMEOUT = 180.0  # seconds for a server to compile and listen on the 2-core CI machine
TIMEOUT = 60.0  # seconds any one request may take
LIMITS = ["--max-batch-tokens", "256", "--max-input-length", "128"]  # few shapes: a quick start-up


class ServerProcess:
    """`samp-jax serve ARGS --host 127.0.0.1 --port 0`, its printed URL, its output and its exit."""

    def __init__(self, args: list[str], cache: Path):
        cmd = [sys.executable, "-m", "samp_jax.cli", "serve", *args, "--host", "127.0.0.1", "--port", "0",
               "--compilation-cache", str(cache)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=Path(__file__).resolve().parents[1], env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.lines: list[str] = []
        listening = threading.Event()
        self.url = ""

        def read() -> None:  # keeps the pipe drained for the server's whole life
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                m = re.search(r"listening on (http://\S+)", line)
                if m:
                    self.url = m.group(1)
                    listening.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not listening.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not start:\n" + "".join(self.lines[-40:]))
        self.client = httpx.Client(base_url=self.url, timeout=TIMEOUT)
        for _ in range(100):  # uvicorn listens a moment after the URL is printed
            try:
                if self.client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture(scope="module")
def folders(tmp_path_factory, minilm_dir) -> dict[str, Path]:
    out = {"minilm": minilm_dir}
    specs: list[tuple[str, str, dict[str, Any]]] = [
        ("cls", "BertForSequenceClassification", {}),
        ("multi", "BertForSequenceClassification",
         dict(labels=("a", "b", "c", "d"), problem_type="multi_label_classification")),
        ("ner", "BertForTokenClassification", dict(labels=("O", "B-PER", "I-PER", "B-LOC", "I-LOC"))),
        ("cross", "BertForSequenceClassification", dict(labels=("relevance",))),
    ]
    for name, arch, kw in specs:
        folder = tmp_path_factory.mktemp(f"http_{name}")
        make_hf_model(folder, arch, tokenizer_from=minilm_dir, seed=10 + len(out), **kw)
        out[name] = folder
    return out


@pytest.fixture(scope="module")
def models(folders):
    """The same checkpoints loaded here: what the server's answers are compared with."""
    return {name: samp_jax.load(folder) for name, folder in folders.items()}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("compilation_cache")


@pytest.fixture(scope="module")
def server(folders, cache):
    """All five models in one process; minilm first, so the default."""
    s = ServerProcess([f"{n}={p}" for n, p in folders.items()] + LIMITS, cache)
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def small_server(folders, cache):
    """MiniLM with tight limits: two requests at once, 20 kB bodies. The drain test ends it."""
    s = ServerProcess([str(folders["minilm"]), *LIMITS, "--max-concurrent-requests", "2",
                       "--payload-limit", "20000"], cache)
    yield s
    s.stop()


def _close(got, want) -> bool:
    return nested_close(got, want, TOL)


def _tei_classes(pred: dict) -> list[dict]:
    """model.predict's classification answer in TEI's shape: every label, highest score first."""
    return [{"label": lab, "score": s} for lab, s in sorted(pred["scores"].items(), key=lambda kv: -kv[1])]


# ---- every route equals the model ------------------------------------------------------------------
def test_embed_and_openai_embeddings_equal_model_embed(server, models, real_sentences):
    minilm = models["minilm"]
    want = minilm.embed(real_sentences)
    r = server.client.post("/embed", json={"inputs": real_sentences})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.asarray(r.json(), np.float32), want, **TOL)
    assert int(r.headers["x-compute-tokens"]) == sum(len(e.ids) for e in minilm.tokenizer.encode(real_sentences))
    one = server.client.post("/embed", json={"inputs": real_sentences[0]}).json()
    np.testing.assert_allclose(np.asarray(one, np.float32), want[:1], **TOL)
    root = server.client.post("/", json={"inputs": real_sentences[0]}).json()  # TEI's root route: the main task
    np.testing.assert_allclose(np.asarray(root, np.float32), want[:1], **TOL)

    r = server.client.post("/v1/embeddings", json={"input": real_sentences[:3], "model": "minilm"})
    body = r.json()
    assert r.status_code == 200 and body["object"] == "list" and body["model"] == "minilm"
    assert [d["index"] for d in body["data"]] == [0, 1, 2] and all(d["object"] == "embedding" for d in body["data"])
    np.testing.assert_allclose(np.asarray([d["embedding"] for d in body["data"]], np.float32), want[:3], **TOL)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] == sum(
        len(e.ids) for e in minilm.tokenizer.encode(real_sentences[:3]))
    b64 = server.client.post("/v1/embeddings", json={"input": real_sentences[0], "encoding_format": "base64"}).json()
    vec = np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), "<f4")
    np.testing.assert_allclose(vec, want[0], **TOL)


def test_unnormalized_embeddings_are_the_mean_pooled_hidden_state(server, models, real_sentences):
    minilm = models["minilm"]
    got = np.asarray(server.client.post("/embed", json={"inputs": real_sentences[:3], "normalize": False}).json())
    b = minilm.tokenizer.pad(minilm.tokenizer.encode(real_sentences[:3]), pad_batch=False)
    hidden = np.asarray(minilm.hidden_states(b.input_ids, b.attention_mask, b.token_type_ids))
    m = b.attention_mask[..., None]
    np.testing.assert_allclose(got, (hidden * m).sum(1) / m.sum(1), rtol=1e-5, atol=1e-5)


def test_predict_equals_model_predict_for_every_head(server, models, real_sentences):
    texts = real_sentences
    batch = [[t] for t in texts]
    cls = server.client.post("/predict", json={"inputs": batch, "model": "cls"}).json()
    assert _close(cls, [_tei_classes(p) for p in models["cls"].predict(texts)])
    single = server.client.post("/predict", json={"inputs": texts[0], "model": "cls"}).json()
    assert _close(single, _tei_classes(models["cls"].predict([texts[0]])[0]))
    raw = server.client.post("/predict", json={"inputs": texts[:2], "model": "cls", "raw_scores": True}).json()
    logits = np.asarray(models["cls"](*_ids(models["cls"], [tuple(texts[:2])])))[0]
    labels = models["cls"].task.labels
    assert _close(raw, [{"label": labels[i], "score": float(logits[i])} for i in np.argsort(-logits)])

    multi = server.client.post("/predict", json={"inputs": batch, "model": "multi"}).json()
    for got, want in zip(multi, models["multi"].predict(texts)):
        assert [g["label"] for g in got if g["predicted"]] == sorted(want["labels"], key=lambda lab: -want["scores"][lab])
        assert _close({g["label"]: g["score"] for g in got}, want["scores"])

    ner = server.client.post("/predict", json={"inputs": batch, "model": "ner"}).json()
    assert _close(ner, models["ner"].predict(texts))

    pair = server.client.post("/predict", json={"inputs": [texts[0], texts[1]], "model": "cross"}).json()
    logit = models["cross"].predict([(texts[0], texts[1])])[0]["score"]
    assert pair[0]["label"] == "relevance" and np.isclose(pair[0]["score"], 1 / (1 + np.exp(-logit)), **TOL)


def test_rerank_similarity_and_tokenize_equal_the_model(server, models, real_sentences):
    query, texts = real_sentences[0], real_sentences[1:6]
    ranks = server.client.post("/rerank", json={"query": query, "texts": texts, "model": "cross",
                                                "return_text": True}).json()
    logits = np.asarray([p["score"] for p in models["cross"].predict([(query, t) for t in texts])])
    want = 1 / (1 + np.exp(-logits))
    assert [r["index"] for r in ranks] == list(np.argsort(-want, kind="stable"))
    assert all(r["text"] == texts[r["index"]] and np.isclose(r["score"], want[r["index"]], **TOL) for r in ranks)
    bi = server.client.post("/rerank", json={"query": query, "texts": texts}).json()  # minilm: cosine
    cos = models["minilm"].similarity([(query, t) for t in texts])
    assert all(np.isclose(r["score"], cos[r["index"]], **TOL) and "text" not in r for r in bi)

    sims = server.client.post("/similarity", json={"inputs": {"source_sentence": query, "sentences": texts}}).json()
    np.testing.assert_allclose(sims, cos, **TOL)

    tokens = server.client.post("/tokenize", json={"inputs": [query, "Héllo, wörld!"]}).json()
    encs = models["minilm"].tokenizer.encode([query, "Héllo, wörld!"])
    assert [[t["id"] for t in row] for row in tokens] == [e.ids for e in encs]
    word = tokens[1][1]
    assert word["special"] is False and "Héllo, wörld!"[word["start"]:word["stop"]] == word["text"]
    assert tokens[1][0] == {"id": 101, "text": "[CLS]", "special": True, "start": None, "stop": None}
    bare = server.client.post("/tokenize", json={"inputs": "hi", "add_special_tokens": False}).json()
    assert [t["text"] for t in bare[0]] == ["hi"]


def test_huggingface_hubs_client_calls_it_unchanged(server, models, real_sentences):
    """huggingface_hub's InferenceClient posts to the root route; the body's shape picks the task there."""
    hub = pytest.importorskip("huggingface_hub")
    client = hub.InferenceClient(model=server.url, timeout=TIMEOUT)
    vector = np.asarray(client.feature_extraction(real_sentences[0]))
    np.testing.assert_allclose(vector.reshape(-1), models["minilm"].embed(real_sentences[:1])[0], **TOL)
    sims = client.sentence_similarity(real_sentences[0], other_sentences=real_sentences[1:4])
    want = models["minilm"].similarity([(real_sentences[0], t) for t in real_sentences[1:4]])
    np.testing.assert_allclose(sims, want, **TOL)
    ranks = server.client.post("/", json={"query": real_sentences[0], "texts": real_sentences[1:4]}).json()
    assert sorted(r["index"] for r in ranks) == [0, 1, 2]


def test_info_health_and_metrics(server):
    info = server.client.get("/info").json()
    assert info["model_id"] == "minilm" and info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert [m["name"] for m in info["models"]] == ["minilm", "cls", "multi", "ner", "cross"]
    assert info["max_batch_tokens"] == 256 and info["max_input_length"] == 128 and info["max_client_batch_size"] == 32
    assert all(m["compiled_shapes"] == 9 for m in info["models"])  # 8/4/2 rows at 32/64/128 tokens: 4 + 3 + 2
    assert server.client.get("/health").json() == {}
    metrics = server.client.get("/metrics").text
    for name in ("samp_request_duration_seconds", "samp_request_queue_duration_seconds",
                 "samp_request_tokenization_duration_seconds", "samp_request_inference_duration_seconds",
                 "samp_batch_size", "samp_batch_tokens", "samp_queue_size", "samp_requests_total",
                 "samp_startup_compile_seconds"):
        assert name in metrics, name
    assert re.search(r'samp_requests_total\{route="/embed",status="200"\} [1-9]', metrics)


def test_64_concurrent_clients_are_all_answered_correctly(server, models, real_sentences):
    rng = np.random.default_rng(0)
    jobs = []
    for i in range(64):
        idx = [int(j) for j in rng.choice(len(real_sentences), int(rng.integers(1, 4)), replace=False)]
        jobs.append(("/embed" if i % 2 else "/predict", idx))
    want_embed = models["minilm"].embed(real_sentences)
    want_cls = [_tei_classes(p) for p in models["cls"].predict(real_sentences)]

    async def client(session: httpx.AsyncClient, route: str, idx: list[int]) -> bool:
        texts = [real_sentences[j] for j in idx]
        if route == "/embed":
            r = await session.post(route, json={"inputs": texts})
            return r.status_code == 200 and np.allclose(np.asarray(r.json()), want_embed[idx], **TOL)
        r = await session.post(route, json={"inputs": [[t] for t in texts], "model": "cls"})
        return r.status_code == 200 and _close(r.json(), [want_cls[j] for j in idx])

    async def main() -> list[bool]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT, limits=limits) as session:
            return await asyncio.wait_for(asyncio.gather(*(client(session, *job) for job in jobs)), TIMEOUT)

    results = asyncio.run(main())
    assert all(results), f"{results.count(False)} of 64 clients got a wrong answer"


# ---- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("route, body, status, field, message", [
    ("/embed", b'{"inputs": ', 400, "body", "not valid JSON"),
    ("/embed", b'[1, 2]', 422, "body", "expected an object"),
    ("/embed", {"inputs": ["ok", 3]}, 422, "inputs[1]", "inputs[1] is token ids"),
    ("/embed", {"inputs": "ok", "normalize": "yes"}, 422, "normalize", "expected true or false"),
    ("/embed", {"inputs": []}, 400, "inputs", "inputs is empty"),
    ("/embed", {"inputs": ["x"] * 33}, 422, "inputs", "33 inputs, more than max_client_batch_size=32"),
    ("/embed", {"inputs": ["ok", "word " * 200]}, 422, "inputs[1]",
     'inputs[1] is 202 tokens long, more than max_input_length=128; shorten it or ask for truncation ("truncate": true)'),
    ("/embed", b'{"inputs": ["ok", "bad \\ud800 text"]}', 422, "inputs[1]", "not valid Unicode"),
    ("/embed", {"inputs": "ok", "model": "nope"}, 422, "model", "model='nope' is not served here"),
    ("/predict", {"inputs": "ok"}, 422, "model", "bi-encoder"),
    ("/predict", {"inputs": ["a", "b", "c"], "model": "cls"}, 422, "inputs", "a batch is [[a], [b, c], ...]"),
    ("/rerank", {"query": "q", "texts": ["a"], "model": "ner"}, 422, "model", "rerank needs a cross-encoder"),
    ("/similarity", {"inputs": {"source_sentence": "q", "sentences": ["a", 1]}}, 422, "inputs.sentences[1]",
     "expected a string"),
    ("/similarity", {"inputs": {"source_sentence": "word " * 200, "sentences": ["a"]}}, 422,
     "inputs.source_sentence", "inputs.source_sentence is 202 tokens long"),
    ("/embed", {"inputs": "ok", "truncation_direction": "left"}, 422, "truncation_direction", "only 'right'"),
])
def test_bad_input_is_a_4xx_naming_the_field(server, route, body, status, field, message):
    kw: dict[str, Any] = ({"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, bytes)
                          else {"json": body})
    r = server.client.post(route, **kw)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["field"] == field and message in err["error"], err
    assert err["error_type"] in ("validation", "empty", "tokenizer")


def test_bad_requests_fail_alone_and_openai_errors_are_openais_shape(server, models, real_sentences):
    bad = {"inputs": ["ok", "word " * 200]}
    good = {"inputs": real_sentences[:2]}

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as session:
            return await asyncio.gather(*(session.post("/embed", json=bad if i % 2 else good) for i in range(16)))

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200, 422] * 8
    want = models["minilm"].embed(real_sentences[:2])
    assert all(np.allclose(np.asarray(r.json()), want, **TOL) for r in responses[::2])
    assert server.client.post("/embed", json={**bad, "truncate": True}).status_code == 200

    err = server.client.post("/v1/embeddings", json={"input": ["ok", 3]}).json()["error"]
    assert err == {"message": "input[1] is token ids; expected a string (this server takes text, not ids)",
                   "type": "validation", "param": "input[1]", "code": 422}
    assert server.client.get("/nowhere").status_code == 404
    assert server.client.get("/embed").json()["error_type"] == "validation"  # 405, as JSON


def test_draining_answers_503_and_health_says_so(models):
    """In process: a draining server refuses new requests (its load balancer stops sending)."""
    with Engine([("minilm", models["minilm"])], EngineConfig(warmup=False)) as engine:
        app = create_app(engine)

        async def main() -> tuple[httpx.Response, ...]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                app.state.server.draining = True
                return await c.post("/embed", json={"inputs": "x"}), await c.get("/health")

        refused, health = asyncio.run(main())
        assert refused.status_code == 503 and refused.json()["error_type"] == "unhealthy"
        assert refused.headers["retry-after"] == "1"
        assert health.status_code == 503


# ---- limits: overload, oversize, a client gone, drain ----------------------------------------------
def _slow_body(real_sentences, n: int = 32) -> dict:
    """32 inputs of 128 tokens each (truncated): 16 batches of the small server's budget."""
    return {"inputs": [(s + " ") * 6 for s in (real_sentences * 3)[:n]], "truncate": True}


def test_a_full_queue_answers_429_at_once(small_server, real_sentences):
    body = _slow_body(real_sentences)

    def post(out: list, i: int) -> None:
        t0 = time.perf_counter()
        r = httpx.post(small_server.url + "/embed", json=body, timeout=TIMEOUT)
        out[i] = (r.status_code, time.perf_counter() - t0, r)

    out: list = [None] * 10
    threads = [threading.Thread(target=post, args=(out, i)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    statuses = sorted(s for s, _, _ in out)
    assert set(statuses) == {200, 429} and statuses.count(200) >= 1, statuses
    refused = [(dt, r) for s, dt, r in out if s == 429]
    assert all(r.json()["error_type"] == "overloaded" and "max_concurrent_requests=2" in r.json()["error"]
               for _, r in refused)
    assert max(dt for dt, _ in refused) < min(dt for s, dt, _ in out if s == 200), "a 429 waited for the queue"


def test_oversize_bodies_get_413_by_length_or_while_streaming(small_server):
    big = b'{"inputs": "' + b"x" * 30000 + b'"}'
    r = small_server.client.post("/embed", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "payload limit of 20000 bytes" in r.json()["error"]

    def chunks():
        for _ in range(30):
            yield b"x" * 1000

    r = small_server.client.post("/embed", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["field"] == "body"


def test_a_client_that_goes_away_is_dropped(small_server, real_sentences):
    body = _slow_body(real_sentences)
    first = threading.Thread(target=lambda: httpx.post(small_server.url + "/embed", json=body, timeout=TIMEOUT))
    first.start()
    time.sleep(0.1)
    with pytest.raises(httpx.TimeoutException):
        httpx.post(small_server.url + "/embed", json=body, timeout=0.2)
    first.join(TIMEOUT)
    deadline = time.monotonic() + 10
    while not re.search(r'samp_requests_total\{route="/embed",status="499"\} 1', small_server.client.get("/metrics").text):
        assert time.monotonic() < deadline, "the server never noticed the client leave"
        time.sleep(0.05)


def test_sigterm_drains_the_requests_held_then_exits_0(small_server, models, real_sentences):
    """Last on the small server: it ends it."""
    body = _slow_body(real_sentences)
    want = models["minilm"].embed(body["inputs"], truncation=True, max_length=128)
    out: list = [None, None]

    def post(i: int) -> None:
        out[i] = httpx.post(small_server.url + "/embed", json=body, timeout=TIMEOUT)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while "samp_requests_in_flight 2.0" not in small_server.client.get("/metrics").text:
        assert time.monotonic() < deadline, "the two requests never reached the engine"
        time.sleep(0.01)
    small_server.proc.send_signal(signal.SIGTERM)
    t0 = time.perf_counter()
    for t in threads:
        t.join(TIMEOUT)
    assert [r.status_code for r in out] == [200, 200]
    assert all(np.allclose(np.asarray(r.json()), want, **TOL) for r in out)
    assert small_server.proc.wait(30) == 0
    assert time.perf_counter() - t0 < 30
    with pytest.raises(httpx.TransportError):
        httpx.post(small_server.url + "/embed", json={"inputs": "late"}, timeout=5)


def _ids(model, items):
    b = model.tokenizer.pad(model.tokenizer.encode(items), pad_batch=False)
    return b.input_ids, b.attention_mask, b.token_type_ids


def test_a_packing_server_answers_as_the_model(folders, models, cache, real_sentences):
    """`--packing`: batches of sequences laid end to end (docs/packing.md); every answer still the model's."""
    s = ServerProcess([f"minilm={folders['minilm']}", f"ner={folders['ner']}", *LIMITS, "--packing"], cache)
    try:
        got = s.client.post("/embed", json={"inputs": real_sentences}).json()
        np.testing.assert_allclose(np.asarray(got, np.float32), models["minilm"].embed(real_sentences, packing=False),
                                   **TOL)
        ner = s.client.post("/predict", json={"inputs": [[t] for t in real_sentences], "model": "ner"}).json()
        assert _close(ner, models["ner"].predict(real_sentences, packing=False))
    finally:
        assert s.stop() == 0
