"""The BERT-family encoder as Flax modules: embeddings, attention, FFN, layers.

Post-LayerNorm Transformer (BERT, MiniLM, MPNet). Q, K and V are one GEMM with
a `[H, 3H]` kernel. MPNet adds a bucketed relative-position bias shared by all
layers and numbers positions RoBERTa-style; it has no token types.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import pallas_kernels as ops
from samp_jax.config import EncoderConfig
from samp_jax.layers import Dense, LayerNorm, _init


class Embeddings(nn.Module):
    config: EncoderConfig

    @nn.compact
    def __call__(self, input_ids, position_ids, token_type_ids, *, out_dtype) -> jax.Array:
        cfg = self.config
        word = self.param("word_embeddings", _init, (cfg.vocab_size, cfg.hidden_size), jnp.float32)
        position = self.param(
            "position_embeddings", _init, (cfg.max_position_embeddings, cfg.hidden_size), jnp.float32
        )
        token_type = None
        if cfg.has_token_types:
            token_type = self.param(
                "token_type_embeddings", _init, (cfg.type_vocab_size, cfg.hidden_size), jnp.float32
            )
        else:
            token_type_ids = None
        ln = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, name="layer_norm")
        return ops.embedding_layer_norm(
            input_ids, position_ids, token_type_ids, word, position, token_type, ln.scale, ln.bias,
            eps=cfg.layer_norm_eps, out_dtype=out_dtype,
        )


class SelfAttention(nn.Module):
    """Fused-QKV self-attention, output projection, residual LayerNorm."""

    config: EncoderConfig

    @nn.compact
    def __call__(self, x, key_mask, position_bias) -> jax.Array:
        cfg = self.config
        b, s, h = x.shape
        qkv = Dense(3 * h, name="qkv")(x).reshape(b, s, 3, cfg.num_heads, cfg.head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        ctx = ops.attention(q, k, v, key_mask, position_bias, scale=cfg.head_dim**-0.5)
        out, out_bias = Dense(h, name="output")(ctx.reshape(b, s, h), defer_bias=True)
        return LayerNorm(h, cfg.layer_norm_eps, name="layer_norm")(out, x, x_bias=out_bias)


class FeedForward(nn.Module):
    """Intermediate GEMM with fused activation, output GEMM, residual LayerNorm."""

    config: EncoderConfig

    @nn.compact
    def __call__(self, x) -> jax.Array:
        cfg = self.config
        inner = Dense(cfg.intermediate_size, activation=cfg.hidden_act, name="intermediate")(x)
        out, out_bias = Dense(cfg.hidden_size, name="output")(inner, defer_bias=True)
        return LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, name="layer_norm")(out, x, x_bias=out_bias)


class TransformerLayer(nn.Module):
    config: EncoderConfig

    @nn.compact
    def __call__(self, x, key_mask, position_bias) -> jax.Array:
        x = SelfAttention(self.config, name="attention")(x, key_mask, position_bias)
        return FeedForward(self.config, name="ffn")(x)


def position_ids_for(cfg: EncoderConfig, input_ids: jax.Array) -> jax.Array:
    """BERT: 0..S-1. MPNet: RoBERTa-style, counted over non-padding ids from pad+1."""
    b, s = input_ids.shape
    if cfg.model_type == "mpnet":
        real = (input_ids != cfg.pad_token_id).astype(jnp.int32)
        return jnp.cumsum(real, axis=1) * real + cfg.pad_token_id
    return jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s))


def relative_position_buckets(seq_len: int, num_buckets: int, max_distance: int = 128) -> np.ndarray:
    """MPNet's (T5-style, bidirectional) bucket of each (query, key) offset, `[S, S]`.

    Computed on the host for the static sequence length, in float32 exactly as
    Hugging Face's `MPNetEncoder.relative_position_bucket` does, so that the
    buckets at the log-spaced boundaries agree.
    """
    pos = np.arange(seq_len, dtype=np.int64)
    n = -(pos[None, :] - pos[:, None])  # -(memory - context)
    half = num_buckets // 2
    ret = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    with np.errstate(divide="ignore"):
        ratio = np.log(n.astype(np.float32) / np.float32(max_exact))
        large = ratio / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact)
    large = max_exact + np.nan_to_num(large, neginf=0.0).astype(np.int64)
    large = np.minimum(large, half - 1)
    return ret + np.where(n < max_exact, n, large)


class Encoder(nn.Module):
    """Embeddings and `num_layers` Transformer layers; returns the last hidden state."""

    config: EncoderConfig
    compute_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids, attention_mask, token_type_ids) -> jax.Array:
        cfg = self.config
        position_ids = position_ids_for(cfg, input_ids)
        h = Embeddings(cfg, name="embeddings")(
            input_ids, position_ids, token_type_ids, out_dtype=self.compute_dtype
        )
        key_mask = attention_mask.astype(bool)
        position_bias = None
        if cfg.relative_attention_num_buckets:
            table = self.param(
                "relative_attention_bias", _init,
                (cfg.relative_attention_num_buckets, cfg.num_heads), jnp.float32,
            )
            buckets = relative_position_buckets(input_ids.shape[1], cfg.relative_attention_num_buckets)
            position_bias = jnp.transpose(table[buckets], (2, 0, 1))[None]  # [1, N, S, S]
        for i in range(cfg.num_layers):
            h = TransformerLayer(cfg, name=f"layer_{i}")(h, key_mask, position_bias)
        return h
