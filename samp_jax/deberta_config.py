"""DeBERTa-v2/v3's options (`model_type: deberta-v2`), read from a Hugging Face `config.json`.

`EncoderConfig.deberta` holds them; everything BERT-shaped (sizes, activation, LayerNorm epsilon) stays in
`EncoderConfig`. What Hugging Face's `DebertaV2Model` computes and this module does not (the ConvLayer of
the v2 xlarge/xxlarge checkpoints, separate position projections) is refused, naming the key.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from typing import Any

from samp_jax import checks

MODEL_TYPE = "deberta-v2"
POS_ATT_TYPES = ("c2p", "p2c")  # content->position and position->content terms
_NORM_REL_EBD = ("none", "layer_norm")


@dataclasses.dataclass(frozen=True)
class DebertaOptions:
    """DeBERTa-v2's relative-attention and embedding options, named as in its `config.json`.

    `max_relative_positions` is resolved (Hugging Face reads < 1 as `max_position_embeddings`);
    `position_buckets` is 0 without log buckets (Hugging Face's -1); `norm_rel_ebd` says whether the
    relative embeddings pass a LayerNorm; `embedding_size` is the width of the embedding tables (a
    bias-free projection maps it onto the hidden size when it differs).
    """

    max_relative_positions: int
    position_buckets: int = 0
    pos_att_type: tuple[str, ...] = POS_ATT_TYPES
    norm_rel_ebd: bool = True
    position_biased_input: bool = False
    embedding_size: int = 0
    pooler_hidden_act: str = "gelu"

    def __post_init__(self) -> None:
        for name in ("max_relative_positions", "position_buckets", "embedding_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{name}={value!r} must be a non-negative integer")
            object.__setattr__(self, name, int(value))
        if self.max_relative_positions < 1:
            raise ValueError(f"max_relative_positions={self.max_relative_positions} must be positive")
        if self.embedding_size < 1:
            raise ValueError(f"embedding_size={self.embedding_size} must be positive")
        if 0 < self.position_buckets and self.max_relative_positions - 1 <= self.position_buckets // 2:
            raise ValueError(  # the log buckets divide by log((max_relative_positions - 1) / (position_buckets // 2))
                f"max_relative_positions={self.max_relative_positions} must exceed position_buckets // 2 + 1 = "
                f"{self.position_buckets // 2 + 1} (position_buckets={self.position_buckets})")
        types = self.pos_att_type
        if not isinstance(types, (tuple, list)) or not all(isinstance(t, str) for t in types):
            raise ValueError(f"pos_att_type={types!r} must be a list of {POS_ATT_TYPES}")
        if unknown := [t for t in types if t not in POS_ATT_TYPES]:
            raise ValueError(f"pos_att_type={list(types)} names {unknown}; known: {list(POS_ATT_TYPES)}")
        object.__setattr__(self, "pos_att_type", tuple(t for t in POS_ATT_TYPES if t in types))
        for name in ("norm_rel_ebd", "position_biased_input"):
            checks.flag(name, getattr(self, name))
        checks.activation("pooler_hidden_act", self.pooler_hidden_act)

    @property
    def attention_span(self) -> int:
        """Hugging Face's `pos_ebd_size`: relative distances reach +-span; the table has 2 * span rows."""
        return self.position_buckets or self.max_relative_positions

    @property
    def scale_factor(self) -> int:
        """The logits are divided by sqrt(head_dim * scale_factor): one per term (content, c2p, p2c)."""
        return 1 + len(self.pos_att_type)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | DebertaOptions) -> DebertaOptions:
        if isinstance(d, DebertaOptions):
            return d
        if not isinstance(d, Mapping):
            raise ValueError(f"EncoderConfig.deberta is stored as a JSON object, got {type(d).__name__}: {d!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(d) - fields):
            raise ValueError(f"unknown DeBERTa options {unknown}; known: {sorted(fields)}")
        if "max_relative_positions" not in d:
            raise ValueError(f"DeBERTa options lack max_relative_positions: {dict(d)}")
        values: dict[str, Any] = {k: tuple(v) if k == "pos_att_type" and isinstance(v, list) else v for k, v in d.items()}
        return cls(**values)


def _flag(hf: Mapping[str, Any], key: str, default: bool) -> bool:
    return checks.flag(key, hf.get(key, default))


def _int(hf: Mapping[str, Any], key: str, default: int) -> int:
    value = hf.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{key}={value!r} must be an integer")
    return int(value)


def deberta_values(hf: Mapping[str, Any]) -> dict[str, Any]:
    """The `EncoderConfig` fields a DeBERTa-v2 `config.json` gives beyond the common sizes, `deberta` included.

    Defaults are `DebertaV2Config`'s; anything the model would compute and samp-jax does not is refused.
    Sizes that depend on others (`embedding_size`, `max_relative_positions`) are resolved by `checked_options`
    once the common sizes are checked.
    """
    if not _flag(hf, "relative_attention", False):
        raise ValueError("relative_attention=false is not supported: samp-jax runs DeBERTa-v2/v3's disentangled "
                         "attention (every released DeBERTa-v2/v3 checkpoint sets relative_attention=true)")
    if _int(hf, "conv_kernel_size", 0) > 0:
        raise ValueError(f"conv_kernel_size={hf['conv_kernel_size']} > 0 (the ConvLayer of the DeBERTa-v2 xlarge and "
                         "xxlarge checkpoints) is not supported; DeBERTa-v3 checkpoints have none")
    if not _flag(hf, "share_att_key", False):
        raise ValueError("share_att_key=false (separate pos_key_proj/pos_query_proj) is not supported; "
                         "DeBERTa-v2/v3 checkpoints share the attention's query/key projections (true)")
    types = hf.get("pos_att_type")
    if types is None:
        types = []
    elif isinstance(types, str):  # "p2c|c2p", as DebertaV2Config accepts
        types = [t.strip() for t in types.lower().split("|") if t.strip()]
    elif not isinstance(types, list):
        raise ValueError(f"pos_att_type={types!r} must be a list such as ['p2c', 'c2p'] or a string 'p2c|c2p'")
    norm = hf.get("norm_rel_ebd", "none")
    if not isinstance(norm, str):
        raise ValueError(f"norm_rel_ebd={norm!r} must be a string such as 'layer_norm' or 'none'")
    parts = [p.strip() for p in norm.lower().split("|")]
    if unknown := [p for p in parts if p not in _NORM_REL_EBD]:
        raise ValueError(f"norm_rel_ebd={norm!r} names {unknown}; known: {list(_NORM_REL_EBD)}")
    pad = hf.get("pad_token_id", 0)
    options = dict(
        max_relative_positions=_int(hf, "max_relative_positions", -1),
        position_buckets=max(_int(hf, "position_buckets", -1), 0),
        pos_att_type=tuple(types),
        norm_rel_ebd="layer_norm" in parts,
        position_biased_input=_flag(hf, "position_biased_input", True),
        embedding_size=_int(hf, "embedding_size", 0),
        pooler_hidden_act=hf.get("pooler_hidden_act", "gelu"),
    )
    extra = {k: hf[k] for k in ("attention_head_size", "pooler_hidden_size") if k in hf}
    return dict(
        type_vocab_size=hf.get("type_vocab_size", 0),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-7),
        pad_token_id=0 if pad is None else pad,
        position_offset=0,
        relative_attention_num_buckets=0,
        deberta=dict(options, **{f"_{k}": v for k, v in extra.items()}),
    )


def checked_options(model_type: str, options: Any, v: Mapping[str, Any]) -> DebertaOptions | None:
    """`EncoderConfig.deberta` checked against the model type and the (checked) common sizes `v`.

    Present exactly for deberta-v2; `embedding_size` 0 reads as `hidden_size`, `max_relative_positions` < 1 as
    `max_position_embeddings` (Hugging Face's defaults). Head and pooler widths other than the hidden size's
    (`attention_head_size`, `pooler_hidden_size` in config.json) are refused.
    """
    if model_type != MODEL_TYPE:
        if options is not None:
            raise ValueError(f"DeBERTa options given for model_type={model_type!r}")
        return None
    if options is None:
        raise ValueError(f"a {MODEL_TYPE} EncoderConfig needs its DeBERTa options (deberta=...)")
    if isinstance(options, Mapping):
        options = dict(options)
        head_dim = v["hidden_size"] // v["num_heads"]
        for key, want in (("attention_head_size", head_dim), ("pooler_hidden_size", v["hidden_size"])):
            got = options.pop(f"_{key}", want)
            if got != want:
                raise ValueError(f"{key}={got!r} is not supported: samp-jax needs {want} (from hidden_size)")
        if not options.get("embedding_size"):
            options["embedding_size"] = v["hidden_size"]
        if _is_int(options.get("max_relative_positions")) and options["max_relative_positions"] < 1:
            options["max_relative_positions"] = v["max_position_embeddings"]
    return DebertaOptions.from_dict(options)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
