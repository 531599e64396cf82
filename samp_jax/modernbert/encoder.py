"""The ModernBERT encoder as Flax modules: pre-LayerNorm layers, rotary embeddings, local/global attention, GeGLU.

Hugging Face's `ModernBertModel`, layer by layer:

    h = LayerNorm(tok_embeddings[ids])
    a = attn_norm(h)                      (the identity in layer 0)
    h = h + Wo(attention(rotary(Wqkv(a))))   (local layers: keys within local_attention // 2 of the query)
    h = h + Wo(act(x_in) * x_gate)  where x_in, x_gate = Wi(mlp_norm(h))
    ...
    out = final_norm(h)

Rotary embeddings and the local window run on the XLA path (`implementation="xla"` for the attention
op): the Pallas attention kernels read Q and K in place from the QKV GEMM's output and take no rotation,
and the window is a `[S, S]` additive mask. samp_jax/modernbert/README.md says why and what is measured.

Every GEMM goes through the same Dense/QuantDense modules, so every plan runs. ModernBERT's GEMMs and
tensors on the quantization points of `samp_jax.quant.points` (the parameter paths are BERT's, so
building, calibration and scales files work unchanged):

| point | ModernBERT tensor |
|---|---|
| `input` | `attn_norm` output (layer 0: the embedding output): the `Wqkv` input |
| `attention/q`, `attention/k` | Q and K after the rotary embedding: what the attention products read |
| `attention/v`, `attention/probs`, `attention/context` | as in BERT (probabilities with the window applied) |
| `attention_output` | `mlp_norm` output: the `Wi` input |
| `ffn/activation` | `act(x_in) * x_gate`: the MLP `Wo` input |

| GEMM | point path | quantized in |
|---|---|---|
| `attn.Wqkv` | `attention/qkv` | full |
| `attn.Wo` | `attention/output` | full |
| `mlp.Wi` (`[H, 2I]`: input half, then gate half) | `ffn/intermediate` | ffn, full |
| `mlp.Wo` | `ffn/output` | ffn, full |

Where the points have no counterpart, this module decides (`points.DATAFLOWS["modernbert"]` tells the builder):
- Pre-LN: a LayerNorm output feeds each sublayer's first GEMM, and that LayerNorm writes the GEMM's 8-bit
  codes (the `input` and `attention_output` scales); no layer writes the next one's input codes.
- The residual stream stays in the compute dtype in every mode, `full_*` included (BERT's `full_*` reads
  the dequantized 8-bit residual): a pre-LN residual is an unnormalized running sum that no GEMM reads.
- `Wqkv` and `Wi` write floats: the rotation and the GeGLU gate run between them and the points they would
  write, so Q, K, V and the gated activation are quantized after those ops, with their own scales
  (`ffn/activation_scale` holds the activation's).
- With an 8-bit `embedding` precision the embedding output, which is also the residual stream, is quantized
  and dequantized with layer 0's `input` scale.
Biases a checkpoint lacks (`attention_bias`, `mlp_bias`, `norm_bias` false) are zeros in the tree.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import pallas_kernels as ops
from pallas_kernels import dequantize_values, quantize_values
from samp_jax.config import EncoderConfig
from samp_jax.layers import Dense, LayerNorm, QuantDense, _init, built_param
from samp_jax.modernbert.positions import MASK_VALUE, apply_rotary, rotary_tables, window_bias
from samp_jax.modernbert.settings import ModernBertSettings
from samp_jax.plan import LayerMode, Plan
from samp_jax.quant import points


def modernbert_settings(config: EncoderConfig) -> ModernBertSettings:
    if config.modernbert is None:
        raise ValueError(f"a {config.model_type} config has no ModernBERT settings")
    return config.modernbert


def _observing(module: nn.Module) -> bool:
    return module.is_mutable_collection("intermediates")


def _child_param(module: nn.Module, child: str, name: str):
    """A parameter `samp_jax.quant.build` put in a child module's tree, read by its parent (a LayerNorm that
    writes the child GEMM's codes)."""
    value: Any = (module.get_variable("params", child) or {}).get(name)
    if value is None:
        raise ValueError(f"missing parameter {'/'.join(module.path)}/{child}/{name}: quantized parameters are "
                         "built from a float checkpoint by samp_jax.quant.build, not initialized")
    return value


def _probs(q, k, key_mask, bias, scale):
    """Softmax probabilities `[B, N, S, S]`, for calibration only."""
    logits = jnp.einsum("bqnd,bknd->bnqk", q, k, preferred_element_type=jnp.float32) * scale
    if bias is not None:
        logits = logits + bias
    return jax.nn.softmax(jnp.where(key_mask[:, None, None, :], logits, MASK_VALUE), axis=-1)


class ModernBertAttention(nn.Module):
    """`Wo(attention(rotary(Wqkv(a))))`, without the residual. `a` is the normalized input: floats, or (`qtype`,
    full_* modes) its codes; the attention runs on 8-bit Q, K, V then, writing the context's codes for `Wo`."""

    config: EncoderConfig
    qtype: str | None = None
    probs: str = "uint8"

    @nn.compact
    def __call__(self, a, key_mask, rope, bias, *, dtype) -> jax.Array:
        cfg = self.config
        b, s, h = a.shape
        n, d = cfg.num_heads, cfg.head_dim
        cos, sin = rope
        scale = d**-0.5
        if self.qtype is None:
            qkv = Dense(h, 3 * h, name="qkv")(a).reshape(b, s, 3, n, d)
            q, k, v = apply_rotary(qkv[:, :, 0], cos, sin), apply_rotary(qkv[:, :, 1], cos, sin), qkv[:, :, 2]
            qkv = jnp.stack([q, k, v], axis=2)
            ctx = ops.attention_packed(qkv, key_mask, bias, scale=scale, implementation="xla")
            if _observing(self):
                for point, t in ((points.Q, q), (points.K, k), (points.V, v), (points.CONTEXT, ctx)):
                    self.sow("intermediates", point.sow, t)
                self.sow("intermediates", points.PROBS.sow, _probs(q, k, key_mask, bias, scale))
            return Dense(h, h, name="output")(ctx.reshape(b, s, h))

        qt = self.qtype
        q_scale, k_scale, v_scale = (built_param(self, p.scale_param("attention")) for p in (points.Q, points.K, points.V))
        probs_scale = built_param(self, points.PROBS.scale_param("attention")) if self.probs == points.PROBS.probs else None
        qkv = QuantDense(qt, name="qkv")(a, out_dtype=jnp.float32).reshape(b, s, 3, n, d)  # floats: rotary next
        q, k = apply_rotary(qkv[:, :, 0], cos, sin), apply_rotary(qkv[:, :, 1], cos, sin)
        qkv_q = jnp.stack([quantize_values(t, sc, qt) for t, sc in ((q, q_scale), (k, k_scale), (qkv[:, :, 2], v_scale))],
                          axis=2)
        ctx_q = ops.quantized_attention_packed(
            qkv_q, q_scale, k_scale, v_scale, key_mask, bias, scale=scale, qtype=qt, probs=self.probs,
            probs_scale=probs_scale, out_scale=built_param(self, points.CONTEXT.scale_param("attention")),
            implementation="xla",
        )
        return QuantDense(qt, name="output")(ctx_q.reshape(b, s, h), out_dtype=dtype)


class ModernBertMLP(nn.Module):
    """`Wo(act(x_in) * x_gate)` with `x_in, x_gate = Wi(m)`, without the residual; `m` is floats or (`qtype`) codes."""

    config: EncoderConfig
    qtype: str | None = None

    @nn.compact
    def __call__(self, m, *, dtype) -> jax.Array:
        cfg = self.config
        hidden, inner = cfg.hidden_size, cfg.intermediate_size
        act = ops.ACTIVATIONS[cfg.hidden_act]
        if self.qtype is None:
            x = Dense(hidden, 2 * inner, name="intermediate")(m)
        else:
            x = QuantDense(self.qtype, name="intermediate")(m, out_dtype=dtype)  # floats: the gate next
        gated = act(x[..., :inner]) * x[..., inner:]
        if _observing(self):
            self.sow("intermediates", points.ACTIVATION.sow, gated)
        if self.qtype is None:
            return Dense(inner, hidden, name="output")(gated)
        codes = quantize_values(gated, built_param(self, "activation_scale"), self.qtype)
        return QuantDense(self.qtype, name="output")(codes, out_dtype=dtype)


class ModernBertLayer(nn.Module):
    """One pre-LN layer in its plan mode; takes and returns the residual stream in the compute dtype."""

    config: EncoderConfig
    index: int
    mode: LayerMode = LayerMode.FLOAT
    probs: str = "uint8"
    dtype: Any = jnp.float32

    def _norm(self, ln: LayerNorm | None, h, scale_of: tuple[str, str], qtype: str | None):
        """A LayerNorm of the residual stream (`ln` None: the identity), as floats or, with `qtype`, as the codes
        of the GEMM it feeds (the scale `scale_of` names); with `qtype` and while observing, `(floats, codes)`."""
        eps = self.config.layer_norm_eps
        if qtype is None:
            return h if ln is None else ops.residual_layer_norm(h, None, ln.scale, ln.bias, eps=eps, out_dtype=self.dtype)
        scale = _child_param(self, *scale_of)
        if ln is None:
            return quantize_values(h, scale, qtype)
        return ops.residual_layer_norm(h, None, ln.scale, ln.bias, eps=eps, out_dtype=self.dtype, out_scale=scale,
                                       out_qtype=qtype)

    @nn.compact
    def __call__(self, h, key_mask, rope, bias) -> jax.Array:
        cfg = self.config
        mode = LayerMode.parse(self.mode)
        full = mode.qtype if mode.quantizes_attention else None
        attn_norm = None if self.index == 0 else LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, name="attn_norm")
        in_scale = ("attention", points.INPUT.scale_param("attention"))
        if _observing(self):  # calibration runs float plans
            self.sow("intermediates", points.INPUT.sow, self._norm(attn_norm, h, in_scale, None))
        a = self._norm(attn_norm, h, in_scale, full)
        h = h + ModernBertAttention(cfg, full, self.probs, name="attention")(a, key_mask, rope, bias, dtype=self.dtype)
        mlp_norm = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, name="mlp_norm")
        m = self._norm(mlp_norm, h, ("ffn", points.ATTENTION_OUTPUT.scale_param("ffn")), mode.qtype)
        if _observing(self):
            self.sow("intermediates", points.ATTENTION_OUTPUT.sow, m)
        return h + ModernBertMLP(cfg, mode.qtype, name="ffn")(m, dtype=self.dtype)


class ModernBertEmbeddings(nn.Module):
    """`LayerNorm(tok_embeddings[ids])`; with `out_qtype` (the plan's 8-bit embedding) quantized and dequantized
    with layer 0's input scale, since this output is the residual stream as well as layer 0's input."""

    config: EncoderConfig
    out_qtype: str | None = None

    @nn.compact
    def __call__(self, input_ids, *, out_dtype) -> jax.Array:
        cfg = self.config
        word = self.param("word_embeddings", _init, (cfg.vocab_size, cfg.hidden_size), jnp.float32)
        ln = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, name="layer_norm")
        h = ops.residual_layer_norm(jnp.take(word, input_ids, axis=0), None, ln.scale, ln.bias,
                                    eps=cfg.layer_norm_eps, out_dtype=out_dtype)
        if self.out_qtype is None:
            return h
        scale = built_param(self, points.param_in(points.EMBEDDING_INPUT_SCALE, "embeddings"))
        return dequantize_values(quantize_values(h, scale, self.out_qtype), scale, out_dtype)


class ModernBertEncoder(nn.Module):
    """Embeddings, `num_layers` layers each in its plan mode, and the final LayerNorm; returns the last hidden state."""

    config: EncoderConfig
    plan: Plan | None = None  # None: float32 everywhere

    @nn.compact
    def __call__(self, input_ids, attention_mask) -> jax.Array:
        cfg = self.config
        mb = modernbert_settings(cfg)
        plan = self.plan or Plan.uniform(LayerMode.FLOAT, cfg.num_layers, dtype="fp32")
        dtype = plan.compute_dtype
        s = input_ids.shape[1]
        emb_qtype = None if plan.embedding == "float" else plan.embedding
        h = ModernBertEmbeddings(cfg, emb_qtype, name="embeddings")(input_ids, out_dtype=dtype)
        key_mask = attention_mask.astype(bool)
        ropes = {theta: rotary_tables(s, cfg.head_dim, theta) for theta in {mb.global_rope_theta, mb.local_rope_theta}}
        local = window_bias(s, cfg.num_heads, mb.window)
        for i in range(cfg.num_layers):
            h = ModernBertLayer(cfg, i, plan.modes[i], plan.probs, dtype, name=f"layer_{i}")(
                h, key_mask, ropes[mb.rope_theta(i)], local if mb.is_local(i) else None
            )
        final = LayerNorm(cfg.hidden_size, cfg.layer_norm_eps, name="final_norm")
        return ops.residual_layer_norm(h, None, final.scale, final.bias, eps=cfg.layer_norm_eps, out_dtype=dtype)
