"""Shared helpers for op tests: float64 numpy oracles and per-dtype tolerances."""

from __future__ import annotations

import math

import numpy as np

# Relative tolerance on ||out - ref|| / ||ref|| per compute dtype: float32 lands
# far below 1e-5 on these sizes; half precisions carry their unit roundoff
# (2^-9 for bf16, 2^-12 for fp16) times a few roundings.
REL_TOL = {"float32": 1e-5, "bfloat16": 2e-2, "float16": 3e-3}


def rel_error(out, ref) -> float:
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    return float(np.linalg.norm(out - ref) / max(float(np.linalg.norm(ref)), 1e-30))


def gelu_np(x) -> np.ndarray:
    """Exact (erf) GELU in float64: `x Phi(x)`, with `Phi` from `math.erfc` (no cancellation for negative x)."""
    x = np.asarray(x, np.float64)
    return 0.5 * x * np.vectorize(math.erfc)(-x / np.sqrt(2))


def layer_norm_np(h: np.ndarray, scale, bias, eps) -> np.ndarray:
    h = np.asarray(h, np.float64)
    mean = h.mean(-1, keepdims=True)
    var = ((h - mean) ** 2).mean(-1, keepdims=True)
    return (h - mean) / np.sqrt(var + eps) * np.asarray(scale, np.float64) + np.asarray(bias, np.float64)



def assert_codes_close(out, want: np.ndarray, qtype: str) -> None:
    """8-bit codes `out` against the exact scaled values `want` (float64, already divided by the scale).

    float32 statistics may send a value within rounding of a tie to either
    neighbour: int8 codes within 1 of the exact rounding and nearly all equal;
    fp8 codes within half an e4m3 step (3 mantissa bits) of the exact value.
    """
    got = np.asarray(out, np.float64)
    if qtype == "int8":
        want = np.clip(np.round(want), -127, 127)
        assert np.abs(got - want).max() <= 1 and np.mean(got == want) > 0.999
    else:
        step = 2.0 ** np.maximum(np.floor(np.log2(np.maximum(np.abs(want), 2.0**-6))) - 3, -9)
        assert (np.abs(got - np.clip(want, -448, 448)) <= step * 0.5 + 1e-6 * np.abs(want) + 1e-9).mean() > 0.999
