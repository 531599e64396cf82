"""Reference for the fused add-bias + residual + LayerNorm.

`y = LayerNorm(x + x_bias + residual) * scale + bias`, statistics in float32.
Splitting the GEMM's bias off (`x_bias`) lets a GEMM write its raw product and
this op finish the epilogue, which is how the fused kernels are laid out. In
the `full_*` modes 8-bit data flows in and out: the residual may arrive as
codes with their `residual_scale`, and `out_scale` makes the output the codes
the next GEMM reads, so no separate quantize or dequantize kernel runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels.normalization import floats_or_codes, layer_norm_float32
from pallas_kernels.quant_types import quantize_values


def residual_layer_norm_reference(
    x: jax.Array,
    residual: jax.Array | None,
    scale: jax.Array,
    bias: jax.Array,
    *,
    x_bias: jax.Array | None = None,
    eps: float,
    out_dtype=None,
    residual_scale: jax.Array | None = None,
    out_scale: jax.Array | None = None,
    out_qtype: str | None = None,
    with_float: bool = False,
    partial_sums: bool = False,
):
    """LayerNorm over the last axis of `x (+ x_bias) (+ residual)`.

    Args:
      x: `[..., H]` input (a GEMM output); with `partial_sums`, `[P, ..., H]` partial products summed in
        float32 first (a split-K GEMM's, `matmul(..., partial_sums=True)`).
      residual: `[..., H]` or None.
      scale, bias: `[H]` LayerNorm affine parameters.
      x_bias: optional `[H]` bias of the GEMM that produced `x`.
      eps: variance epsilon (Hugging Face's `layer_norm_eps`).
      out_dtype: default `x.dtype`.
      residual_scale: set when `residual` is 8-bit codes (dequantized as `codes * scale`): a per-tensor
        scalar, or `[H]`, one scale per channel (a smoothed residual stream, `samp_jax.quant.smoothing`).
      out_scale, out_qtype: when given, the output is `out_qtype` codes (`quantize_values`).
      with_float: with `out_scale`, return `(float output in out_dtype, codes)`: the ffn_* modes
        need the float value as the FFN's residual and the codes as its GEMM input.
    """
    out_dtype = x.dtype if out_dtype is None else out_dtype
    h = jnp.sum(x.astype(jnp.float32), axis=0) if partial_sums else x.astype(jnp.float32)
    if x_bias is not None:
        h = h + x_bias.astype(jnp.float32)
    if residual is not None:
        r = residual.astype(jnp.float32)
        h = h + (r if residual_scale is None else r * residual_scale.astype(jnp.float32))
    y = layer_norm_float32(h, scale, bias, eps)
    if out_scale is None or out_qtype is None or not with_float:
        return floats_or_codes(y, out_dtype, out_scale, out_qtype)
    codes = quantize_values(y, out_scale, out_qtype)
    return y.astype(out_dtype), codes
