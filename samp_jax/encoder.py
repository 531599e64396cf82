"""The BERT-family encoder as Flax modules: embeddings, attention, FFN, layers.

Post-LayerNorm Transformer (BERT, MiniLM, MPNet, DeBERTa-v2). Q, K and V are one
GEMM with a `[H, 3H]` kernel. MPNet adds a bucketed relative-position bias shared
by all layers and numbers positions RoBERTa-style; it has no token types.
DeBERTa-v2's layers are these, given a `Disentangled` in place of the bias: its
c2p/p2c terms become a per-sequence bias of each layer's logits
(`samp_jax.deberta` builds the embeddings and the encoder around them).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import pallas_kernels as ops
from pallas_kernels import QTYPES, dequantize_values, is_codes, quantize_values
from samp_jax.config import EncoderConfig
from samp_jax.disentangled import attention_terms, dequantized_qk
from samp_jax.embeddings import Embeddings
from samp_jax.layers import Dense, LayerNorm, QuantDense, _init, built_param
from samp_jax.packing import segment_positions
from samp_jax.plan import LayerMode, Plan
from samp_jax.positions import position_ids_for, relative_position_buckets
from samp_jax.quant import points


def _observing(module: nn.Module) -> bool:
    """True while calibration collects activations (`mutable=["intermediates"]`)."""
    return module.is_mutable_collection("intermediates")


class SelfAttention(nn.Module):
    """Fused-QKV self-attention, then `LayerNorm(context @ W_o + b_o + x)`.

    With `qtype` set (full_* modes) the input is quantized once and serves as
    both the QKV GEMM input and the residual; the QKV epilogue requantizes Q, K
    and V for the 8-bit attention products, the attention kernel writes the
    context as codes for the output projection, and the output's residual
    LayerNorm reads the 8-bit residual and writes the codes the FFN reads (with
    the FFN's input scale): 8-bit data from kernel to kernel, no quantize
    kernels between. With `ffn_qtype` (ffn_* modes) the float block returns its
    output both as floats (the FFN's residual) and as the FFN's 8-bit input.
    """

    config: EncoderConfig
    qtype: str | None = None
    probs: str = "uint8"
    ffn_qtype: str | None = None
    smooth: bool = False  # full_*: the input codes are per channel (`samp_jax.quant.smoothing`)

    @nn.compact
    def __call__(self, x, key_mask, position_bias, *, dtype=None):
        """`x`: the layer input, float or (full_* modes) already 8-bit codes; `dtype`: the compute dtype;
        `position_bias`: None, MPNet's `[1, N, S, S]` bias or DeBERTa's `Disentangled` terms."""
        cfg = self.config
        b, s, h = x.shape
        dtype = dtype or x.dtype
        eps = cfg.layer_norm_eps
        ln = LayerNorm(h, eps, name="layer_norm")
        if self.qtype is None:
            qkv_dense = Dense(h, 3 * h, name="qkv")
            qkv = qkv_dense(x).reshape(b, s, 3, cfg.num_heads, cfg.head_dim)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
            scale, bias, impl = attention_terms(position_bias, cfg.head_dim, lambda: (q, k),
                                                lambda: (qkv_dense.kernel, qkv_dense.bias))
            ctx = ops.attention_packed(qkv, key_mask, bias, scale=scale, implementation=impl)
            if _observing(self):
                for point, t in ((points.Q, q), (points.K, k), (points.V, v), (points.CONTEXT, ctx)):
                    self.sow("intermediates", point.sow, t)
                self.sow("intermediates", points.PROBS.sow, _probs(q, k, key_mask, bias, scale))
            # ffn_* modes: the output as floats (the FFN's residual) and as codes (its GEMM input)
            ffn_in = points.ATTENTION_OUTPUT.scale_param("attention")
            codes = ops.Codes(built_param(self, ffn_in), self.ffn_qtype) if self.ffn_qtype else None
            out = Dense(h, h, name="output")
            return ops.dense_residual_layer_norm(ctx.reshape(b, s, h), out.kernel, out.bias, x, ln.scale, ln.bias,
                                                 eps=eps, out_dtype=x.dtype, codes=codes, keep_float=codes is not None)

        qt = self.qtype
        in_scale = built_param(self, points.INPUT.scale_param("attention"))
        q_scale, k_scale, v_scale = (built_param(self, p.scale_param("attention")) for p in (points.Q, points.K, points.V))
        probs_scale = built_param(self, points.PROBS.scale_param("attention")) if self.probs == points.PROBS.probs else None
        # the residual's scale: per tensor, or (smoothed) per channel, the input scale times the migrated divisors
        res_scale = built_param(self, points.param_in(points.RESIDUAL_SCALE[points.INPUT.name], "attention")) \
            if self.smooth else in_scale
        x_q = x if is_codes(x) else quantize_values(x, res_scale, qt)
        qkv_dense = QuantDense(qt, name="qkv")  # packed to requantize Q, K, V with their scales
        qkv = qkv_dense(x_q).reshape(b, s, 3, cfg.num_heads, cfg.head_dim)
        ctx_scale = built_param(self, points.CONTEXT.scale_param("attention"))
        scale, bias, impl = attention_terms(  # DeBERTa's c2p/p2c terms: in float, from the 8-bit Q, K and weights
            position_bias, cfg.head_dim,
            lambda: (dequantize_values(qkv[:, :, 0], q_scale, jnp.float32),
                     dequantize_values(qkv[:, :, 1], k_scale, jnp.float32)),
            lambda: dequantized_qk(qkv_dense.packed, in_scale, h))
        ctx_q = ops.quantized_attention_packed(
            qkv, q_scale, k_scale, v_scale, key_mask, bias, scale=scale, qtype=qt,
            probs=self.probs, probs_scale=probs_scale, out_scale=ctx_scale, implementation=impl,
        )
        # the product leaves in the compute dtype, as a float GEMM's does: half the bytes the LayerNorm reads
        return ops.quantized_dense_residual_layer_norm(
            ctx_q.reshape(b, s, h), QuantDense(qt, name="output").packed, x_q, ln.scale, ln.bias, eps=eps,
            out_dtype=dtype, residual_scale=res_scale,
            codes=ops.Codes(built_param(self, points.ATTENTION_OUTPUT.scale_param("attention")), qt))


def _probs(q, k, key_mask, bias, scale):
    """Softmax probabilities `[B, N, S, S]`, for calibration only."""
    logits = jnp.einsum("bqnd,bknd->bnqk", q, k, preferred_element_type=jnp.float32) * scale
    if bias is not None:
        logits = logits + bias
    return jax.nn.softmax(jnp.where(ops.allowed_keys(key_mask), logits, -jnp.inf), axis=-1)


class FeedForward(nn.Module):
    """Intermediate GEMM with fused activation, then `LayerNorm(inner @ W_o + b_o + x)`.

    With `qtype` set the input arrives quantized by the LayerNorm before it (as
    `x` in full_* modes; as `x_q` beside the float `x` in ffn_* ones), the first
    GEMM's epilogue requantizes the activation for the second, and with
    `quantize_residual` (full_* modes) the residual is the 8-bit input too.
    `out_dtype` is the float dtype of the output; with `out_qtype` (the next
    layer is `full_*`) the LayerNorm writes that layer's input codes instead.
    """

    config: EncoderConfig
    qtype: str | None = None
    quantize_residual: bool = False
    out_qtype: str | None = None
    smooth: bool = False  # full_*: the input codes are per channel (`samp_jax.quant.smoothing`)

    @nn.compact
    def __call__(self, x, *, x_q=None, out_dtype=None) -> jax.Array:
        cfg = self.config
        hidden, inner_size, eps = cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps
        ln = LayerNorm(hidden, eps, name="layer_norm")
        codes = None
        if self.out_qtype is not None:
            codes = ops.Codes(built_param(self, points.param_in(points.NEXT_INPUT_SCALE, "ffn")), self.out_qtype)
        if self.qtype is None:
            inner = Dense(hidden, inner_size, activation=cfg.hidden_act, name="intermediate")(x)
            if _observing(self):
                self.sow("intermediates", points.ACTIVATION.sow, inner)
            out = Dense(inner_size, hidden, name="output")
            return ops.dense_residual_layer_norm(inner, out.kernel, out.bias, x, ln.scale, ln.bias, eps=eps,
                                                 out_dtype=x.dtype, codes=codes)

        qt = self.qtype
        in_scale = built_param(self, points.ATTENTION_OUTPUT.scale_param("ffn"))
        if self.smooth:  # per channel: the input scale times the migrated divisors
            in_scale = built_param(self, points.param_in(points.RESIDUAL_SCALE[points.ATTENTION_OUTPUT.name], "ffn"))
        out_dtype = out_dtype or x.dtype
        if x_q is None:
            x_q = x if is_codes(x) else quantize_values(x, in_scale, qt)
        residual, residual_scale = (x_q, in_scale) if self.quantize_residual else (x, None)
        # the intermediate weight is packed to requantize the activation with its scale for the output GEMM
        inner_q = QuantDense(qt, activation=cfg.hidden_act, name="intermediate")(x_q)
        return ops.quantized_dense_residual_layer_norm(
            inner_q, QuantDense(qt, name="output").packed, residual, ln.scale, ln.bias, eps=eps, out_dtype=out_dtype,
            residual_scale=residual_scale, codes=codes)


class TransformerLayer(nn.Module):
    """One layer in its plan mode.

    Takes the hidden state in the compute dtype, or (a `full_*` layer after the
    embedding or another layer that wrote it so) as 8-bit codes; `dtype` is the
    compute dtype, needed when the input is codes. Returns it in the compute
    dtype, or with `out_qtype` as the codes of the next, `full_*`, layer.
    """

    config: EncoderConfig
    mode: LayerMode = LayerMode.FLOAT
    probs: str = "uint8"
    dtype: Any = None
    out_qtype: str | None = None
    smooth: bool = False  # a full_* layer of a `smooth:` plan (`samp_jax.quant.smoothing`)

    @nn.compact
    def __call__(self, x, key_mask, position_bias) -> jax.Array:
        mode = LayerMode.parse(self.mode)
        qtype, full = mode.qtype, mode.quantizes_attention
        if is_codes(x) and not (full and qtype is not None and x.dtype == QTYPES[qtype][0] and self.dtype is not None):
            raise ValueError(f"layer {self.name} ({self.mode}, dtype={self.dtype}) got 8-bit input ({x.dtype}): only a "
                             "full_* layer of that type, given its compute dtype, reads its input as codes")
        if _observing(self):
            self.sow("intermediates", points.INPUT.sow, x)
        dtype, x_q = self.dtype or x.dtype, None
        x = SelfAttention(self.config, qtype if full else None, self.probs, None if full else qtype,
                          self.smooth and full, name="attention")(
            x, key_mask, position_bias, dtype=dtype
        )  # full_* modes: 8-bit codes; ffn_* modes: (float, codes)
        if isinstance(x, tuple):
            x, x_q = x
        if _observing(self):
            self.sow("intermediates", points.ATTENTION_OUTPUT.sow, x)
        return FeedForward(self.config, qtype, full, self.out_qtype, self.smooth and full, name="ffn")(
            x, x_q=x_q, out_dtype=dtype)


class Encoder(nn.Module):
    """Embeddings and `num_layers` Transformer layers, each in its plan mode; returns the last hidden state."""

    config: EncoderConfig
    plan: Plan | None = None  # None: float32 everywhere

    @property
    def _plan(self) -> Plan:
        return self.plan or Plan.uniform(LayerMode.FLOAT, self.config.num_layers, dtype="fp32")

    @nn.compact
    def __call__(self, input_ids, attention_mask, token_type_ids, *, inputs_only: bool = False, packed: bool = False):
        """The last hidden state; with `inputs_only`, what layer 0 takes: (embeddings, key mask, position bias).

        `packed`: `attention_mask` holds segment ids, several sequences to a row (`samp_jax.packing`): positions
        restart at each sequence and each token attends to its own sequence only.
        """
        cfg = self.config
        position_ids = segment_positions(cfg, attention_mask) if packed else position_ids_for(cfg, input_ids)
        plan = self._plan
        emb_qtype = None if plan.embedding == "float" else plan.embedding
        h = Embeddings(cfg, emb_qtype, plan.input_codes(0) is not None, name="embeddings")(
            input_ids, position_ids, token_type_ids, out_dtype=plan.compute_dtype
        )
        key_mask = attention_mask.astype(jnp.int32 if packed else bool)
        position_bias = None
        if cfg.relative_attention_num_buckets:
            table = self.param(
                "relative_attention_bias", _init,
                (cfg.relative_attention_num_buckets, cfg.num_heads), jnp.float32,
            )
            buckets = relative_position_buckets(input_ids.shape[1], cfg.relative_attention_num_buckets)
            position_bias = jnp.transpose(table[buckets], (2, 0, 1))[None]  # [1, N, S, S]
        if inputs_only:
            return h, key_mask, position_bias
        return run_layers(cfg, plan, h, key_mask, position_bias)


def run_layers(cfg: EncoderConfig, plan: Plan, h, key_mask, position_bias) -> jax.Array:
    """The plan's `TransformerLayer`s `layer_{i}` in order, as submodules of the calling (compact) module."""
    for i in range(cfg.num_layers):  # 8-bit codes between layers where the next one is full_*
        nxt = plan.input_codes(i + 1)
        h = TransformerLayer(cfg, plan.modes[i], plan.probs, plan.compute_dtype, nxt, plan.smooths(i), name=f"layer_{i}")(
            h, key_mask, position_bias
        )
    return h
