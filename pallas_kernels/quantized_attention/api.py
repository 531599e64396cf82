"""Public quantized-attention op: validates, then dispatches by `implementation=`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels._dispatch import dispatch
from pallas_kernels.flash.checks import check_packed
from pallas_kernels.quant_types import QTYPES
from pallas_kernels.quantized_attention.base import (
    PROBS_MODES,
    quantized_attention_packed_reference,
    quantized_attention_reference,
)

_REGISTRY = {"xla": quantized_attention_reference}
_PACKED_REGISTRY = {"xla": quantized_attention_packed_reference}
try:  # Pallas-Triton needs jaxlib's Triton bindings; the XLA reference always works
    from pallas_kernels.quantized_attention.triton import quantized_attention_packed_triton

    _PACKED_REGISTRY["triton"] = quantized_attention_packed_triton
except ImportError:  # pragma: no cover
    pass


def _check(op: str, qtype: str, probs: str, probs_scale, tensors) -> None:
    if qtype not in ("int8", "fp8"):
        raise ValueError(f"{op}: {qtype=} must be 'int8' or 'fp8'")
    if probs not in PROBS_MODES:
        raise ValueError(f"{op}: {probs=} must be one of {PROBS_MODES}")
    if probs == "int8" and probs_scale is None:
        raise ValueError(f"{op}: probs='int8' (naive) needs a calibrated probs_scale")
    want = QTYPES[qtype][0]
    for name, t in tensors:
        if t.dtype != want:
            raise ValueError(f"{op}: {name}.dtype={t.dtype}, expected {jnp.dtype(want)}")


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
    _check("quantized_attention", qtype, probs, probs_scale, (("q_q", q_q), ("k_q", k_q), ("v_q", v_q)))
    if q_q.ndim != 4 or k_q.shape != q_q.shape or v_q.shape != q_q.shape:
        raise ValueError(f"quantized_attention: q, k, v must share [B, S, N, D], got {q_q.shape}, {k_q.shape}, {v_q.shape}")
    if key_mask.shape != q_q.shape[:2]:
        raise ValueError(f"quantized_attention: key_mask.shape={key_mask.shape}, expected {q_q.shape[:2]}")
    return dispatch(
        "quantized_attention", _REGISTRY, implementation, q_q, k_q, v_q, q_scale, k_scale, v_scale, key_mask,
        bias, scale=scale, qtype=qtype, probs=probs, probs_scale=probs_scale, out_dtype=out_dtype,
    )


def quantized_attention_packed(
    qkv_q: jax.Array,
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
    out_scale: jax.Array | None = None,
    implementation: str | None = None,
) -> jax.Array:
    """Attention on the requantized QKV GEMM output `[B, S, 3, N, D]`; see `quantized_attention_reference`.

    With `out_scale` (a per-tensor scalar) the context comes back as `qtype`
    codes, quantized inside the kernel for the output projection.
    """
    _check("quantized_attention_packed", qtype, probs, probs_scale, (("qkv_q", qkv_q),))
    check_packed("quantized_attention_packed", qkv_q, key_mask, bias)
    if out_scale is not None and jnp.size(out_scale) != 1:
        raise ValueError(f"quantized_attention_packed: out_scale.shape={jnp.shape(out_scale)}, expected a scalar")
    return dispatch(
        "quantized_attention_packed", _PACKED_REGISTRY, implementation, qkv_q, q_scale, k_scale, v_scale, key_mask,
        bias, scale=scale, qtype=qtype, probs=probs, probs_scale=probs_scale, out_dtype=out_dtype,
        out_scale=out_scale,
    )
