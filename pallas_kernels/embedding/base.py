"""Reference for the fused embedding: three gathers, their sum, LayerNorm.

Ids are assumed in range: XLA's gather clamps out-of-range indices silently,
so callers validate ids on the host before they reach this op
(`samp_jax.validation`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels.normalization import floats_or_codes, layer_norm_float32


def embedding_layer_norm_reference(
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
) -> jax.Array:
    """`LayerNorm(word[ids] + position[pos] + token_type[types])`, sum in float32.

    Args:
      input_ids, position_ids, token_type_ids: `[B, S]` integer ids
        (`token_type_ids` and `token_type_table` are None for models without
        token types, such as MPNet).
      word_table `[V, H]`, position_table `[P, H]`, token_type_table `[T, H]`.
      scale, bias: `[H]` LayerNorm parameters.
      out_scale, out_qtype: when given, the output is `out_qtype` codes: the 8-bit input of a
        `full_*` first layer, quantized from float32 with no separate kernel.
    """
    h = jnp.take(word_table, input_ids, axis=0).astype(jnp.float32)
    h = h + jnp.take(position_table, position_ids, axis=0).astype(jnp.float32)
    if token_type_table is not None and token_type_ids is not None:  # given together (the op checks)
        h = h + jnp.take(token_type_table, token_type_ids, axis=0).astype(jnp.float32)
    return floats_or_codes(layer_norm_float32(h, scale, bias, eps), out_dtype, out_scale, out_qtype)
