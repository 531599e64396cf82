"""Public GEMM op: validates, then dispatches by `implementation=`."""

from __future__ import annotations

import jax

from pallas_kernels._dispatch import dispatch
from pallas_kernels.matmul.base import ACTIVATIONS, matmul_reference

_REGISTRY = {"xla": matmul_reference}
try:  # Mosaic GPU needs a jaxlib with its dialects; the XLA reference always works
    from pallas_kernels.matmul.mosaic import matmul_mosaic

    _REGISTRY["mosaic"] = matmul_mosaic
except ImportError:  # pragma: no cover
    pass


def matmul(
    x: jax.Array,
    w: jax.Array,
    bias: jax.Array | None = None,
    *,
    activation: str | None = None,
    out_dtype=None,
    implementation: str | None = None,
) -> jax.Array:
    """`act(x @ w + bias)` with a float32 accumulator; see `matmul_reference`."""
    if w.ndim != 2 or x.shape[-1] != w.shape[0]:
        raise ValueError(f"matmul: x.shape={x.shape} does not contract with w.shape={w.shape}")
    if bias is not None and bias.shape != (w.shape[1],):
        raise ValueError(f"matmul: bias.shape={bias.shape}, expected ({w.shape[1]},)")
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"matmul: unknown {activation=}; known: {sorted(ACTIVATIONS)}")
    return dispatch(
        "matmul", _REGISTRY, implementation, x, w, bias, activation=activation, out_dtype=out_dtype
    )
