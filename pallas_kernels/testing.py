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

