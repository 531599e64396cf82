"""DeBERTa-v2's disentangled attention terms, as an additive bias on the content logits.

Hugging Face's `DisentangledSelfAttention` computes, per head, with `r = bucket(i - j)` the relative
position of query i to key j and `P` the (LayerNorm'd) relative embeddings:

    logits[i, j] = (q_i . k_j + c2p + p2c) / sqrt(head_dim * (1 + len(pos_att_type)))
    c2p = q_i . Pk[clamp(r + span)]      Pk = P @ W_k + b_k   (content -> position)
    p2c = k_j . Pq[clamp(-r' + span)]    Pq = P @ W_q + b_q   (position -> content), r' = bucket(j - i)

with the layer's own query/key projections (`share_att_key`). The content term is the usual attention
product, so a layer passes `bias = (c2p + p2c) / sqrt(...)` `[B, N, S, S]` to the same attention op
BERT's layers call (which applies the mask and softmax); the two position terms are computed here, in
XLA, as `[B, N, S, 2 span]` products gathered at the bucket indices (float32 sums).

Padding: a real token's output never depends on padded positions, here as in Hugging Face. A padded
position's output does differ: Hugging Face masks every logit of a padded query row (it attends uniformly
to all keys, a mean over however long the batch was padded) and zeroes the padded embeddings, while here a
padded row attends to the real keys as in BERT's layers. Nothing reads those rows (pooling and decoding
skip padding), and the compiled model pads batches to its own buckets anyway.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from pallas_kernels import PackedWeight
from samp_jax.deberta_config import DebertaOptions


def log_bucket_positions(seq_len: int, buckets: int, max_position: int) -> np.ndarray:
    """`[S, S]` relative positions `i - j`, log-bucketed beyond `buckets // 2` when `buckets` > 0.

    Hugging Face's `build_relative_position` + `make_log_bucket_position`, in float32 on the host for the
    static sequence length, so that the buckets at the log-spaced boundaries agree.
    """
    pos = np.arange(seq_len, dtype=np.int64)
    rel = pos[:, None] - pos[None, :]
    if buckets <= 0 or max_position <= 0:
        return rel
    mid = buckets // 2
    sign = np.sign(rel)
    abs_pos = np.where((rel < mid) & (rel > -mid), mid - 1, np.abs(rel)).astype(np.float32)
    log_pos = np.ceil(np.log(abs_pos / np.float32(mid)) / np.log(np.float32((max_position - 1) / mid))
                      * np.float32(mid - 1)) + np.float32(mid)
    return np.where(abs_pos <= mid, rel.astype(np.float32), log_pos * sign).astype(np.int64)


def relative_indices(seq_len: int, options: DebertaOptions) -> tuple[np.ndarray, np.ndarray]:
    """The c2p and p2c gather indices `[S, S]` into the `2 * span` relative-embedding rows."""
    span = options.attention_span
    rel = log_bucket_positions(seq_len, options.position_buckets, options.max_relative_positions)
    c2p = np.clip(rel + span, 0, 2 * span - 1)
    p2c = np.clip(-rel + span, 0, 2 * span - 1)  # read as [key, query]: Hugging Face transposes after the gather
    return c2p.astype(np.int32), p2c.astype(np.int32)


def dequantized_qk(packed: PackedWeight, x_scale: jax.Array, hidden: int) -> tuple[jax.Array, jax.Array]:
    """The Q and K columns `[H, 2H]` (and bias `[2H]`) of a packed 8-bit QKV weight, as the 8-bit GEMM uses them.

    `packed.vectors[0]` holds `x_scale * w_scale` per column, `[1]` the bias (`pallas_kernels.pack_weight`).
    """
    w_scale = packed.vectors[0, : 2 * hidden] / x_scale.astype(jnp.float32)
    kernel = packed.w_t[: 2 * hidden].astype(jnp.float32).T * w_scale[None, :]
    return kernel, packed.vectors[1, : 2 * hidden]


@struct.dataclass
class Disentangled:
    """What a DeBERTa layer's attention needs beside its input: shared by all layers of one forward pass.

    Attributes:
      rel: `[2 span, H]` relative embeddings, after their LayerNorm (`norm_rel_ebd`), float32.
      c2p, p2c: `[S, S]` int32 gather indices (`relative_indices`).
      pos_att_type: the terms, a subset of ("c2p", "p2c") (static).
      scale_factor: 1 + the number of terms (static).
    """

    rel: jax.Array
    c2p: jax.Array
    p2c: jax.Array
    pos_att_type: tuple[str, ...] = struct.field(pytree_node=False)
    scale_factor: int = struct.field(pytree_node=False)

    def logit_scale(self, head_dim: int) -> float:
        return 1.0 / math.sqrt(head_dim * self.scale_factor)

    def bias(self, q: jax.Array, k: jax.Array, qk_kernel: jax.Array, qk_bias: jax.Array) -> jax.Array | None:
        """`(c2p + p2c) / sqrt(head_dim * scale_factor)` `[B, N, S, S]` float32, None without terms.

        `q`, `k`: `[B, S, N, D]` (after bias); `qk_kernel` `[H, >= 2H]` and `qk_bias` `[>= 2H]`: the layer's
        fused projection, Q's columns then K's.
        """
        if not self.pos_att_type:
            return None
        _, _, n, d = q.shape
        h = n * d
        proj = jnp.dot(self.rel, qk_kernel[:, : 2 * h].astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
        proj = (proj + qk_bias[: 2 * h].astype(jnp.float32)).reshape(-1, 2, n, d)  # [2 span, 2, N, D]
        bias = jnp.zeros((q.shape[0], n, q.shape[1], k.shape[1]), jnp.float32)
        if "c2p" in self.pos_att_type:  # query i against the key-side embedding of its distance to j
            scores = jnp.einsum("bind,rnd->bnir", q, proj[:, 1].astype(q.dtype), preferred_element_type=jnp.float32)
            bias = bias + jnp.take_along_axis(scores, jnp.broadcast_to(self.c2p, bias.shape), axis=-1)
        if "p2c" in self.pos_att_type:  # key j against the query-side embedding, gathered [key, query]
            scores = jnp.einsum("bjnd,rnd->bnjr", k, proj[:, 0].astype(k.dtype), preferred_element_type=jnp.float32)
            bias = bias + jnp.swapaxes(jnp.take_along_axis(scores, jnp.broadcast_to(self.p2c, bias.shape), axis=-1),
                                       -1, -2)
        return bias * self.logit_scale(d)


def attention_terms(position_bias, head_dim: int, qk: Callable[[], tuple[jax.Array, jax.Array]],
                    qk_weights: Callable[[], tuple[jax.Array, jax.Array]]):
    """(logit scale, additive bias, `implementation=`) of a layer's attention op.

    `position_bias` is None or MPNet's `[1, N, S, S]` bias (1/sqrt(d), that bias, the dispatcher's choice),
    or a `Disentangled`: 1/sqrt(d * scale_factor), its c2p/p2c terms from the layer's float Q and K (`qk()`,
    `[B, S, N, D]` each) and Q/K projection (`qk_weights()`: `[H, >= 2H]` kernel, `[>= 2H]` bias), and "xla":
    the flash kernels are neither tested nor timed with a bias of batch B (docs/kernels.md, "DeBERTa's
    disentangled attention").
    """
    if not isinstance(position_bias, Disentangled):
        return head_dim**-0.5, position_bias, None
    q, k = qk()
    return position_bias.logit_scale(head_dim), position_bias.bias(q, k, *qk_weights()), "xla"
