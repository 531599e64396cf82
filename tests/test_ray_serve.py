"""The Ray Serve deployment (`samp_jax.serving.ray_serve`) on a local Ray cluster of 2 CPUs, served on
127.0.0.1: its answers equal the model's, as `samp-jax serve`'s do, under a bounded concurrent load."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import samp_jax
from tests.conftest import converted_tiny

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
httpx = pytest.importorskip("httpx")

TOL = dict(rtol=1e-5, atol=2e-6)  # rows batched in another shape: float reduction order only


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory, minilm_dir):
    clf = converted_tiny(tmp_path_factory, minilm_dir, "BertForSequenceClassification", "ray_clf", seed=2)
    from samp_jax.serving.ray_serve import deployment

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = deployment([("minilm", str(minilm_dir), None), ("clf", str(clf), "fp32")], num_cpus=1,
                         engine_config={"max_batch_tokens": 256, "max_input_length": 128, "warmup": False})
        serve.run(app, route_prefix="/", blocking=False)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120.0)
        yield client, {"minilm": samp_jax.load(minilm_dir), "clf": samp_jax.load(clf)}
        client.close()
        serve.shutdown()
    finally:
        ray.shutdown()


def test_the_deployment_answers_as_the_model_does(served, real_sentences):
    client, models = served
    r = client.post("/embed", json={"inputs": real_sentences})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.asarray(r.json(), np.float32), models["minilm"].embed(real_sentences), **TOL)
    r = client.post("/predict", json={"inputs": [[t] for t in real_sentences[:4]], "model": "clf"})
    assert r.status_code == 200, r.text
    for got, want in zip(r.json(), models["clf"].predict(real_sentences[:4])):  # TEI's shape: best first
        assert got[0]["label"] == want["label"]
        np.testing.assert_allclose([c["score"] for c in got], sorted(want["scores"].values(), reverse=True), **TOL)
    assert client.get("/health").status_code == 200
    bad = client.post("/embed", json={"inputs": 3})
    assert bad.status_code == 422 and "inputs" in bad.text


def test_bounded_concurrent_load_is_answered_in_full(served, real_sentences):
    client, models = served
    want = models["minilm"].embed(real_sentences)

    def one(i: int) -> np.ndarray:
        r = client.post("/embed", json={"inputs": real_sentences[i % len(real_sentences)]})
        assert r.status_code == 200, r.text
        return np.asarray(r.json(), np.float32)[0]

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(one, range(48)))
    np.testing.assert_allclose(np.stack(got), want[np.arange(48) % len(real_sentences)], **TOL)


def test_specs_are_checked():
    from samp_jax.serving.ray_serve import deployment

    with pytest.raises(ValueError, match="no model to serve"):
        deployment([])
    with pytest.raises(ValueError, match=r"model spec 'ckpt/': expected \(name, checkpoint path, plan or None\)"):
        deployment(["ckpt/"])


def test_the_config_file_builder_checks_its_args():
    from samp_jax.serving.ray_serve import app_builder

    with pytest.raises(ValueError, match=r"args.models=None: a non-empty list"):
        app_builder({})
    with pytest.raises(ValueError, match=r"args.models\[0\]=\{'name': 'x'\}: an object with a path"):
        app_builder({"models": [{"name": "x"}]})
