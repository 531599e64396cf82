"""bench/plot_latency.py draws one run's records: the committed H100 records, and a tiny synthetic run."""

from __future__ import annotations

import json

import pytest

from bench.plot_latency import RESULTS, _kind, plot

PNG = b"\x89PNG\r\n\x1a\n"


def _rec(impl, mode, ms, commit="abc1234", batch=8, seq=128):
    return dict(implementation=impl, mode=mode, batch=batch, seq=seq, median_ms=ms, device="GPU (gpu), jax",
                commit=commit)


def test_plots_the_newest_run_of_synthetic_records(tmp_path):
    (tmp_path / "latency.json").write_text(json.dumps([
        _rec("samp-jax plain XLA", "bf16", 9.0, commit="old0000"),
        _rec("samp-jax plain XLA", "bf16", 3.0), _rec("samp-jax kernels", "fp16", 2.0),
        _rec("samp-jax kernels (pipelined)", "fp16", 1.5), _rec("pytorch fp16 torch.compile", "fp16", 2.5)]))
    out = plot(tmp_path)
    assert out == tmp_path / "latency.png" and out.read_bytes().startswith(PNG)
    with pytest.raises(ValueError, match="commit='nope'"):
        plot(tmp_path, commit="nope")
    with pytest.raises(ValueError, match="run='grid'"):
        plot(tmp_path, run="grid")


def test_plots_one_run_label(tmp_path):
    recs = [dict(_rec("samp-jax kernels", "fp16", 2.0), run="grid"), _rec("samp-jax kernels", "fp16", 9.0, "new0000")]
    (tmp_path / "latency.json").write_text(json.dumps(recs))
    assert plot(tmp_path, run="grid").read_bytes().startswith(PNG)  # the run's commit, not the newest record's


def test_plots_a_grid_with_a_breakdown_of_another_commit(tmp_path):
    lat = [_rec(impl, "fp16", 0.1 * b * s, batch=b, seq=s) for b in (1, 8) for s in (32, 128)
           for impl in ("samp-jax kernels", "samp-jax kernels (pipelined)")]
    (tmp_path / "latency.json").write_text(json.dumps(lat))
    brk = [dict(_rec("breakdown kernels", "fp16", 0, commit="brk0000"), device_ms=1.0,
                kernels=[dict(family="flash_attention", ms=1.0, launches=1)])]
    (tmp_path / "breakdown.json").write_text(json.dumps(brk))
    assert plot(tmp_path, breakdown_commit="brk0000").read_bytes().startswith(PNG)


@pytest.mark.skipif(not (RESULTS / "latency.json").exists(), reason="no committed latency records")
def test_plots_the_committed_h100_records(tmp_path):
    out = plot(commit="4a1728c", out=tmp_path / "h100.png")
    assert out.read_bytes().startswith(PNG)
    grid = plot(run="session 8 grid", breakdown_commit="848476f", out=tmp_path / "grid.png")
    assert grid.read_bytes().startswith(PNG)


def test_kernel_families_fall_into_kinds():
    assert _kind("anonymous_mosaic_gpu_kernel") == "GEMM (Mosaic: 8-bit, float)"
    assert _kind("pingpong_kernel_mosaic_gpu_kernel") == "GEMM (Mosaic: 8-bit, float)"
    assert _kind("nvjet_sm90_hss_128x128_64x6_2x1_v_bz_bias_NNT") == "GEMM (XLA, cuBLAS)"
    assert _kind("flash_attention_8bit") == "attention"
    assert _kind("residual_layer_norm_") == "LayerNorm, embedding"
    assert _kind("loop_convert_fusion") == "other XLA ops"
