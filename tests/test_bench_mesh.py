"""bench/mesh.py on the CPU: a tiny random BERT through the plain path and a one-device mesh, every timing
recorded with its ratio, equal outputs, and the record's provenance."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch", reason="bench/mesh.py builds its random BERT with transformers' PyTorch model")


@pytest.mark.slow
def test_tiny_mesh_benchmark_records_both_paths(tmp_path, capsys):
    from bench import mesh

    mesh.main(["--tiny", "--plans", "fp32", "--shapes", "2x16", "--rounds", "2", "--iterations", "2",
               "--out", str(tmp_path)])
    records = json.loads((tmp_path / "mesh.json").read_text())
    assert [r["timing"] for r in records] == list(mesh.TIMINGS)
    for r in records:
        assert (r["mode"], r["batch"], r["seq"], r["kind"]) == ("fp32", 2, 16, "embed")
        assert len(r["plain_ms_rounds"]) == len(r["mesh_ms_rounds"]) == 2
        assert r["speed"] == pytest.approx(r["plain_ms"] / r["mesh_ms"], rel=1e-3)
        assert r["max_abs_diff"] < 1e-5  # fp32 on one device: the same program up to the shard_map wrapper
        assert r["commit"] and r["device"] and r["date"] and r["command"].startswith("python -m bench.mesh")
    assert "speed = plain ms / mesh ms" in capsys.readouterr().out
