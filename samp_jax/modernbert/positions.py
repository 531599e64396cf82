"""ModernBERT's positions: rotary embeddings (as Hugging Face's default `ModernBertRotaryEmbedding`) and the
local layers' window mask, both for positions 0..S-1 of a padded batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

MASK_VALUE = float(np.finfo(np.float32).min)  # what Hugging Face's eager attention adds outside the window


def rotary_tables(seq_len: int, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """`cos`, `sin` `[S, D]` float32 for positions 0..S-1, as Hugging Face's default rotary embedding makes them
    (inverse frequencies and angles in float32, the halves repeated)."""
    inv_freq = np.float32(1.0) / (np.float32(theta) ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    angles = jnp.arange(seq_len, dtype=jnp.float32)[:, None] * jnp.asarray(inv_freq, jnp.float32)[None]
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """`x * cos + rotate_half(x) * sin` on `[B, S, N, D]` in float32 (cos, sin `[S, D]`), cast back to x's dtype.

    Hugging Face casts the tables to the hidden dtype first; so does this (a no-op in float32).
    """
    cos = cos.astype(x.dtype).astype(jnp.float32)[None, :, None, :]
    sin = sin.astype(x.dtype).astype(jnp.float32)[None, :, None, :]
    xf = x.astype(jnp.float32)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
    return (xf * cos + rotated * sin).astype(x.dtype)


def window_bias(seq_len: int, num_heads: int, window: int) -> jax.Array:
    """`[1, N, S, S]` additive mask of a local layer: 0 where `|q - k| <= window`, float32's minimum elsewhere
    (Hugging Face's eager mask), so a query with no key in reach averages all keys as there."""
    pos = np.arange(seq_len)
    bias = np.where(np.abs(pos[:, None] - pos[None, :]) <= window, 0.0, MASK_VALUE).astype(np.float32)
    return jnp.broadcast_to(jnp.asarray(bias)[None, None], (1, num_heads, seq_len, seq_len))
