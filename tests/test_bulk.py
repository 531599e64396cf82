"""The bulk job (`samp_jax.bulk`, `samp-jax embed` / `predict --input --output`): every row exactly once,
results equal to the model's own, bounded chunks, and a run killed at a random moment resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from samp_jax.bulk import run_bulk
from samp_jax.cli import main
from tests.conftest import FALLBACK_SENTENCES, REPO, converted_tiny

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

ROWS = 2000


@pytest.fixture(scope="module")
def clf(tmp_path_factory, minilm_dir):
    return converted_tiny(tmp_path_factory, minilm_dir, "BertForSequenceClassification", "bulk", seed=4)


@pytest.fixture(scope="module")
def enc(tmp_path_factory, minilm_dir):
    return converted_tiny(tmp_path_factory, minilm_dir, "BertModel", "bulk_enc", seed=4)


def _texts(n: int) -> list[str]:
    base = FALLBACK_SENTENCES
    return [f"{base[i % len(base)]} ({i})" for i in range(n)]


def _write_jsonl(path, texts, field="sentence"):
    path.write_text("".join(json.dumps({field: t, "id": i}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    return path


def test_predict_jsonl_to_parquet_equals_predict(tmp_path, clf):
    texts = _texts(37)
    src = _write_jsonl(tmp_path / "in.jsonl", texts)
    import samp_jax

    model = samp_jax.load(clf)
    result = run_bulk(model, "predict", src, tmp_path / "out.parquet", chunk_rows=10, progress=False)
    assert (result.rows, result.computed_chunks, result.resumed_chunks) == (37, 4, 0)
    got = pq.read_table(tmp_path / "out.parquet").to_pylist()
    want = model.predict(texts)
    assert [r["row"] for r in got] == list(range(37))
    assert [r["label"] for r in got] == [w["label"] for w in want]
    np.testing.assert_allclose([r["score"] for r in got], [w["score"] for w in want], rtol=1e-6)
    assert not (tmp_path / "out.parquet.parts").exists()


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "txt"])
def test_embed_every_input_format_to_jsonl(tmp_path, enc, fmt):
    import samp_jax

    texts = _texts(23)
    src = tmp_path / f"in.{fmt}"
    if fmt in ("csv", "tsv"):
        import csv

        with open(src, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t" if fmt == "tsv" else ",")
            w.writerow(["id", "body"])
            w.writerows([i, t] for i, t in enumerate(texts))
    elif fmt == "parquet":
        pq.write_table(pa.table({"id": list(range(23)), "body": texts}), src)
    else:
        src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    model = samp_jax.load(enc)
    run_bulk(model, "embed", src, tmp_path / "out.jsonl", text_field=None if fmt == "txt" else "body",
             chunk_rows=8, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rows] == list(range(23))
    np.testing.assert_allclose(np.array([r["embedding"] for r in rows]), model.embed(texts), atol=1e-6)


def test_bad_inputs_are_named(tmp_path, clf):
    import samp_jax

    model = samp_jax.load(clf)
    src = _write_jsonl(tmp_path / "in.jsonl", _texts(3))
    with pytest.raises(ValueError, match=r"in.jsonl:1 has no column 'text'; it has \['id', 'sentence'\]"):
        run_bulk(model, "predict", src, tmp_path / "o.jsonl", text_field="text", progress=False)
    with pytest.raises(ValueError, match=r"written are \('.jsonl', '.parquet'\) files, not '.csv'"):
        run_bulk(model, "predict", src, tmp_path / "o.csv", progress=False)
    with pytest.raises(ValueError, match="chunk_rows=0 must be a positive integer"):
        run_bulk(model, "predict", src, tmp_path / "o.jsonl", chunk_rows=0, progress=False)
    with pytest.raises(FileNotFoundError, match="input file .*missing.jsonl not found"):
        run_bulk(model, "predict", tmp_path / "missing.jsonl", tmp_path / "o.jsonl", progress=False)
    (tmp_path / "bad.jsonl").write_text('{"sentence": "a"}\n{"sentence": 3}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2 column 'sentence' holds int 3, not text"):
        run_bulk(model, "predict", tmp_path / "bad.jsonl", tmp_path / "o2.jsonl", progress=False)
    run_bulk(model, "predict", src, tmp_path / "done.jsonl", progress=False)
    with pytest.raises(FileExistsError, match="done.jsonl exists; pass force=True"):
        run_bulk(model, "predict", src, tmp_path / "done.jsonl", progress=False)
    run_bulk(model, "predict", src, tmp_path / "done.jsonl", force=True, progress=False)


def test_a_leftover_job_of_other_settings_is_refused(tmp_path, clf):
    import samp_jax

    model = samp_jax.load(clf)
    src = _write_jsonl(tmp_path / "in.jsonl", _texts(5))
    parts = tmp_path / "o.jsonl.parts"
    parts.mkdir()
    (parts / "job.json").write_text(json.dumps({"kind": "predict", "chunk_rows": 99}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"o.jsonl.parts belongs to another job \(chunk_rows: 99 now 4096"):
        run_bulk(model, "predict", src, tmp_path / "o.jsonl", progress=False)


KILL_SCRIPT = """
import sys
from samp_jax.cli import main
sys.exit(main(["predict", sys.argv[1], "--input", sys.argv[2], "--output", sys.argv[3], "--chunk-rows", "100",
               "--quiet"]))
"""


def test_killed_mid_run_and_resumed_every_row_exactly_once(tmp_path, clf):
    """SIGKILL once some part files exist (at a random moment of the next chunk's work), then the same
    command again: the output holds each of the ROWS rows once, equal to an uninterrupted run's."""
    src = _write_jsonl(tmp_path / "in.jsonl", _texts(ROWS))
    out = tmp_path / "out.parquet"
    parts = tmp_path / "out.parquet.parts"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(clf), str(src), str(out)], cwd=REPO,
                            env=dict(os.environ, JAX_PLATFORMS="cpu"), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    rng = np.random.default_rng(int(time.time()))
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.is_dir() and len(list(parts.glob("part-*"))) >= 3:
            time.sleep(float(rng.uniform(0, 0.2)))
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the job ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = len(list(parts.glob("part-*")))
    assert 3 <= done_before < ROWS // 100 and not out.exists()
    assert main(["predict", str(clf), "--input", str(src), "--output", str(out), "--chunk-rows", "100", "--quiet"]) == 0
    rows = pq.read_table(out).to_pylist()
    assert [r["row"] for r in rows] == list(range(ROWS))  # every row, once, in order
    ref = tmp_path / "ref.parquet"
    assert main(["predict", str(clf), "--input", str(src), "--output", str(ref), "--chunk-rows", "100", "--quiet"]) == 0
    assert pq.read_table(ref).to_pylist() == rows


def test_cli_embed_and_its_errors(tmp_path, enc, capsys):
    src = _write_jsonl(tmp_path / "in.jsonl", _texts(9))
    assert main(["embed", str(enc), "--input", str(src), "--output", str(tmp_path / "e.parquet"), "--quiet"]) == 0
    assert "wrote 9 rows" in capsys.readouterr().err
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 9
    assert main(["embed", str(enc), "--input", str(src)]) == 2
    assert "embed over a file needs both --input and --output" in capsys.readouterr().err
    assert main(["predict", str(enc), "a text", "--input", str(src), "--output", str(tmp_path / "x.jsonl")]) == 2
    assert "not both" in capsys.readouterr().err


def test_on_a_local_ray_cluster_the_output_is_the_same(tmp_path, clf):
    """Two Ray actors (a local cluster of 2 CPUs) compute the chunks; the output equals the local run's, and a
    resume after a part is removed recomputes only that chunk."""
    ray = pytest.importorskip("ray")
    import samp_jax

    src = _write_jsonl(tmp_path / "in.jsonl", _texts(700))
    model = samp_jax.load(clf)
    run_bulk(model, "predict", src, tmp_path / "local.parquet", chunk_rows=100, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_bulk(model, "predict", src, tmp_path / "ray.parquet", chunk_rows=100, progress=False,
                          ray_workers=2)
    finally:
        ray.shutdown()
    assert (result.rows, result.computed_chunks) == (700, 7)
    assert pq.read_table(tmp_path / "ray.parquet").to_pylist() == pq.read_table(tmp_path / "local.parquet").to_pylist()
    with pytest.raises(ValueError, match="ray_workers=0 must be a positive integer"):
        run_bulk(model, "predict", src, tmp_path / "x.parquet", ray_workers=0, progress=False)
