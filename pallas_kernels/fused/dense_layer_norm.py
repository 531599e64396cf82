"""Dense + residual + LayerNorm: a Transformer block's output projection and its post-LayerNorm, as one op.

    y = LayerNorm(x @ w + bias + residual) * scale + shift      [-> 8-bit codes]

Two kernels cooperate on it, and the protocol between them lives here: the GEMM may write float32 partial
products over a few K ranges (split K, chosen by the GEMM's tile choice where few rows would leave most
SMs idle; one part in the output dtype otherwise) and the residual LayerNorm sums them as it reads them,
so no reduction kernel runs between the two.
"""

from __future__ import annotations

import dataclasses

import jax

from pallas_kernels.layer_norm.api import residual_layer_norm
from pallas_kernels.matmul.api import matmul
from pallas_kernels.quantized_matmul.api import PackedWeight, quantized_matmul_packed


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Codes:
    """An 8-bit output: the codes `quant_types.quantize_values(y, scale, qtype)` the next GEMM reads.

    Attributes:
      scale: scalar float32 scale of the codes.
      qtype: "int8" or "fp8" (static).
    """

    scale: jax.Array
    qtype: str = dataclasses.field(metadata=dict(static=True))


def _layer_norm(parts, residual, scale, shift, *, eps, out_dtype, residual_scale, codes: Codes | None,
                keep_float: bool):
    if keep_float and codes is None:
        raise ValueError("dense_residual_layer_norm: keep_float=True returns (float, codes) and needs codes")
    return residual_layer_norm(parts, residual, scale, shift, eps=eps, out_dtype=out_dtype,
                               residual_scale=residual_scale, out_scale=None if codes is None else codes.scale,
                               out_qtype=None if codes is None else codes.qtype, with_float=keep_float,
                               partial_sums=True)


def dense_residual_layer_norm(x: jax.Array, w: jax.Array, bias: jax.Array, residual: jax.Array, scale: jax.Array,
                              shift: jax.Array, *, eps: float, out_dtype=None, codes: Codes | None = None,
                              keep_float: bool = False):
    """`LayerNorm(x @ w + bias + residual) * scale + shift` on a float (bf16/fp16/fp32) GEMM.

    Args:
      x: `[..., K]` activations; the GEMM's products are in `x.dtype` (float32 where K is split).
      w: `[K, N]` weight; bias, scale, shift: `[N]`.
      residual: `[..., N]` float.
      eps: the LayerNorm's variance epsilon.
      out_dtype: the float output's dtype (default `x.dtype`).
      codes: return the output as 8-bit codes instead (the next GEMM's input).
      keep_float: with `codes`, return `(float output, codes)`: a block whose output is both the next
        block's residual and, quantized, its GEMM input.
    """
    parts = matmul(x, w, bias, partial_sums=True)
    return _layer_norm(parts, residual, scale, shift, eps=eps, out_dtype=out_dtype, residual_scale=None, codes=codes,
                       keep_float=keep_float)


def quantized_dense_residual_layer_norm(x_q: jax.Array, packed: PackedWeight, residual: jax.Array, scale: jax.Array,
                                        shift: jax.Array, *, eps: float, out_dtype,
                                        residual_scale: jax.Array | None = None, codes: Codes | None = None):
    """`LayerNorm(dequantized (x_q @ w_q) + bias + residual) * scale + shift` on an 8-bit GEMM.

    Args:
      x_q: `[..., K]` 8-bit codes; `packed`: the weight packed with `x_q`'s scale and no output scale
        (`quantized_matmul.pack_weight`).
      residual: `[..., N]` float, or 8-bit codes with their `residual_scale`.
      out_dtype: the float dtype of the GEMM's products (float32 where K is split) and of the float output.
      codes: return the output as 8-bit codes (the next GEMM's input).
    """
    parts = quantized_matmul_packed(x_q, packed, out_dtype=out_dtype, partial_sums=True)
    return _layer_norm(parts, residual, scale, shift, eps=eps, out_dtype=out_dtype,
                       residual_scale=residual_scale, codes=codes, keep_float=False)
