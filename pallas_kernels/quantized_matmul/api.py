"""Public 8-bit GEMM op: validates, then dispatches by `implementation=`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels._dispatch import dispatch
from pallas_kernels.matmul.base import ACTIVATIONS
from pallas_kernels.quant_types import QTYPES
from pallas_kernels.quantized_matmul.base import quantized_matmul_reference

_REGISTRY = {"xla": quantized_matmul_reference}
try:  # Mosaic GPU needs a jaxlib with its dialects; the XLA reference always works
    from pallas_kernels.quantized_matmul.mosaic import quantized_matmul_mosaic

    _REGISTRY["mosaic"] = quantized_matmul_mosaic
except ImportError:  # pragma: no cover
    pass


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
