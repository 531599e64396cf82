"""RoBERTa, XLM-RoBERTa, ELECTRA and DistilBERT: what each changes of BERT, as data.

All four are post-LayerNorm BERT layers and run through the same encoder and quantization
points; they differ only in
- config.json's key names and defaults (DistilBERT says `dim`, `n_layers`, `n_heads`,
  `hidden_dim`, `activation`; its LayerNorm epsilon is fixed at 1e-12);
- positions: RoBERTa and XLM-R number them from `pad_token_id + 1`, counted over non-padding
  ids (fairseq's `make_positions`, as MPNet does); ELECTRA and DistilBERT count 0..S-1;
- the embedding width: ELECTRA's `embedding_size` may be below `hidden_size`, and a linear
  `embeddings_project` maps the embedding block's output to the layers' width;
- token types: DistilBERT has none, RoBERTa and XLM-R checkpoints one (type 0 only);
- the sequence-classification head (`SEQUENCE_HEADS`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from samp_jax import checks

BERTLIKE_MODEL_TYPES = ("roberta", "xlm-roberta", "electra", "distilbert")

# RoBERTa-style positions: pad_token_id + the count of non-padding ids up to and including this one.
PADDING_OFFSET_POSITIONS = ("roberta", "xlm-roberta")

# The sequence-classification head, `out_proj(act(dense(h[:, 0])))` on the first token (<s> or [CLS]):
# the Hugging Face names of its two linears and the activation between them. ELECTRA's is GELU whatever
# `hidden_act` says (Hugging Face's `ElectraClassificationHead` hard-codes it).
SEQUENCE_HEADS: dict[str, tuple[str, str, str]] = {
    "roberta": ("classifier.dense", "tanh", "classifier.out_proj"),
    "xlm-roberta": ("classifier.dense", "tanh", "classifier.out_proj"),
    "electra": ("classifier.dense", "gelu", "classifier.out_proj"),
    "distilbert": ("pre_classifier", "relu", "classifier"),
}

# config.json's name of each EncoderConfig field whose name differs (errors quote what the user's file says).
HF_KEYS: dict[str, dict[str, str]] = {
    "roberta": {"num_layers": "num_hidden_layers", "num_heads": "num_attention_heads"},
    "xlm-roberta": {"num_layers": "num_hidden_layers", "num_heads": "num_attention_heads"},
    "electra": {"num_layers": "num_hidden_layers", "num_heads": "num_attention_heads"},
    "distilbert": {"hidden_size": "dim", "num_layers": "n_layers", "num_heads": "n_heads",
                   "intermediate_size": "hidden_dim", "hidden_act": "activation"},
}

# DistilBERT's LayerNorms take eps=1e-12 in Hugging Face's code; config.json does not say.
_DISTILBERT_EPS = 1e-12
# Hugging Face's config-class defaults, used where config.json lacks the key.
_ELECTRA_EMBEDDING_SIZE = 128
_ROBERTA_PAD = 1


def config_values(model_type: str, read: Callable[..., Any]) -> dict[str, Any]:
    """The EncoderConfig fields of a config.json of one of these families, unchecked.

    `read(key)` reads a required config.json key, `read(key, default)` an optional one. The caller
    checks the values, naming them by `HF_KEYS[model_type]`.
    """
    keys = {"vocab_size": "vocab_size", "hidden_size": "hidden_size", "intermediate_size": "intermediate_size",
            "hidden_act": "hidden_act", **HF_KEYS[model_type]}
    values: dict[str, Any] = {
        "model_type": model_type,
        **{f: read(keys[f]) for f in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size")},
        "hidden_act": read(keys["hidden_act"], "gelu"),
        "max_position_embeddings": read("max_position_embeddings", 512),
        "relative_attention_num_buckets": 0,
        "embedding_size": 0,
    }
    if model_type == "distilbert":
        # the table is in the weights either way: only the setting's type is checked
        checks.flag("sinusoidal_pos_embds", read("sinusoidal_pos_embds", False))
        pad = read("pad_token_id", 0)
        return values | dict(type_vocab_size=0, layer_norm_eps=_DISTILBERT_EPS, position_offset=0,
                             pad_token_id=0 if pad is None else pad)  # null: no padding id, 0 pads as well as any
    pet = read("position_embedding_type", "absolute")
    if pet != "absolute":
        raise ValueError(f"unsupported {model_type} position_embedding_type={pet!r}; only 'absolute'")
    values |= dict(type_vocab_size=read("type_vocab_size", 2), layer_norm_eps=read("layer_norm_eps", 1e-12))
    if model_type == "electra":
        pad = read("pad_token_id", 0)
        emb = read("embedding_size", _ELECTRA_EMBEDDING_SIZE)
        if _is_number(emb) and emb < 1:
            raise ValueError(f"embedding_size={emb!r} must be positive")
        return values | dict(pad_token_id=0 if pad is None else pad, position_offset=0, embedding_size=emb)
    pad = read("pad_token_id", _ROBERTA_PAD)
    if pad is None:
        raise ValueError(f"pad_token_id=None: {model_type} numbers positions from pad_token_id + 1 and needs one")
    # a pad id that is no number is reported as pad_token_id by the caller's checks, before position_offset
    return values | dict(pad_token_id=pad, position_offset=pad + 1 if _is_number(pad) else pad)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def fixed_values(model_type: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """What the family fixes, given the other checked values: a stored config that breaks these was edited by hand."""
    fixed: dict[str, Any] = dict(relative_attention_num_buckets=0)
    if model_type in PADDING_OFFSET_POSITIONS:
        return fixed | dict(position_offset=values["pad_token_id"] + 1, embedding_size=0)
    fixed |= dict(position_offset=0)
    if model_type == "distilbert":
        return fixed | dict(type_vocab_size=0, embedding_size=0)
    return fixed
