"""Public GEMM op: validates, then dispatches by `implementation=`."""

from __future__ import annotations

import functools

import jax

from pallas_kernels._dispatch import dispatch, one_partial
from pallas_kernels.activations import ACTIVATIONS
from pallas_kernels.matmul.base import matmul_reference

_REGISTRY = {"xla": matmul_reference}
_PARTIAL_REGISTRY = {"xla": one_partial(matmul_reference)}  # partial_sums=True
try:  # Mosaic GPU needs a jaxlib with its dialects; the XLA reference always works
    from pallas_kernels.matmul.mosaic import matmul_mosaic

    _REGISTRY["mosaic"] = matmul_mosaic
    _PARTIAL_REGISTRY["mosaic"] = functools.partial(matmul_mosaic, partial_sums=True)
except ImportError:  # pragma: no cover
    pass


def matmul(
    x: jax.Array,
    w: jax.Array,
    bias: jax.Array | None = None,
    *,
    activation: str | None = None,
    out_dtype=None,
    partial_sums: bool = False,
    implementation: str | None = None,
) -> jax.Array:
    """`act(x @ w + bias)` with a float32 accumulator; see `matmul_reference`.

    `partial_sums=True` (no activation) returns `[P, ..., N]` partial products whose sum over the first
    axis is `x @ w + bias`: a kernel may split K over more SMs when few rows leave most of them idle (P > 1,
    float32, the bias in the first part); else P = 1 in `out_dtype`. The residual LayerNorm sums them
    (`residual_layer_norm(..., partial_sums=True)`).
    """
    if w.ndim != 2 or x.shape[-1] != w.shape[0]:
        raise ValueError(f"matmul: x.shape={x.shape} does not contract with w.shape={w.shape}")
    if bias is not None and bias.shape != (w.shape[1],):
        raise ValueError(f"matmul: bias.shape={bias.shape}, expected ({w.shape[1]},)")
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"matmul: unknown {activation=}; known: {sorted(ACTIVATIONS)}")
    if partial_sums and activation is not None:
        raise ValueError(f"matmul: partial_sums=True takes no activation (the parts are summed after), got {activation=}")
    return dispatch(
        "matmul", _PARTIAL_REGISTRY if partial_sums else _REGISTRY, implementation, x, w, bias,
        activation=activation, out_dtype=out_dtype,
    )
