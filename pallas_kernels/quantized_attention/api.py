"""Public quantized-attention op: validates, then dispatches by `implementation=`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels._dispatch import dispatch
from pallas_kernels.quant_types import QTYPES
from pallas_kernels.quantized_attention.base import PROBS_MODES, quantized_attention_reference

_REGISTRY = {"xla": quantized_attention_reference}


def quantized_attention(
    q_q: jax.Array,
    k_q: jax.Array,
    v_q: jax.Array,
    q_scale: jax.Array,
    k_scale: jax.Array,
    v_scale: jax.Array,
    key_mask: jax.Array,
    bias: jax.Array | None = None,
    *,
    scale: float,
    qtype: str,
    probs: str = "uint8",
    probs_scale: jax.Array | None = None,
    out_dtype=jnp.float32,
    implementation: str | None = None,
) -> jax.Array:
    """Attention on 8-bit Q, K, V; see `quantized_attention_reference`."""
    if qtype not in ("int8", "fp8"):
        raise ValueError(f"quantized_attention: {qtype=} must be 'int8' or 'fp8'")
    if probs not in PROBS_MODES:
        raise ValueError(f"quantized_attention: {probs=} must be one of {PROBS_MODES}")
    if probs == "int8" and probs_scale is None:
        raise ValueError("quantized_attention: probs='int8' (naive) needs a calibrated probs_scale")
    want = QTYPES[qtype][0]
    for name, t in (("q_q", q_q), ("k_q", k_q), ("v_q", v_q)):
        if t.dtype != want:
            raise ValueError(f"quantized_attention: {name}.dtype={t.dtype}, expected {jnp.dtype(want)}")
    if q_q.ndim != 4 or k_q.shape != q_q.shape or v_q.shape != q_q.shape:
        raise ValueError(f"quantized_attention: q, k, v must share [B, S, N, D], got {q_q.shape}, {k_q.shape}, {v_q.shape}")
    if key_mask.shape != q_q.shape[:2]:
        raise ValueError(f"quantized_attention: key_mask.shape={key_mask.shape}, expected {q_q.shape[:2]}")
    return dispatch(
        "quantized_attention", _REGISTRY, implementation, q_q, k_q, v_q, q_scale, k_scale, v_scale, key_mask,
        bias, scale=scale, qtype=qtype, probs=probs, probs_scale=probs_scale, out_dtype=out_dtype,
    )
