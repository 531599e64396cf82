"""Reference for the 8-bit GEMM with its epilogue fused.

    y = act((x_q @ w_q) * x_scale * w_scale + bias)      [-> requantize]

int8 operands accumulate exactly in int32 (`preferred_element_type=jnp.int32`),
fp8 e4m3 operands in float32; the epilogue runs in float32: per-tensor
activation scale times per-column weight scale, bias, activation, then either a
cast to `out_dtype` or a requantization to 8 bits with `out_scale` (what a
kernel writes when the next kernel consumes 8-bit data).
"""

from __future__ import annotations

import math

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


_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf_poly(x: jax.Array) -> jax.Array:
    """erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7), from exp, max, select and arithmetic only.

    Mosaic GPU (jax 0.11.2) has no layout rule for `math.erf`; this form
    compiles there. GELU's output moves by at most |x| * 1e-7.
    """
    ax = jnp.maximum(x, -x)
    t = 1.0 / (1.0 + _ERF_P * ax)
    poly = t * (_ERF_A[0] + t * (_ERF_A[1] + t * (_ERF_A[2] + t * (_ERF_A[3] + t * _ERF_A[4]))))
    e = 1.0 - poly * jnp.exp(-(ax * ax))
    return jnp.where(x >= 0, e, -e)


# The activations the fused GEMM kernels compute in their epilogue.
KERNEL_ACTIVATIONS = {"gelu": lambda x: 0.5 * x * (1.0 + erf_poly(x * (1.0 / math.sqrt(2.0))))}


def column_scale(x_scale: jax.Array, w_scale: jax.Array) -> jax.Array:
    """`[N]` float32 dequantization factor: per-tensor activation scale times per-column weight scale."""
    return x_scale.astype(jnp.float32) * w_scale.reshape(-1).astype(jnp.float32)


def epilogue(acc, col_scale, bias, *, activation, out_scale, out_qtype, out_dtype, activations=ACTIVATIONS):
    """The fused epilogue on an accumulator tile, in float32; every kernel runs this same function.

    `col_scale`, `bias` and `out_scale` are `[N]` (or a tile of it) and broadcast
    over rows; `out_scale` set means requantize to `out_qtype`. Kernels whose
    compiler lacks an op pass their own `activations` (KERNEL_ACTIVATIONS).
    """
    y = acc.astype(jnp.float32) * col_scale
    if bias is not None:
        y = y + bias.astype(jnp.float32)
    if activation is not None:
        if activation not in activations:
            raise NotImplementedError(f"{activation=} has no in-kernel form here")
        y = activations[activation](y)
    if out_scale is not None:
        return quantize_values(y, out_scale, out_qtype)
    return y.astype(out_dtype)
