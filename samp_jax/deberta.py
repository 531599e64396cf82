"""DeBERTa-v2/v3 (`model_type: deberta-v2`): its embeddings and encoder around the shared Transformer layers.

DeBERTa's layers are BERT's post-LayerNorm layers (`samp_jax.encoder.TransformerLayer`, every plan mode
included); what differs is computed here and handed to them:
- the embeddings: word (+ absolute position when `position_biased_input`) (+ token type when
  `type_vocab_size` > 0), a bias-free projection when `embedding_size` differs from the hidden size,
  LayerNorm (Hugging Face's `DebertaV2Embeddings` also zeroes padded positions, which no real token reads);
- the disentangled attention's inputs (`samp_jax.disentangled.Disentangled`): the relative embeddings
  after their LayerNorm, shared by every layer, and the log-bucketed relative positions.

Parameters (below `encoder/`): `embeddings/{word,position,token_type}_embeddings`, `embeddings/embed_proj/kernel`,
`embeddings/layer_norm`, `rel_embeddings`, `rel_layer_norm`, and `layer_{i}` exactly as BERT's. The c2p/p2c
terms run in XLA (docs/kernels.md, "DeBERTa's disentangled attention").
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

import pallas_kernels as ops
from pallas_kernels import dequantize_values, quantize_values
from samp_jax.config import EncoderConfig
from samp_jax.disentangled import Disentangled, relative_indices
from samp_jax.encoder import Encoder, run_layers
from samp_jax.layers import LayerNorm, _init, built_param
from samp_jax.quant import points


class _Projection(nn.Module):
    """`x @ kernel` without bias (Hugging Face's `embed_proj`), kernel `[in_features, features]`."""

    in_features: int
    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", _init, (self.in_features, self.features), jnp.float32)
        return ops.matmul(x, kernel, None, out_dtype=jnp.float32)


class DebertaEmbeddings(nn.Module):
    """DeBERTa-v2's embedding block; `out_qtype` and `codes` as in `samp_jax.embeddings.Embeddings`."""

    config: EncoderConfig
    out_qtype: str | None = None
    codes: bool = False

    @nn.compact
    def __call__(self, input_ids, token_type_ids, *, out_dtype) -> jax.Array:
        cfg = self.config
        opts = cfg.deberta
        assert opts is not None  # EncoderConfig checks that a deberta-v2 config has its options
        width = opts.embedding_size
        word = self.param("word_embeddings", _init, (cfg.vocab_size, width), jnp.float32)
        x = word[input_ids].astype(jnp.float32)
        if opts.position_biased_input:
            table = self.param("position_embeddings", _init, (cfg.max_position_embeddings, width), jnp.float32)
            x = x + table[: input_ids.shape[1]].astype(jnp.float32)[None]
        if cfg.has_token_types:
            table = self.param("token_type_embeddings", _init, (cfg.type_vocab_size, width), jnp.float32)
            x = x + table[token_type_ids].astype(jnp.float32)
        if width != cfg.hidden_size:
            x = _Projection(width, cfg.hidden_size, name="embed_proj")(x)
        ln = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, name="layer_norm")
        if self.codes and self.out_qtype is None:
            raise ValueError("DebertaEmbeddings(codes=True) needs the out_qtype of the full_* first layer")
        scale = None
        if self.out_qtype is not None:
            scale = built_param(self, points.param_in(points.EMBEDDING_INPUT_SCALE, "embeddings"))
        h = ops.residual_layer_norm(x, None, ln.scale, ln.bias, eps=cfg.layer_norm_eps, out_dtype=out_dtype,
                                    out_scale=scale if self.codes else None,
                                    out_qtype=self.out_qtype if self.codes else None)
        if scale is not None and self.out_qtype is not None and not self.codes:
            h = dequantize_values(quantize_values(h, scale, self.out_qtype), scale, out_dtype)
        return h


class DebertaEncoder(Encoder):
    """DeBERTa-v2's embeddings, relative embeddings and `num_layers` Transformer layers, each in its plan mode."""

    @nn.compact
    def __call__(self, input_ids, attention_mask, token_type_ids, *, inputs_only: bool = False, packed: bool = False):
        """The last hidden state; with `inputs_only`, what layer 0 takes: (embeddings, key mask, `Disentangled`).
        Runs padded batches only (`packing.unpackable`)."""
        if packed:
            raise ValueError("model_type='deberta-v2' runs padded only: its disentangled bias reads row positions")
        cfg = self.config
        opts = cfg.deberta
        assert opts is not None  # EncoderConfig checks that a deberta-v2 config has its options
        plan = self._plan
        key_mask = attention_mask.astype(bool)
        emb_qtype = None if plan.embedding == "float" else plan.embedding
        h = DebertaEmbeddings(cfg, emb_qtype, plan.input_codes(0) is not None, name="embeddings")(
            input_ids, token_type_ids, out_dtype=plan.compute_dtype
        )
        rel = self.param("rel_embeddings", _init, (2 * opts.attention_span, cfg.hidden_size), jnp.float32)
        rel = rel.astype(jnp.float32)
        if opts.norm_rel_ebd:
            ln = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, name="rel_layer_norm")
            rel = ops.residual_layer_norm(rel, None, ln.scale, ln.bias, eps=cfg.layer_norm_eps, out_dtype=jnp.float32)
        c2p, p2c = relative_indices(input_ids.shape[1], opts)
        positions = Disentangled(rel, jnp.asarray(c2p), jnp.asarray(p2c), opts.pos_att_type, opts.scale_factor)
        if inputs_only:
            return h, key_mask, positions
        return run_layers(cfg, plan, h, key_mask, positions)
