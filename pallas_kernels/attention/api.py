"""Public attention op: validates shapes, then dispatches by `implementation=`."""

from __future__ import annotations

import jax

from pallas_kernels._dispatch import dispatch
from pallas_kernels.attention.base import attention_reference

_REGISTRY = {"xla": attention_reference}


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    key_mask: jax.Array,
    bias: jax.Array | None = None,
    *,
    scale: float,
    out_dtype=None,
    implementation: str | None = None,
) -> jax.Array:
    """Padded-batch multi-head attention; see `attention_reference`."""
    if q.ndim != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(
            f"attention: q, k, v must share a [B, S, N, D] shape, got {q.shape}, {k.shape}, {v.shape}"
        )
    b, s, n, _ = q.shape
    if key_mask.shape != (b, s):
        raise ValueError(f"attention: key_mask.shape={key_mask.shape}, expected {(b, s)}")
    if bias is not None and (bias.ndim != 4 or bias.shape[1:] != (n, s, s) or bias.shape[0] not in (1, b)):
        raise ValueError(f"attention: bias.shape={bias.shape}, expected (1 or {b}, {n}, {s}, {s})")
    return dispatch(
        "attention", _REGISTRY, implementation, q, k, v, key_mask, bias, scale=scale, out_dtype=out_dtype
    )
