"""Public 8-bit GEMM op: validates, then dispatches by `implementation=`."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from pallas_kernels._dispatch import dispatch, one_partial
from pallas_kernels.activations import ACTIVATIONS
from pallas_kernels.quant_types import QTYPES
from pallas_kernels.quantized_matmul.base import (
    PackedWeight,
    pack_weight,
    quantized_matmul_packed_reference,
    quantized_matmul_reference,
)

_REGISTRY = {"xla": quantized_matmul_reference}
_PACKED_REGISTRY = {"xla": quantized_matmul_packed_reference}
_PARTIAL_REGISTRY = {"xla": one_partial(quantized_matmul_packed_reference)}  # partial_sums=True
try:  # Mosaic GPU needs a jaxlib with its dialects; the XLA reference always works
    from pallas_kernels.quantized_matmul.mosaic import quantized_matmul_mosaic, quantized_matmul_mosaic_packed

    _REGISTRY["mosaic"] = quantized_matmul_mosaic
    _PACKED_REGISTRY["mosaic"] = quantized_matmul_mosaic_packed
    _PARTIAL_REGISTRY["mosaic"] = functools.partial(quantized_matmul_mosaic_packed, partial_sums=True)
except ImportError:  # pragma: no cover
    pass

__all__ = ["PackedWeight", "pack_weight", "quantized_matmul", "quantized_matmul_packed"]


def quantized_matmul(
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
    implementation: str | None = None,
) -> jax.Array:
    """`act((x_q @ w_q) * x_scale * w_scale + bias)`; see `quantized_matmul_reference`."""
    if qtype not in ("int8", "fp8"):
        raise ValueError(f"quantized_matmul: {qtype=} must be 'int8' or 'fp8'")
    want = QTYPES[qtype][0]
    if x_q.dtype != want or w_q.dtype != want:
        raise ValueError(f"quantized_matmul: {qtype} needs {jnp.dtype(want)} operands, "
                         f"got x_q.dtype={x_q.dtype}, w_q.dtype={w_q.dtype}")
    if w_q.ndim != 2 or x_q.shape[-1] != w_q.shape[0]:
        raise ValueError(f"quantized_matmul: x_q.shape={x_q.shape} does not contract with w_q.shape={w_q.shape}")
    n = w_q.shape[1]
    if w_scale.shape != (1, n):
        raise ValueError(f"quantized_matmul: w_scale.shape={w_scale.shape}, expected (1, {n}) (per output channel)")
    if x_scale.size != 1:
        raise ValueError(f"quantized_matmul: x_scale.shape={x_scale.shape}, expected a per-tensor scalar")
    if bias is not None and bias.shape != (n,):
        raise ValueError(f"quantized_matmul: bias.shape={bias.shape}, expected ({n},)")
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"quantized_matmul: unknown {activation=}")
    return dispatch(
        "quantized_matmul", _REGISTRY, implementation, x_q, x_scale, w_q, w_scale, bias, qtype=qtype,
        activation=activation, out_dtype=out_dtype, out_scale=out_scale, out_qtype=out_qtype,
    )


def quantized_matmul_packed(
    x_q: jax.Array,
    packed: PackedWeight,
    *,
    activation: str | None = None,
    out_dtype=jnp.float32,
    out_qtype: str | None = None,
    partial_sums: bool = False,
    implementation: str | None = None,
) -> jax.Array:
    """`quantized_matmul` on a weight packed once by `pack_weight` (what a served model calls).

    `partial_sums=True` (a weight packed without an output scale, no activation) returns `[P, ..., N]`
    partial products whose sum over the first axis is the result: a kernel may split K over more SMs when
    few rows leave most of them idle (P > 1, float32, the bias in the first part); else P = 1 in
    `out_dtype`. The residual LayerNorm sums them (`residual_layer_norm(..., partial_sums=True)`).
    """
    if not isinstance(packed, PackedWeight):
        raise ValueError(f"quantized_matmul_packed: packed is a {type(packed).__name__}, expected a PackedWeight "
                         "(pallas_kernels.quantized_matmul.pack_weight)")
    want = QTYPES[packed.qtype][0]
    if x_q.dtype != want:
        raise ValueError(f"quantized_matmul_packed: the weight is {packed.qtype}, x_q.dtype={x_q.dtype}")
    k, n = packed.shape
    if x_q.shape[-1] != k:
        raise ValueError(f"quantized_matmul_packed: x_q.shape={x_q.shape} does not contract with a [{k}, {n}] weight")
    if packed.vectors.shape != (3, n):
        raise ValueError(f"quantized_matmul_packed: vectors.shape={packed.vectors.shape}, expected (3, {n})")
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"quantized_matmul_packed: unknown {activation=}")
    if out_qtype is not None and not packed.requantize:
        raise ValueError(f"quantized_matmul_packed: {out_qtype=} but the weight was packed without an out_scale")
    if partial_sums and (packed.requantize or activation is not None):
        raise ValueError(f"quantized_matmul_packed: partial_sums=True needs a weight packed without out_scale "
                         f"and no activation (requantize={packed.requantize}, {activation=})")
    registry = _PARTIAL_REGISTRY if partial_sums else _PACKED_REGISTRY
    return dispatch(
        "quantized_matmul_packed", registry, implementation, x_q, packed, activation=activation,
        out_dtype=out_dtype, out_qtype=out_qtype,
    )
