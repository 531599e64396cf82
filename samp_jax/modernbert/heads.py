"""ModernBERT's task heads, as Hugging Face's `ModernBertFor{Sequence,Token}Classification` compute them.

Sequence classification pools the last hidden state (`classifier_pooling`: the first token, or the mean over
real tokens), then `head` (dense, `classifier_activation`, LayerNorm) and `classifier`; token classification
runs `head` and `classifier` on every token. Multi-label models are sequence classifiers read through a
sigmoid (`problem_type`, in `samp_jax.heads.TaskSpec`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

import pallas_kernels as ops
from samp_jax.config import EncoderConfig
from samp_jax.layers import Dense, LayerNorm
from samp_jax.modernbert.encoder import modernbert_settings


class ModernBertHead(nn.Module):
    """`classifier(norm(act(dense(x))))` on the pooled state (`pool`) or on every token; float32 logits."""

    config: EncoderConfig
    num_labels: int
    pool: bool

    @nn.compact
    def __call__(self, h: jax.Array, attention_mask: jax.Array) -> jax.Array:
        cfg = self.config
        mb = modernbert_settings(cfg)
        hidden = cfg.hidden_size
        if self.pool and mb.classifier_pooling == "cls":
            h = h[:, 0]
        elif self.pool:  # mean over real tokens (at least one: all-padding rows of a bucket stay finite)
            m = attention_mask.astype(jnp.float32)[..., None]
            h = (jnp.sum(h.astype(jnp.float32) * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)).astype(h.dtype)
        x = Dense(hidden, hidden, activation=mb.classifier_activation, name="dense")(h)
        ln = LayerNorm(hidden, cfg.layer_norm_eps, name="norm")
        x = ops.residual_layer_norm(x, None, ln.scale, ln.bias, eps=cfg.layer_norm_eps)
        return Dense(hidden, self.num_labels, name="classifier")(x, out_dtype=jnp.float32)
