"""The softmax both attention references take: bias added, padding keys masked, in float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Masked keys get float32's most negative value rather than -inf, so an all-padding row (a padded batch slot)
# yields finite output.
MASK_VALUE = float(jnp.finfo(jnp.float32).min)


def allowed_keys(key_mask: jax.Array) -> jax.Array:
    """Which keys each query attends to, `[B, 1, S, S]` (or `[B, 1, 1, S]` for a bool mask).

    `key_mask` is `[B, S]`: bool (True where the key is a real token), or integer segment ids, several sequences
    packed in a row (`samp_jax.packing`): 0 on padding, each sequence's tokens one id. A query attends to the
    keys of its own segment; a padding query (segment 0) to every real key, as with a bool mask, so that a
    0/1 mask as segment ids masks exactly as the bool mask does.
    """
    if key_mask.dtype == jnp.bool_:
        return key_mask[:, None, None, :]
    q, k = key_mask[:, None, :, None], key_mask[:, None, None, :]
    return (k != 0) & ((q == k) | (q == 0))


def masked_softmax(logits: jax.Array, key_mask: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """`softmax(logits + bias)` over keys, keys a query may not see (`allowed_keys`) at `MASK_VALUE`.

    Args:
      logits: float32 `[B, N, S, S]` (batch, heads, queries, keys), already scaled.
      key_mask: `[B, S]` bool, True where the key is a real token; or int segment ids (`allowed_keys`).
      bias: optional `[1 or B, N, S, S]`, added in float32.
    """
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)
    logits = jnp.where(allowed_keys(key_mask), logits, MASK_VALUE)
    return jax.nn.softmax(logits, axis=-1)
