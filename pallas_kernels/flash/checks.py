"""Shape checks of the attention ops' inputs: a packed `[B, S, 3, N, D]` QKV, its key mask and bias."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def check_packed(op: str, qkv: jax.Array, key_mask: jax.Array, bias: jax.Array | None) -> None:
    """Shapes of a packed `[B, S, 3, N, D]` QKV tensor, its `[B, S]` key mask and optional bias."""
    if qkv.ndim != 5 or qkv.shape[2] != 3:
        raise ValueError(f"{op}: qkv must be [B, S, 3, N, D], got {qkv.shape}")
    b, s, _, n, _ = qkv.shape
    check_mask_and_bias(op, b, s, n, key_mask, bias)


def check_mask_and_bias(op: str, b: int, s: int, n: int, key_mask: jax.Array, bias: jax.Array | None) -> None:
    """A `[B, S]` key mask (bool, or integer segment ids: `reference.allowed_keys`) and an optional
    `[1 or B, N, S, S]` bias."""
    if key_mask.shape != (b, s):
        raise ValueError(f"{op}: key_mask.shape={key_mask.shape}, expected {(b, s)}")
    if not (key_mask.dtype == jnp.bool_ or jnp.issubdtype(key_mask.dtype, jnp.integer)):
        raise ValueError(f"{op}: key_mask.dtype={key_mask.dtype}: a bool mask or integer segment ids")
    if bias is not None and (bias.ndim != 4 or bias.shape[1:] != (n, s, s) or bias.shape[0] not in (1, b)):
        raise ValueError(f"{op}: bias.shape={bias.shape}, expected (1 or {b}, {n}, {s}, {s})")
