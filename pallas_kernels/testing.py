"""Shared helpers for op tests: float64 numpy oracles and per-dtype tolerances."""

from __future__ import annotations

import numpy as np

# Relative tolerance on ||out - ref|| / ||ref|| per compute dtype: float32 lands
# far below 1e-5 on these sizes; half precisions carry their unit roundoff
# (2^-9 for bf16, 2^-12 for fp16) times a few roundings.
REL_TOL = {"float32": 1e-5, "bfloat16": 2e-2, "float16": 3e-3}


def rel_error(out, ref) -> float:
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-30))


def layer_norm_np(h: np.ndarray, scale, bias, eps) -> np.ndarray:
    h = np.asarray(h, np.float64)
    mean = h.mean(-1, keepdims=True)
    var = ((h - mean) ** 2).mean(-1, keepdims=True)
    return (h - mean) / np.sqrt(var + eps) * np.asarray(scale, np.float64) + np.asarray(bias, np.float64)


def needs_hopper():
    """`pytest.mark` list for tests of compiled Mosaic GPU kernels: marked gpu, skipped elsewhere."""
    import pytest

    from pallas_kernels._platform import on_hopper

    return [pytest.mark.gpu, pytest.mark.skipif(not on_hopper(), reason="needs an sm_90 GPU (H100/H200); "
                                                "run through the device tool, see bench/RESULTS.md")]


def needs_gpu():
    """`pytest.mark` list for tests of compiled Triton kernels: marked gpu, skipped elsewhere."""
    import pytest

    from pallas_kernels._platform import on_gpu

    return [pytest.mark.gpu, pytest.mark.skipif(not on_gpu(), reason="needs an NVIDIA GPU; "
                                                "run through the device tool, see bench/RESULTS.md")]
