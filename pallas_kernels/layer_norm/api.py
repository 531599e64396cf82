"""Public residual LayerNorm op: validates, then dispatches by `implementation=`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels._dispatch import dispatch
from pallas_kernels.layer_norm.base import residual_layer_norm_reference
from pallas_kernels.quant_types import is_codes

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
    residual_scale: jax.Array | None = None,
    out_scale: jax.Array | None = None,
    out_qtype: str | None = None,
    with_float: bool = False,
    partial_sums: bool = False,
    implementation: str | None = None,
):
    """`LayerNorm(x + x_bias + residual)`, 8-bit in or out as asked; see `residual_layer_norm_reference`.

    With `partial_sums`, `x` is `[P, ..., H]`: a split-K GEMM's partial products, summed first.
    Returns the output, or `(float output, codes)` with `with_float`.
    """
    hidden = x.shape[-1]
    if partial_sums and x.ndim < 2:
        raise ValueError(f"residual_layer_norm: partial_sums=True needs x as [P, ..., H], got x.shape={x.shape}")
    shape = x.shape[1:] if partial_sums else x.shape
    if residual is not None and residual.shape != shape:
        what = "x.shape[1:] (partial sums)" if partial_sums else "x.shape"
        raise ValueError(f"residual_layer_norm: residual.shape={residual.shape} != {what}={shape}")
    if residual is not None and is_codes(residual) != (residual_scale is not None):
        raise ValueError(f"residual_layer_norm: residual.dtype={residual.dtype} with residual_scale="
                         f"{'None' if residual_scale is None else 'set'}: 8-bit codes need their scale, floats none")
    if residual_scale is not None and jnp.size(residual_scale) != 1 and jnp.shape(residual_scale) != (hidden,):
        raise ValueError(f"residual_layer_norm: residual_scale.shape={jnp.shape(residual_scale)}, expected a per-tensor "
                         f"scalar or one scale per channel ({hidden},)")
    if out_scale is not None and jnp.size(out_scale) != 1:
        raise ValueError(f"residual_layer_norm: out_scale.shape={jnp.shape(out_scale)}, expected a per-tensor scalar")
    if (out_scale is None) != (out_qtype is None) or out_qtype not in (None, "int8", "fp8"):
        raise ValueError(f"residual_layer_norm: out_qtype={out_qtype!r} needs an out_scale and one of 'int8', 'fp8'")
    if with_float and out_scale is None:
        raise ValueError("residual_layer_norm: with_float=True returns (float, codes) and needs an out_scale")
    for name, p in (("scale", scale), ("bias", bias), ("x_bias", x_bias)):
        if p is not None and p.shape != (hidden,):
            raise ValueError(f"residual_layer_norm: {name}.shape={p.shape}, expected ({hidden},)")
    return dispatch(
        "residual_layer_norm", _REGISTRY, implementation,
        x, residual, scale, bias, x_bias=x_bias, eps=eps, out_dtype=out_dtype, residual_scale=residual_scale,
        out_scale=out_scale, out_qtype=out_qtype, with_float=with_float, partial_sums=partial_sums,
    )
