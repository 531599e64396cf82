"""Reference for the 8-bit GEMM with its epilogue fused.

    y = act((x_q @ w_q) * x_scale * w_scale + bias)      [-> requantize]

int8 operands accumulate exactly in int32 (`preferred_element_type=jnp.int32`),
fp8 e4m3 operands in float32; the epilogue runs in float32: per-tensor
activation scale times per-column weight scale, bias, activation, then either a
cast to `out_dtype` or a requantization to 8 bits with `out_scale` (what a
kernel writes when the next kernel consumes 8-bit data).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels.matmul.base import ACTIVATIONS
from pallas_kernels.quant_types import dot_8bit, quantize_values


def quantized_matmul_reference(
    x_q: jax.Array,
    x_scale: jax.Array,
    w_q: jax.Array,
    w_scale: jax.Array,
    bias: jax.Array | None = None,
    *,
    qtype: str,
    activation: str | None = None,
    out_dtype=jnp.float32,
    out_scale: jax.Array | None = None,
    out_qtype: str | None = None,
) -> jax.Array:
    """8-bit GEMM with fused dequantize / bias / activation (/ requantize).

    Args:
      x_q: `[..., K]` quantized activations (int8 or float8_e4m3fn).
      x_scale: scalar per-tensor activation scale.
      w_q: `[K, N]` quantized weights of the same qtype.
      w_scale: `[1, N]` per-output-channel weight scale.
      bias: optional `[N]` float bias.
      qtype: "int8" or "fp8".
      out_scale, out_qtype: when given, the result is requantized to 8 bits.
    """
    acc = dot_8bit("...k,kn->...n", x_q, w_q, (x_q.ndim - 1, 0), qtype)
    col_scale = column_scale(x_scale, w_scale)
    out_scale = None if out_scale is None else jnp.broadcast_to(out_scale, col_scale.shape)
    return epilogue(acc, col_scale, bias, activation=activation, out_scale=out_scale,
                    out_qtype=out_qtype or qtype, out_dtype=out_dtype)


def column_scale(x_scale: jax.Array, w_scale: jax.Array) -> jax.Array:
    """`[N]` float32 dequantization factor: per-tensor activation scale times per-column weight scale."""
    return x_scale.astype(jnp.float32) * w_scale.reshape(-1).astype(jnp.float32)


def epilogue(acc, col_scale, bias, *, activation, out_scale, out_qtype, out_dtype):
    """The fused epilogue on an accumulator tile, in float32; every kernel runs this same function.

    `col_scale`, `bias` and `out_scale` are `[N]` (or a tile of it) and broadcast
    over rows; `out_scale` set means requantize to `out_qtype`.
    """
    y = acc.astype(jnp.float32) * col_scale
    if bias is not None:
        y = y + bias.astype(jnp.float32)
    if activation is not None:
        y = ACTIVATIONS[activation](y)
    if out_scale is not None:
        return quantize_values(y, out_scale, out_qtype)
    return y.astype(out_dtype)
