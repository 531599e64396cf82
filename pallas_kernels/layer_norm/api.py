"""Public residual LayerNorm op: validates, then dispatches by `implementation=`."""

from __future__ import annotations

import jax

from pallas_kernels._dispatch import dispatch
from pallas_kernels.layer_norm.base import residual_layer_norm_reference

_REGISTRY = {"xla": residual_layer_norm_reference}
try:  # Pallas-Triton needs jaxlib's Triton bindings; the XLA reference always works
    from pallas_kernels.layer_norm.triton import residual_layer_norm_triton

    _REGISTRY["triton"] = residual_layer_norm_triton
except ImportError:  # pragma: no cover
    pass


def residual_layer_norm(
    x: jax.Array,
    residual: jax.Array | None,
    scale: jax.Array,
    bias: jax.Array,
    *,
    x_bias: jax.Array | None = None,
    eps: float,
    out_dtype=None,
    implementation: str | None = None,
) -> jax.Array:
    """`LayerNorm(x + x_bias + residual)`; see `residual_layer_norm_reference`."""
    hidden = x.shape[-1]
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"residual_layer_norm: residual.shape={residual.shape} != x.shape={x.shape}")
    for name, p in (("scale", scale), ("bias", bias), ("x_bias", x_bias)):
        if p is not None and p.shape != (hidden,):
            raise ValueError(f"residual_layer_norm: {name}.shape={p.shape}, expected ({hidden},)")
    return dispatch(
        "residual_layer_norm", _REGISTRY, implementation,
        x, residual, scale, bias, x_bias=x_bias, eps=eps, out_dtype=out_dtype,
    )
