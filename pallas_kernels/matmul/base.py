"""Reference for the GEMM with a fused epilogue: `act(x @ w + bias)`.

This is the specification the Pallas GEMM kernels are tested against and the
XLA fallback: operands in their storage dtype, a float32 accumulator, then the
epilogue (bias, activation) in float32, and one cast to the output dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels._precision import dot_precision
from pallas_kernels.activations import ACTIVATIONS

__all__ = ["ACTIVATIONS", "matmul_reference"]  # ACTIVATIONS: pallas_kernels.activations' (imported from here too)


def matmul_reference(
    x: jax.Array,
    w: jax.Array,
    bias: jax.Array | None = None,
    *,
    activation: str | None = None,
    out_dtype=None,
) -> jax.Array:
    """Computes `act(x @ w + bias)`.

    Args:
      x: `[..., K]` activations in the compute dtype.
      w: `[K, N]` weights; cast to `x.dtype` if stored wider.
      bias: optional `[N]`, added in float32.
      activation: a key of `activations.ACTIVATIONS` or None.
      out_dtype: output dtype, default `x.dtype`.
    """
    out_dtype = x.dtype if out_dtype is None else out_dtype
    acc = jnp.dot(
        x,
        w.astype(x.dtype),
        precision=dot_precision(x.dtype),
        preferred_element_type=jnp.float32,
    )
    if bias is not None:
        acc = acc + bias.astype(jnp.float32)
    if activation is not None:
        acc = ACTIVATIONS[activation](acc)
    return acc.astype(out_dtype)
