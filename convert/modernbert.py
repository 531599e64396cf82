"""ModernBERT's naming rules: Hugging Face keys (without the `model.` prefix) -> our parameter tree.

| ours | Hugging Face |
|---|---|
| `encoder/embeddings/word_embeddings`, `layer_norm` | `embeddings.tok_embeddings`, `embeddings.norm` |
| `encoder/layer_i/attn_norm` (none in layer 0: the identity) | `layers.i.attn_norm` |
| `encoder/layer_i/attention/qkv`, `output` | `layers.i.attn.Wqkv`, `layers.i.attn.Wo` |
| `encoder/layer_i/mlp_norm` | `layers.i.mlp_norm` |
| `encoder/layer_i/ffn/intermediate` (`[H, 2I]`: input half, gate half), `output` | `layers.i.mlp.Wi`, `layers.i.mlp.Wo` |
| `encoder/final_norm` | `final_norm` |
| `head/dense`, `head/norm`, `head/classifier` | `head.dense`, `head.norm`, `classifier` |

A bias the config turns off (`attention_bias`, `mlp_bias`, `norm_bias`, `classifier_bias`) is absent from the
checkpoint and zeros in our tree; one present where the config says it is absent is an unused key (an error).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convert.hf_to_flax import Rule, _linear_kernel, _same
from samp_jax.config import EncoderConfig
from samp_jax.heads import TaskSpec

BASE_PREFIX = "model."
# Keys outside the base model: the heads (`head.`, `classifier.`) and the masked-LM decoder.
OUTSIDE_BASE = ("head.", "classifier.", "decoder.")
# Heads a bare encoder does not serve (ModernBertForMaskedLM's prediction head and decoder).
UNSERVED_HEAD_PREFIXES = ("head.", "decoder.")


def _zeros(n: int):
    def zeros() -> np.ndarray:
        return np.zeros((n,), np.float32)

    return zeros


def _linear(target: tuple[str, ...], source: str, out_features: int, bias: bool) -> list[Rule]:
    b = Rule((*target, "bias"), (f"{source}.bias",), _same) if bias else Rule((*target, "bias"), (), _zeros(out_features))
    return [Rule((*target, "kernel"), (f"{source}.weight",), _linear_kernel), b]


def _norm(target: tuple[str, ...], source: str, hidden: int, bias: bool) -> list[Rule]:
    b = Rule((*target, "bias"), (f"{source}.bias",), _same) if bias else Rule((*target, "bias"), (), _zeros(hidden))
    return [Rule((*target, "scale"), (f"{source}.weight",), _same), b]


def encoder_rules(cfg: EncoderConfig) -> list[Rule]:
    mb: Any = cfg.modernbert
    h, inner = cfg.hidden_size, cfg.intermediate_size
    e = ("encoder", "embeddings")
    rules = [Rule((*e, "word_embeddings"), ("embeddings.tok_embeddings.weight",), _same),
             *_norm((*e, "layer_norm"), "embeddings.norm", h, mb.norm_bias)]
    for i in range(cfg.num_layers):
        t, p = ("encoder", f"layer_{i}"), f"layers.{i}"
        if i > 0:
            rules += _norm((*t, "attn_norm"), f"{p}.attn_norm", h, mb.norm_bias)
        rules += [
            *_linear((*t, "attention", "qkv"), f"{p}.attn.Wqkv", 3 * h, mb.attention_bias),
            *_linear((*t, "attention", "output"), f"{p}.attn.Wo", h, mb.attention_bias),
            *_norm((*t, "mlp_norm"), f"{p}.mlp_norm", h, mb.norm_bias),
            *_linear((*t, "ffn", "intermediate"), f"{p}.mlp.Wi", 2 * inner, mb.mlp_bias),
            *_linear((*t, "ffn", "output"), f"{p}.mlp.Wo", h, mb.mlp_bias),
        ]
    return rules + _norm(("encoder", "final_norm"), "final_norm", h, mb.norm_bias)


def head_rules(cfg: EncoderConfig, task: TaskSpec) -> list[Rule]:
    if task.kind == "encoder":
        return []
    mb: Any = cfg.modernbert
    h = cfg.hidden_size
    return [*_linear(("head", "dense"), "head.dense", h, mb.classifier_bias),
            *_norm(("head", "norm"), "head.norm", h, mb.norm_bias),
            *_linear(("head", "classifier"), "classifier", task.num_labels, True)]
