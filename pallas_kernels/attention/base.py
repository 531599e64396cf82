"""Reference for padded-batch self-attention with an optional additive bias.

`softmax(q k^T * scale + bias, masked over padding keys) v`, logits and softmax
in float32 (`flash.reference.masked_softmax`), probabilities cast to `v.dtype`
for the second product (what a flash-style kernel does).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels._precision import dot_precision
from pallas_kernels.flash.reference import masked_softmax


def attention_reference(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    key_mask: jax.Array,
    bias: jax.Array | None = None,
    *,
    scale: float,
    out_dtype=None,
) -> jax.Array:
    """Multi-head attention.

    Args:
      q, k, v: `[B, S, N, D]` (batch, sequence, heads, head dim).
      key_mask: `[B, S]` bool, True where the key is a real token.
      bias: optional `[1 or B, N, S, S]` added to the logits (MPNet's relative
        position bias).
      scale: logit scale, usually `D ** -0.5`.
      out_dtype: default `q.dtype`.

    Returns:
      `[B, S, N, D]`.
    """
    out_dtype = q.dtype if out_dtype is None else out_dtype
    prec = dot_precision(q.dtype)
    logits = jnp.einsum("bqnd,bknd->bnqk", q, k, precision=prec, preferred_element_type=jnp.float32)
    probs = masked_softmax(logits * scale, key_mask, bias)
    out = jnp.einsum(
        "bnqk,bknd->bqnd", probs.astype(v.dtype), v, precision=prec,
        preferred_element_type=jnp.float32,
    )
    return out.astype(out_dtype)


def attention_packed_reference(
    qkv: jax.Array, key_mask: jax.Array, bias: jax.Array | None = None, *, scale: float, out_dtype=None
) -> jax.Array:
    """`attention_reference` on the QKV GEMM's output viewed as `[B, S, 3, N, D]`."""
    return attention_reference(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], key_mask, bias, scale=scale,
                               out_dtype=out_dtype)
