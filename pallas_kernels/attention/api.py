"""Public attention op: validates shapes, then dispatches by `implementation=`."""

from __future__ import annotations

import jax

from pallas_kernels._dispatch import dispatch
from pallas_kernels.attention.base import attention_packed_reference, attention_reference
from pallas_kernels.flash.checks import check_mask_and_bias, check_packed

_REGISTRY = {"xla": attention_reference}
_PACKED_REGISTRY = {"xla": attention_packed_reference}
try:  # Pallas-Triton needs jaxlib's Triton bindings; the XLA reference always works
    from pallas_kernels.attention.triton import attention_packed_triton

    _PACKED_REGISTRY["triton"] = attention_packed_triton
except ImportError:  # pragma: no cover
    pass


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
    check_mask_and_bias("attention", b, s, n, key_mask, bias)
    return dispatch(
        "attention", _REGISTRY, implementation, q, k, v, key_mask, bias, scale=scale, out_dtype=out_dtype
    )


def attention_packed(
    qkv: jax.Array,
    key_mask: jax.Array,
    bias: jax.Array | None = None,
    *,
    scale: float,
    out_dtype=None,
    implementation: str | None = None,
) -> jax.Array:
    """Attention on the fused QKV GEMM's output `[B, S, 3, N, D]` (Q, K, V along axis 2); returns `[B, S, N, D]`.

    The kernels read Q, K and V in place, so the encoder never splits or transposes them.
    """
    check_packed("attention_packed", qkv, key_mask, bias)
    return dispatch("attention_packed", _PACKED_REGISTRY, implementation, qkv, key_mask, bias, scale=scale,
                    out_dtype=out_dtype)
