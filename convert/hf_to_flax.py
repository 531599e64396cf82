"""Hugging Face state dict -> samp-jax parameter tree, by small pure naming rules.

Every target parameter has one rule naming its Hugging Face source key(s) and
how to combine them. Missing sources, unused checkpoint keys, integer or bool
sources and shape mismatches fail with both names in the message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from convert import bertlike_names
from samp_jax.bertlike import SEQUENCE_HEADS
from samp_jax.config import EncoderConfig
from samp_jax.heads import TaskSpec

# Buffers some checkpoints carry that hold no weights.
IGNORED_KEYS = ("embeddings.position_ids", "embeddings.token_type_ids")
# Heads we do not serve; dropped from bare-encoder conversions (reported, not silent).
UNSERVED_HEAD_PREFIXES = ("pooler.", "cls.", "lm_head.", "lm_predictions.", "mask_predictions.")
# Head keys that sit outside the base prefix (how a missing key is spelled in messages).
_HEAD_KEYS = ("classifier.", "pre_classifier.")
# Old TF-converted checkpoints name LayerNorm parameters gamma/beta.
_LN_ALIASES = {".gamma": ".weight", ".beta": ".bias"}


@dataclasses.dataclass(frozen=True)
class Rule:
    target: tuple[str, ...]
    sources: tuple[str, ...]
    combine: Callable[..., np.ndarray]


def _same(x: np.ndarray) -> np.ndarray:
    return x


def _linear_kernel(w: np.ndarray) -> np.ndarray:
    """torch Linear stores `[out, in]`; our kernels are `[in, out]`."""
    return w.T


def _fused_qkv_kernel(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.concatenate([q.T, k.T, v.T], axis=1)


def _fused_qkv_bias(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.concatenate([q, k, v])


def _dense(target: tuple[str, ...], source: str) -> list[Rule]:
    return [
        Rule((*target, "kernel"), (f"{source}.weight",), _linear_kernel),
        Rule((*target, "bias"), (f"{source}.bias",), _same),
    ]


def _layer_norm(target: tuple[str, ...], source: str) -> list[Rule]:
    return [
        Rule((*target, "scale"), (f"{source}.weight",), _same),
        Rule((*target, "bias"), (f"{source}.bias",), _same),
    ]


def _layer_sources(model_type: str, i: int) -> dict[str, Any]:
    if model_type == "distilbert":
        return bertlike_names.distilbert_layer_sources(i)
    p = f"encoder.layer.{i}"
    ffn = dict(ffn_in=f"{p}.intermediate.dense", ffn_out=f"{p}.output.dense", ffn_ln=f"{p}.output.LayerNorm")
    if model_type == "mpnet":
        a = f"{p}.attention.attn"
        return dict(qkv=(f"{a}.q", f"{a}.k", f"{a}.v"), out=f"{a}.o", attn_ln=f"{p}.attention.LayerNorm", **ffn)
    a = f"{p}.attention"
    if model_type == "deberta-v2":
        qkv = (f"{a}.self.query_proj", f"{a}.self.key_proj", f"{a}.self.value_proj")
        return dict(qkv=qkv, out=f"{a}.output.dense", attn_ln=f"{a}.output.LayerNorm", **ffn)
    return dict(
        qkv=(f"{a}.self.query", f"{a}.self.key", f"{a}.self.value"),
        out=f"{a}.output.dense",
        attn_ln=f"{a}.output.LayerNorm",
        **ffn,
    )


def encoder_rules(cfg: EncoderConfig) -> list[Rule]:
    """Rules for the encoder's parameters (keys without the base prefix: `bert.`, `roberta.`, ...)."""
    if cfg.model_type == "modernbert":
        from convert import modernbert

        return modernbert.encoder_rules(cfg)
    e = ("encoder", "embeddings")
    rules = [
        Rule((*e, "word_embeddings"), ("embeddings.word_embeddings.weight",), _same),
        *_layer_norm((*e, "layer_norm"), "embeddings.LayerNorm"),
    ]
    if cfg.deberta is None or cfg.deberta.position_biased_input:
        rules.append(Rule((*e, "position_embeddings"), ("embeddings.position_embeddings.weight",), _same))
    if cfg.has_embedding_projection:
        rules += _dense((*e, "project"), bertlike_names.EMBEDDINGS_PROJECT)
    if cfg.deberta is not None:  # relative embeddings (+ their LayerNorm), the embedding projection if any
        rules.append(Rule(("encoder", "rel_embeddings"), ("encoder.rel_embeddings.weight",), _same))
        if cfg.deberta.norm_rel_ebd:
            rules += _layer_norm(("encoder", "rel_layer_norm"), "encoder.LayerNorm")
        if cfg.deberta.embedding_size != cfg.hidden_size:
            rules.append(Rule((*e, "embed_proj", "kernel"), ("embeddings.embed_proj.weight",), _linear_kernel))
    if cfg.has_token_types:
        rules.append(Rule((*e, "token_type_embeddings"), ("embeddings.token_type_embeddings.weight",), _same))
    if cfg.relative_attention_num_buckets:
        rules.append(
            Rule(("encoder", "relative_attention_bias"), ("encoder.relative_attention_bias.weight",), _same)
        )
    for i in range(cfg.num_layers):
        src = _layer_sources(cfg.model_type, i)
        t = ("encoder", f"layer_{i}")
        q, k, v = src["qkv"]
        rules += [
            Rule((*t, "attention", "qkv", "kernel"), (f"{q}.weight", f"{k}.weight", f"{v}.weight"), _fused_qkv_kernel),
            Rule((*t, "attention", "qkv", "bias"), (f"{q}.bias", f"{k}.bias", f"{v}.bias"), _fused_qkv_bias),
            *_dense((*t, "attention", "output"), src["out"]),
            *_layer_norm((*t, "attention", "layer_norm"), src["attn_ln"]),
            *_dense((*t, "ffn", "intermediate"), src["ffn_in"]),
            *_dense((*t, "ffn", "output"), src["ffn_out"]),
            *_layer_norm((*t, "ffn", "layer_norm"), src["ffn_ln"]),
        ]
    return rules


def head_rules(cfg: EncoderConfig, task: TaskSpec) -> list[Rule]:
    """Rules for the task head (keys as Hugging Face writes them, outside the base prefix)."""
    if cfg.model_type == "modernbert":
        from convert import modernbert

        return modernbert.head_rules(cfg, task)
    if task.kind == "encoder":
        return []
    if task.kind == "token_classification":
        return _dense(("head", "classifier"), "classifier")
    if cfg.model_type == "mpnet":
        return _dense(("head", "dense"), "classifier.dense") + _dense(("head", "out_proj"), "classifier.out_proj")
    if cfg.model_type in SEQUENCE_HEADS:
        dense, _, out_proj = SEQUENCE_HEADS[cfg.model_type]
        return _dense(("head", "dense"), dense) + _dense(("head", "out_proj"), out_proj)
    return _dense(("head", "pooler"), "pooler.dense") + _dense(("head", "classifier"), "classifier")


def _normalize_key(key: str, base_prefix: str) -> str:
    """Strips the base-model prefix (`bert.`, `mpnet.`, `roberta.`, ...) and renames gamma/beta."""
    if "LayerNorm" in key:
        for old, new in _LN_ALIASES.items():
            if key.endswith(old):
                key = key[: -len(old)] + new
    return key.removeprefix(base_prefix)


def _normalize_keys(state: Mapping[str, np.ndarray], base_prefix: str) -> dict[str, np.ndarray]:
    return {_normalize_key(key, base_prefix): value for key, value in state.items()}


def convert_state_dict(
    state: Mapping[str, np.ndarray],
    cfg: EncoderConfig,
    task: TaskSpec,
    expected_shapes: Mapping[tuple[str, ...], tuple[int, ...]],
) -> tuple[dict[str, Any], list[str]]:
    """Maps a Hugging Face state dict onto our tree.

    Returns the nested parameter dict and the checkpoint keys deliberately
    dropped (heads a bare encoder does not serve, DeBERTa's unread position table). Raises ValueError naming
    the target path and the source key for anything missing, left over or
    mis-shaped.
    """
    base = bertlike_names.BASE_PREFIXES.get(cfg.model_type, f"{cfg.model_type}.")
    # head keys outside the base prefix (how a missing key is spelled in messages): DeBERTa's pooler too
    head_keys = _HEAD_KEYS + (("pooler.",) if cfg.deberta is not None else ())
    unserved = UNSERVED_HEAD_PREFIXES + bertlike_names.UNSERVED_HEAD_PREFIXES.get(cfg.model_type, ())
    if cfg.model_type == "modernbert":
        from convert import modernbert

        base, head_keys, unserved = modernbert.BASE_PREFIX, modernbert.OUTSIDE_BASE, modernbert.UNSERVED_HEAD_PREFIXES
    has_prefix = any(k.startswith(base) for k in state)
    spelled = {_normalize_key(k, base): k for k in state}
    state = _normalize_keys(state, base)

    def shown(key: str) -> str:  # the key as the checkpoint spells it (or would, for a missing one)
        if key in spelled:
            return spelled[key]
        return base + key if has_prefix and not key.startswith(head_keys) else key

    flat: dict[tuple[str, ...], np.ndarray] = {}
    used: set[str] = set()
    problems: list[str] = []
    for rule in encoder_rules(cfg) + head_rules(cfg, task):
        keys = list(rule.sources)
        missing = [k for k in keys if k not in state]
        if missing:
            problems.append(f"params/{'/'.join(rule.target)} needs {[shown(k) for k in missing]}, absent")
            continue
        not_float = [k for k in keys if not jnp.issubdtype(np.asarray(state[k]).dtype, jnp.floating)]
        if not_float:  # named by key only: convert_hf_checkpoint reads params/head/ in a message as a label-count mismatch
            problems += [f"{shown(k)} has dtype {np.asarray(state[k]).dtype}; a weight must be floating point"
                         for k in not_float]
            used.update(keys)
            continue
        value = rule.combine(*[state[k] for k in keys])
        want = tuple(expected_shapes[rule.target])
        if value.shape != want:
            src = {shown(k): state[k].shape for k in keys}
            problems.append(f"params/{'/'.join(rule.target)} expects shape {want}, got {value.shape} from {src}")
        flat[rule.target] = np.ascontiguousarray(value, dtype=np.float32)
        used.update(keys)

    dropped, unexpected = [], []
    for key in sorted(set(state) - used):
        if key in IGNORED_KEYS:
            continue
        if cfg.deberta is not None and key == "embeddings.position_embeddings.weight":  # unread without
            dropped.append(shown(key))  # position_biased_input; Hugging Face skips it on load too
            continue
        if task.kind == "encoder" and key.startswith(unserved):
            dropped.append(shown(key))
        else:
            unexpected.append(shown(key))
    if unexpected:
        problems.append(f"checkpoint keys that map to no parameter of this {cfg.model_type} {task.kind} model: {unexpected}")
    missing_targets = sorted(set(expected_shapes) - set(flat))
    if missing_targets and not problems:
        problems.append(f"no rule fills {['/'.join(t) for t in missing_targets]}")
    if problems:
        raise ValueError("cannot convert checkpoint:\n  " + "\n  ".join(problems))
    return unflatten(flat), dropped


def flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, (*prefix, k)))
        else:
            out[(*prefix, k)] = v
    return out


def unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree
