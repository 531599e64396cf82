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

from samp_jax.config import EncoderConfig
from samp_jax.heads import TaskSpec

# Buffers some checkpoints carry that hold no weights.
IGNORED_KEYS = ("embeddings.position_ids", "embeddings.token_type_ids")
# Heads we do not serve; dropped from bare-encoder conversions (reported, not silent).
UNSERVED_HEAD_PREFIXES = ("pooler.", "cls.", "lm_head.")
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
    p = f"encoder.layer.{i}"
    if model_type == "mpnet":
        a = f"{p}.attention.attn"
        return dict(qkv=(f"{a}.q", f"{a}.k", f"{a}.v"), out=f"{a}.o", attn_ln=f"{p}.attention.LayerNorm")
    a = f"{p}.attention"
    return dict(
        qkv=(f"{a}.self.query", f"{a}.self.key", f"{a}.self.value"),
        out=f"{a}.output.dense",
        attn_ln=f"{a}.output.LayerNorm",
    )


def encoder_rules(cfg: EncoderConfig) -> list[Rule]:
    """Rules for the encoder's parameters (keys without the `bert.`/`mpnet.` prefix)."""
    if cfg.model_type == "modernbert":
        from convert import modernbert

        return modernbert.encoder_rules(cfg)
    e = ("encoder", "embeddings")
    rules = [
        Rule((*e, "word_embeddings"), ("embeddings.word_embeddings.weight",), _same),
        Rule((*e, "position_embeddings"), ("embeddings.position_embeddings.weight",), _same),
        *_layer_norm((*e, "layer_norm"), "embeddings.LayerNorm"),
    ]
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
            *_dense((*t, "ffn", "intermediate"), f"encoder.layer.{i}.intermediate.dense"),
            *_dense((*t, "ffn", "output"), f"encoder.layer.{i}.output.dense"),
            *_layer_norm((*t, "ffn", "layer_norm"), f"encoder.layer.{i}.output.LayerNorm"),
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
    return _dense(("head", "pooler"), "pooler.dense") + _dense(("head", "classifier"), "classifier")


def _normalize_keys(state: Mapping[str, np.ndarray], base_prefix: str) -> dict[str, np.ndarray]:
    """Strips the base-model prefix (`bert.`, `mpnet.`) and renames gamma/beta."""
    out = {}
    for key, value in state.items():
        if "LayerNorm" in key:
            for old, new in _LN_ALIASES.items():
                if key.endswith(old):
                    key = key[: -len(old)] + new
        out[key.removeprefix(base_prefix)] = value
    return out


def convert_state_dict(
    state: Mapping[str, np.ndarray],
    cfg: EncoderConfig,
    task: TaskSpec,
    expected_shapes: Mapping[tuple[str, ...], tuple[int, ...]],
) -> tuple[dict[str, Any], list[str]]:
    """Maps a Hugging Face state dict onto our tree.

    Returns the nested parameter dict and the checkpoint keys deliberately
    dropped (heads a bare encoder does not serve). Raises ValueError naming
    the target path and the source key for anything missing, left over or
    mis-shaped.
    """
    base = f"{cfg.model_type}."
    outside: tuple[str, ...] = ("classifier.",)  # keys outside the base model
    unserved: tuple[str, ...] = UNSERVED_HEAD_PREFIXES
    if cfg.model_type == "modernbert":
        from convert import modernbert

        base, outside, unserved = modernbert.BASE_PREFIX, modernbert.OUTSIDE_BASE, modernbert.UNSERVED_HEAD_PREFIXES
    has_prefix = any(k.startswith(base) for k in state)
    state = _normalize_keys(state, base)

    def shown(key: str) -> str:  # the key as the checkpoint spells it
        return base + key if has_prefix and not key.startswith(outside) else key

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
