"""Reference for the 8-bit GEMM with its epilogue fused.

    y = act((x_q @ w_q) * x_scale * w_scale + bias)      [-> requantize]

int8 operands accumulate exactly in int32 (`preferred_element_type=jnp.int32`),
fp8 e4m3 operands in float32; the epilogue runs in float32: per-tensor
activation scale times per-column weight scale, bias, activation, then either a
cast to `out_dtype` or a requantization to 8 bits with `out_scale` (what a
kernel writes when the next kernel consumes 8-bit data).

Serving packs each weight once (`pack_weight`): the codes K-major (`[N, K]`,
the only layout 8-bit `wgmma` reads B in) and the per-column epilogue vectors
precomputed, so no transpose or vector arithmetic runs per call.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from pallas_kernels.gemm.epilogue import epilogue
from pallas_kernels.quant_types import QTYPES, dot_8bit


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PackedWeight:
    """An 8-bit GEMM weight laid out for the fused epilogue, built once per plan by `pack_weight`.

    Attributes:
      w_t: `[N, K]` codes (int8 or float8_e4m3fn), K-major.
      vectors: `[3, N]` float32: column scale (`x_scale * w_scale`), bias
        (zeros when there is none), reciprocal output scale (ones when the
        result is not requantized).
      qtype: "int8" or "fp8" (static).
      has_bias, requantize: whether the epilogue adds the bias and requantizes (static).
    """

    w_t: jax.Array
    vectors: jax.Array
    qtype: str = dataclasses.field(metadata=dict(static=True))
    has_bias: bool = dataclasses.field(default=True, metadata=dict(static=True))
    requantize: bool = dataclasses.field(default=False, metadata=dict(static=True))

    @property
    def shape(self) -> tuple[int, int]:
        """`(K, N)`, the unpacked weight's shape."""
        n, k = self.w_t.shape
        return k, n


def pack_weight(w_q: jax.Array, w_scale: jax.Array, bias: jax.Array | None = None, *, x_scale: jax.Array,
                out_scale: jax.Array | None = None, qtype: str) -> PackedWeight:
    """Packs a `[K, N]` 8-bit weight with the scales of the activation it multiplies (and of its output)."""
    n = w_q.shape[1]
    vectors = jnp.stack([
        column_scale(jnp.asarray(x_scale), jnp.asarray(w_scale)),
        jnp.zeros((n,), jnp.float32) if bias is None else jnp.asarray(bias, jnp.float32),
        jnp.broadcast_to(1.0 / jnp.asarray(1.0 if out_scale is None else out_scale, jnp.float32), (n,)),
    ])
    return PackedWeight(jnp.asarray(w_q).T, vectors, qtype, bias is not None, out_scale is not None)


def quantized_matmul_reference(
    x_q: jax.Array,
    x_scale: jax.Array,
    w_q: jax.Array,
    w_scale: jax.Array,
    bias: jax.Array | None = None,
    *,
    qtype: str,
    activation: str | None = None,
    out_dtype=jnp.float32,
    out_scale: jax.Array | None = None,
    out_qtype: str | None = None,
) -> jax.Array:
    """8-bit GEMM with fused dequantize / bias / activation (/ requantize).

    Args:
      x_q: `[..., K]` quantized activations (int8 or float8_e4m3fn).
      x_scale: scalar per-tensor activation scale.
      w_q: `[K, N]` quantized weights of the same qtype.
      w_scale: `[1, N]` per-output-channel weight scale.
      bias: optional `[N]` float bias.
      qtype: "int8" or "fp8".
      out_scale, out_qtype: when given, the result is requantized to 8 bits.
    """
    acc = dot_8bit("...k,kn->...n", x_q, w_q, (x_q.ndim - 1, 0), qtype)
    col_scale = column_scale(x_scale, w_scale)
    inv = None if out_scale is None else jnp.broadcast_to(1.0 / jnp.asarray(out_scale, jnp.float32), col_scale.shape)
    return epilogue(acc, col_scale, bias, activation=activation, out_inv_scale=inv, out_qtype=out_qtype or qtype,
                    out_dtype=out_dtype)


def quantized_matmul_packed_reference(x_q: jax.Array, packed: PackedWeight, *, activation: str | None = None,
                                      out_dtype=jnp.float32, out_qtype: str | None = None) -> jax.Array:
    """`quantized_matmul_reference` on a packed weight; `out_qtype` (default: the weight's) when it requantizes."""
    acc = dot_8bit("...k,nk->...n", x_q, packed.w_t, (x_q.ndim - 1, 1), packed.qtype)
    vec = packed.vectors
    return epilogue(acc, vec[0], vec[1] if packed.has_bias else None, activation=activation,
                    out_inv_scale=vec[2] if packed.requantize else None, out_qtype=out_qtype or packed.qtype,
                    out_dtype=out_dtype)


def packed_result_dtype(packed: PackedWeight, out_dtype, out_qtype: str | None):
    """What a packed GEMM returns: 8-bit codes when it requantizes, else `out_dtype`."""
    return jnp.dtype(QTYPES[out_qtype or packed.qtype][0] if packed.requantize else out_dtype)


def column_scale(x_scale: jax.Array, w_scale: jax.Array) -> jax.Array:
    """`[N]` float32 dequantization factor: per-tensor activation scale times per-column weight scale."""
    return x_scale.astype(jnp.float32) * w_scale.reshape(-1).astype(jnp.float32)
