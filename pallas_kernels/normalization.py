"""LayerNorm as the references state it: statistics in float32, the output as floats or 8-bit codes.

The residual LayerNorm's and the fused embedding's references both end in this; their kernels compute the
same (`triton_rows.layer_norm_rows`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels.quant_types import quantize_values


def layer_norm_float32(h: jax.Array, scale: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
    """`(h - mean) / sqrt(var + eps) * scale + bias` over the last axis of float32 `h`, in float32."""
    mean = jnp.mean(h, axis=-1, keepdims=True)
    centered = h - mean
    var = jnp.mean(centered * centered, axis=-1, keepdims=True)
    y = centered * jax.lax.rsqrt(var + eps)
    return y * scale.astype(jnp.float32) + bias.astype(jnp.float32)


def floats_or_codes(y: jax.Array, out_dtype, out_scale: jax.Array | None, out_qtype: str | None) -> jax.Array:
    """`y` in `out_dtype`, or with `out_scale` its `out_qtype` codes (`quantize_values`)."""
    if out_scale is None:
        return y.astype(out_dtype)
    if out_qtype is None:
        raise ValueError("an out_scale needs its out_qtype ('int8' or 'fp8')")
    return quantize_values(y, out_scale, out_qtype)
