"""The softmax both attention references take: bias added, padding keys masked, in float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Masked keys get float32's most negative value rather than -inf, so an all-padding row (a padded batch slot)
# yields finite output.
MASK_VALUE = float(jnp.finfo(jnp.float32).min)


def masked_softmax(logits: jax.Array, key_mask: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """`softmax(logits + bias)` over keys, padding keys (`key_mask` False) at `MASK_VALUE`.

    Args:
      logits: float32 `[B, N, S, S]` (batch, heads, queries, keys), already scaled.
      key_mask: `[B, S]` bool, True where the key is a real token.
      bias: optional `[1 or B, N, S, S]`, added in float32.
    """
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)
    logits = jnp.where(key_mask[:, None, None, :], logits, MASK_VALUE)
    return jax.nn.softmax(logits, axis=-1)
