"""Reference for the GEMM with a fused epilogue: `act(x @ w + bias)`.

This is the specification the Pallas GEMM kernels are tested against and the
XLA fallback: operands in their storage dtype, a float32 accumulator, then the
epilogue (bias, activation) in float32, and one cast to the output dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from pallas_kernels._precision import dot_precision


def _gelu_tanh(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=True)


def _gelu_erf(x: jax.Array) -> jax.Array:
    # erf rather than jax.nn.gelu's erfc form: Mosaic GPU lowers erf but not erfc,
    # and kernels and reference must run the same formula.
    return 0.5 * x * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))


def _quick_gelu(x: jax.Array) -> jax.Array:
    return x * jax.nn.sigmoid(1.702 * x)


# Names follow Hugging Face's `hidden_act` values so configs map one to one.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": _gelu_erf,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "quick_gelu": _quick_gelu,
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}


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
      activation: a key of `ACTIVATIONS` or None.
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


def matmul_flops(x_shape: tuple[int, ...], n: int) -> int:
    """Multiply-adds counted as two operations, for the benchmarks."""
    return 2 * math.prod(x_shape) * n
