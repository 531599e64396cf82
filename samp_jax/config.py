"""`EncoderConfig`: the frozen model description read from a Hugging Face `config.json`."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from samp_jax import bertlike, checks
from samp_jax.deberta_config import DebertaOptions, checked_options, deberta_values
from samp_jax.modernbert.settings import ModernBertSettings

SUPPORTED_MODEL_TYPES = ("bert", "mpnet", *bertlike.BERTLIKE_MODEL_TYPES, "deberta-v2", "modernbert")

# MPNet (like RoBERTa) numbers positions from padding_idx + 1, with padding_idx
# fixed at 1 in Hugging Face's MPNetEmbeddings whatever pad_token_id says.
_MPNET_PADDING_IDX = 1


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Shape and numerics of a BERT-family encoder.

    `position_offset` is where position ids start (0 for BERT, 2 for MPNet);
    `max_seq_len` is the longest sequence the position table can take.
    `embedding_size`: the embedding block's width where it differs from `hidden_size` (ELECTRA,
    whose `embeddings_project` maps it to `hidden_size`); 0 for the families without one.
    """

    model_type: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    position_offset: int = 0
    relative_attention_num_buckets: int = 0
    embedding_size: int = 0
    deberta: DebertaOptions | None = None  # deberta-v2 only (samp_jax.deberta_config)
    modernbert: ModernBertSettings | None = None  # model_type "modernbert" only

    def __post_init__(self) -> None:
        for name, value in _checked(dataclasses.asdict(self)).items():
            object.__setattr__(self, name, value)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def max_seq_len(self) -> int:
        return self.max_position_embeddings - self.position_offset

    @property
    def has_token_types(self) -> bool:
        return self.type_vocab_size > 0

    @property
    def embedding_dim(self) -> int:
        """The width of the embedding tables and their LayerNorm."""
        return self.embedding_size or self.hidden_size

    @property
    def has_embedding_projection(self) -> bool:
        return self.embedding_dim != self.hidden_size

    @classmethod
    def from_hf_config(cls, hf: Mapping[str, Any] | str | Path) -> EncoderConfig:
        """Builds the config from a Hugging Face `config.json` (a dict or its path)."""
        if not isinstance(hf, Mapping):
            path = Path(hf)
            if path.is_dir():
                path = path / "config.json"
            hf = read_json(path)
        model_type = hf.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"unsupported model_type={model_type!r} (architectures={hf.get('architectures')}); "
                f"supported: {SUPPORTED_MODEL_TYPES}"
            )
        if model_type in bertlike.BERTLIKE_MODEL_TYPES:
            values = bertlike.config_values(model_type, functools.partial(_hf_value, hf))
            return cls(**_checked(values, bertlike.HF_KEYS[model_type]))
        values = dict(
            model_type=model_type,
            vocab_size=_hf_value(hf, "vocab_size"),
            hidden_size=_hf_value(hf, "hidden_size"),
            num_layers=_hf_value(hf, "num_hidden_layers"),
            num_heads=_hf_value(hf, "num_attention_heads"),
            intermediate_size=_hf_value(hf, "intermediate_size"),
            hidden_act=_hf_value(hf, "hidden_act", "gelu"),
            max_position_embeddings=_hf_value(hf, "max_position_embeddings", 512),
            embedding_size=0,
        )
        if model_type == "bert":
            pet = hf.get("position_embedding_type", "absolute")
            if pet != "absolute":
                raise ValueError(f"unsupported BERT position_embedding_type={pet!r}; only 'absolute'")
            pad = _hf_value(hf, "pad_token_id", 0)
            values.update(
                type_vocab_size=_hf_value(hf, "type_vocab_size", 2),
                layer_norm_eps=_hf_value(hf, "layer_norm_eps", 1e-12),
                pad_token_id=0 if pad is None else pad,  # null: no padding id, and 0 pads as well as any
                position_offset=0,
                relative_attention_num_buckets=0,
            )
        elif model_type == "deberta-v2":
            values.update(deberta_values(hf))
        elif model_type == "modernbert":
            pad = _hf_value(hf, "pad_token_id", 50283)
            values.update(
                hidden_act=_hf_value(hf, "hidden_activation", "gelu"),
                type_vocab_size=0,
                layer_norm_eps=_hf_value(hf, "norm_eps", 1e-5),
                pad_token_id=0 if pad is None else pad,
                position_offset=0,
                relative_attention_num_buckets=0,
                modernbert=ModernBertSettings.from_hf_config(hf, _integer("num_hidden_layers", values["num_layers"])),
            )
            return cls(**_checked(values, {**HF_KEYS, **MODERNBERT_HF_KEYS}))
        else:  # mpnet
            values.update(
                type_vocab_size=0,
                layer_norm_eps=_hf_value(hf, "layer_norm_eps", 1e-5),
                pad_token_id=_MPNET_PADDING_IDX,
                position_offset=_MPNET_PADDING_IDX + 1,
                relative_attention_num_buckets=_hf_value(hf, "relative_attention_num_buckets", 32),
            )
        return cls(**_checked(values, HF_KEYS))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for family in ("deberta", "modernbert"):  # other families' stored configs keep the fields they always had
            if d[family] is None:
                del d[family]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EncoderConfig:
        if not isinstance(d, Mapping):
            raise ValueError(f"an EncoderConfig is stored as a JSON object, got {type(d).__name__}: {d!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(d) - set(fields)
        if unknown:
            raise ValueError(f"unknown EncoderConfig fields {sorted(unknown)}")
        missing = [n for n, f in fields.items() if f.default is dataclasses.MISSING and n not in d]
        if missing:
            raise ValueError(f"EncoderConfig lacks required fields {missing}")
        return cls(**d)


# config.json's name for each field whose name differs; errors name what the user's file says
HF_KEYS = {"num_layers": "num_hidden_layers", "num_heads": "num_attention_heads"}
MODERNBERT_HF_KEYS = {"hidden_act": "hidden_activation", "layer_norm_eps": "norm_eps"}

# ids, positions and token types reach the device as int32
_INT_LIMIT = 2**31
_POSITIVE = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size")
_NON_NEGATIVE = ("type_vocab_size", "pad_token_id", "position_offset", "relative_attention_num_buckets",
                 "embedding_size")
_REQUIRED = object()


def _hf_value(hf: Mapping[str, Any], key: str, default: Any = _REQUIRED) -> Any:
    if key in hf:
        return hf[key]
    if default is _REQUIRED:
        raise ValueError(f"config.json lacks required key {key!r}")
    return default


def _is_number(value: Any) -> bool:
    """A real number and not a bool (JSON's true and false load as bools, which Python counts as ints)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _integer(key: str, value: Any) -> int:
    """`value` as an int: ints and integral floats pass; bools, strings, nulls and fractions do not."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if _is_number(value) and math.isfinite(value) and value == int(value):
        return int(value)
    kind = "" if _is_number(value) else f", not {type(value).__name__}"
    raise ValueError(f"{key}={value!r} must be an integer{kind}")


def _checked(values: Mapping[str, Any], names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`values` (an EncoderConfig's fields) type- and range-checked: ints as int, the epsilon as float.

    `names` maps a field to the key that messages call it by (config.json's names when converting).
    Types are checked before ranges and ranges before ratios, so each message is about one value.
    """
    def key(field: str) -> str:
        return (names or {}).get(field, field)

    v = dict(values)
    model_type = v["model_type"]
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"unsupported model_type={model_type!r}; supported: {SUPPORTED_MODEL_TYPES}")
    for name in (*_POSITIVE, "max_position_embeddings", *_NON_NEGATIVE):
        v[name] = _integer(key(name), v[name])
    eps = v["layer_norm_eps"]
    if not _is_number(eps) or not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"{key('layer_norm_eps')}={eps!r} must be a finite number > 0")
    v["layer_norm_eps"] = float(eps)
    checks.activation(key("hidden_act"), v["hidden_act"])

    for name in (*_POSITIVE, *_NON_NEGATIVE):
        low = 1 if name in _POSITIVE else 0
        if v[name] < low:
            raise ValueError(f"{key(name)}={v[name]} must be {'positive' if low else 'non-negative'}")
    for name in (*_POSITIVE, *_NON_NEGATIVE, "max_position_embeddings"):
        if v[name] >= _INT_LIMIT:
            raise ValueError(f"{key(name)}={v[name]} must be below 2**31 (ids and positions are int32)")
    mpe, offset = v["max_position_embeddings"], v["position_offset"]
    if mpe <= offset:
        raise ValueError(
            f"{key('max_position_embeddings')}={mpe} must be above {offset}, where {model_type} positions start"
            if offset else f"{key('max_position_embeddings')}={mpe} must be positive"
        )
    pad, vocab = v["pad_token_id"], v["vocab_size"]
    if pad >= vocab:
        fixed_pad = " (MPNet always pads with id 1)" if model_type == "mpnet" else ""
        raise ValueError(f"{key('pad_token_id')}={pad} is outside [0, {key('vocab_size')}={vocab}){fixed_pad}")
    if v["hidden_size"] % v["num_heads"]:
        raise ValueError(
            f"{key('hidden_size')}={v['hidden_size']} is not a multiple of {key('num_heads')}={v['num_heads']}"
        )
    v["deberta"] = checked_options(model_type, v.get("deberta"), v)
    # What each architecture fixes (a stored samp_jax.json that breaks these was edited by hand).
    if model_type == "modernbert":
        if v.get("modernbert") is None:
            raise ValueError("a modernbert config needs its modernbert settings")
        v["modernbert"] = ModernBertSettings.from_dict(v["modernbert"])
        if len(v["modernbert"].layer_types) != v["num_layers"]:
            raise ValueError(f"modernbert layer_types names {len(v['modernbert'].layer_types)} layers, "
                             f"{key('num_layers')}={v['num_layers']}")
    elif v.get("modernbert") is not None:
        raise ValueError(f"modernbert settings given for a {model_type} model")
    if model_type in bertlike.BERTLIKE_MODEL_TYPES:
        fixed = bertlike.fixed_values(model_type, v)
    elif model_type == "modernbert":
        fixed = dict(type_vocab_size=0, position_offset=0, relative_attention_num_buckets=0, embedding_size=0)
    elif model_type in ("bert", "deberta-v2"):
        fixed = dict(position_offset=0, relative_attention_num_buckets=0, embedding_size=0)
    else:
        fixed = dict(type_vocab_size=0, pad_token_id=_MPNET_PADDING_IDX, position_offset=_MPNET_PADDING_IDX + 1,
                     embedding_size=0)
        if v["relative_attention_num_buckets"] < 1:
            raise ValueError(
                f"{key('relative_attention_num_buckets')}={v['relative_attention_num_buckets']} must be positive: "
                "MPNet's attention takes a relative position bias"
            )
    for name, want in fixed.items():
        if v[name] != want:
            raise ValueError(f"{key(name)}={v[name]} is not {want}, which every {model_type} model has")
    return v


def read_json(path: str | Path) -> dict[str, Any]:
    """Reads a JSON object, naming the file in every failure."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing file {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"corrupt JSON in {path}: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}, expected a JSON object")
    return data


def bert_base() -> EncoderConfig:
    """BERT-base shapes (12 layers, hidden 768, FFN 3072), for benchmarks."""
    return EncoderConfig("bert", 30522, 768, 12, 12, 3072)


def minilm_l6() -> EncoderConfig:
    """all-MiniLM-L6-v2's shapes (6 layers, hidden 384, FFN 1536)."""
    return EncoderConfig("bert", 30522, 384, 6, 12, 1536)
