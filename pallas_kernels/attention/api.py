"""Public attention op: validates shapes, then dispatches by `implementation=`."""

from __future__ import annotations

import jax

from pallas_kernels._dispatch import dispatch
from pallas_kernels.attention.base import attention_packed_reference, attention_reference

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
    _check_mask_and_bias("attention", b, s, n, key_mask, bias)
    return dispatch(
        "attention", _REGISTRY, implementation, q, k, v, key_mask, bias, scale=scale, out_dtype=out_dtype
    )


def check_packed(op: str, qkv: jax.Array, key_mask: jax.Array, bias: jax.Array | None) -> None:
    """Shapes of a packed `[B, S, 3, N, D]` QKV tensor, its `[B, S]` key mask and optional bias."""
    if qkv.ndim != 5 or qkv.shape[2] != 3:
        raise ValueError(f"{op}: qkv must be [B, S, 3, N, D], got {qkv.shape}")
    b, s, _, n, _ = qkv.shape
    _check_mask_and_bias(op, b, s, n, key_mask, bias)


def _check_mask_and_bias(op: str, b: int, s: int, n: int, key_mask: jax.Array, bias: jax.Array | None) -> None:
    if key_mask.shape != (b, s):
        raise ValueError(f"{op}: key_mask.shape={key_mask.shape}, expected {(b, s)}")
    if bias is not None and (bias.ndim != 4 or bias.shape[1:] != (n, s, s) or bias.shape[0] not in (1, b)):
        raise ValueError(f"{op}: bias.shape={bias.shape}, expected (1 or {b}, {n}, {s}, {s})")


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
