"""The embedding block: word + position (+ token type) embeddings and LayerNorm, one fused op."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

import pallas_kernels as ops
from pallas_kernels import dequantize_values, quantize_values
from samp_jax.config import EncoderConfig
from samp_jax.layers import Dense, LayerNorm, _init, built_param
from samp_jax.quant import points


class Embeddings(nn.Module):
    """Word + position (+ token type) embeddings and LayerNorm, one fused op.

    With `out_qtype` (plan.embedding) the output is quantized: as codes for a
    `full_*` first layer (`codes=True`), which quantizes its input with the same
    scale, else dequantized back to the compute dtype. Where the tables are narrower than the
    layers (ELECTRA's `embedding_size`), the Dense `project` maps the LayerNorm's output to
    `hidden_size` and the quantization follows it: layer 0 reads the projection's output.
    """

    config: EncoderConfig
    out_qtype: str | None = None  # 8-bit embedding output (plan.embedding)
    codes: bool = False

    @nn.compact
    def __call__(self, input_ids, position_ids, token_type_ids, *, out_dtype) -> jax.Array:
        cfg = self.config
        dim = cfg.embedding_dim
        word = self.param("word_embeddings", _init, (cfg.vocab_size, dim), jnp.float32)
        position = self.param(
            "position_embeddings", _init, (cfg.max_position_embeddings, dim), jnp.float32
        )
        token_type = None
        if cfg.has_token_types:
            token_type = self.param(
                "token_type_embeddings", _init, (cfg.type_vocab_size, dim), jnp.float32
            )
        else:
            token_type_ids = None
        ln = LayerNorm(dim, cfg.layer_norm_eps, name="layer_norm")
        if self.codes and self.out_qtype is None:
            raise ValueError("Embeddings(codes=True) needs the out_qtype of the full_* first layer")
        scale = None
        if self.out_qtype is not None:
            scale = built_param(self, points.param_in(points.EMBEDDING_INPUT_SCALE, "embeddings"))
        fused_codes = self.codes and not cfg.has_embedding_projection  # the kernel writes layer 0's codes
        h = ops.embedding_layer_norm(
            input_ids, position_ids, token_type_ids, word, position, token_type, ln.scale, ln.bias,
            eps=cfg.layer_norm_eps, out_dtype=out_dtype, out_scale=scale if fused_codes else None,
            out_qtype=self.out_qtype if fused_codes else None,
        )
        if cfg.has_embedding_projection:
            h = Dense(dim, cfg.hidden_size, name="project")(h)
            if self.codes and scale is not None and self.out_qtype is not None:
                return quantize_values(h, scale, self.out_qtype)
        if scale is not None and self.out_qtype is not None and not self.codes:
            h = dequantize_values(quantize_values(h, scale, self.out_qtype), scale, out_dtype)
        return h
