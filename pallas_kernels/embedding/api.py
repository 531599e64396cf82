"""Public fused-embedding op: validates shapes, then dispatches by `implementation=`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels._dispatch import dispatch
from pallas_kernels.embedding.base import embedding_layer_norm_reference

_REGISTRY = {"xla": embedding_layer_norm_reference}
try:  # Pallas-Triton needs jaxlib's Triton bindings; the XLA reference always works
    from pallas_kernels.embedding.triton import embedding_layer_norm_triton

    _REGISTRY["triton"] = embedding_layer_norm_triton
except ImportError:  # pragma: no cover
    pass


def embedding_layer_norm(
    input_ids: jax.Array,
    position_ids: jax.Array,
    token_type_ids: jax.Array | None,
    word_table: jax.Array,
    position_table: jax.Array,
    token_type_table: jax.Array | None,
    scale: jax.Array,
    bias: jax.Array,
    *,
    eps: float,
    out_dtype=jnp.float32,
    out_scale: jax.Array | None = None,
    out_qtype: str | None = None,
    implementation: str | None = None,
) -> jax.Array:
    """Word + position (+ token type) embedding and LayerNorm in one op; 8-bit codes with `out_scale`."""
    if position_ids.shape != input_ids.shape:
        raise ValueError(
            f"embedding: position_ids.shape={position_ids.shape} != input_ids.shape={input_ids.shape}"
        )
    if (token_type_table is None) != (token_type_ids is None):
        raise ValueError("embedding: token_type_ids and token_type_table must be given together")
    if token_type_ids is not None and token_type_ids.shape != input_ids.shape:
        raise ValueError(
            f"embedding: token_type_ids.shape={token_type_ids.shape} != input_ids.shape={input_ids.shape}"
        )
    if (out_scale is None) != (out_qtype is None) or out_qtype not in (None, "int8", "fp8"):
        raise ValueError(f"embedding: out_qtype={out_qtype!r} needs an out_scale and one of 'int8', 'fp8'")
    if out_scale is not None and jnp.size(out_scale) != 1:
        raise ValueError(f"embedding: out_scale.shape={jnp.shape(out_scale)}, expected a per-tensor scalar")
    return dispatch(
        "embedding_layer_norm", _REGISTRY, implementation,
        input_ids, position_ids, token_type_ids, word_table, position_table, token_type_table,
        scale, bias, eps=eps, out_dtype=out_dtype, out_scale=out_scale, out_qtype=out_qtype,
    )
