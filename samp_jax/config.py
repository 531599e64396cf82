"""`EncoderConfig`: the frozen model description read from a Hugging Face `config.json`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pallas_kernels.matmul.base import ACTIVATIONS

SUPPORTED_MODEL_TYPES = ("bert", "mpnet")

# MPNet (like RoBERTa) numbers positions from padding_idx + 1, with padding_idx
# fixed at 1 in Hugging Face's MPNetEmbeddings whatever pad_token_id says.
_MPNET_PADDING_IDX = 1


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Shape and numerics of a BERT-family encoder.

    `position_offset` is where position ids start (0 for BERT, 2 for MPNet);
    `max_seq_len` is the longest sequence the position table can take.
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

    def __post_init__(self) -> None:
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"unsupported model_type={self.model_type!r}; supported: {SUPPORTED_MODEL_TYPES}"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not a multiple of num_heads={self.num_heads}"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act={self.hidden_act!r}; known: {sorted(ACTIVATIONS)}")
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def max_seq_len(self) -> int:
        return self.max_position_embeddings - self.position_offset

    @property
    def has_token_types(self) -> bool:
        return self.type_vocab_size > 0

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
        try:
            common = dict(
                model_type=model_type,
                vocab_size=int(hf["vocab_size"]),
                hidden_size=int(hf["hidden_size"]),
                num_layers=int(hf["num_hidden_layers"]),
                num_heads=int(hf["num_attention_heads"]),
                intermediate_size=int(hf["intermediate_size"]),
                hidden_act=str(hf.get("hidden_act", "gelu")),
                max_position_embeddings=int(hf.get("max_position_embeddings", 512)),
            )
        except KeyError as e:
            raise ValueError(f"config.json lacks required key {e.args[0]!r}") from None
        if model_type == "bert":
            pet = hf.get("position_embedding_type", "absolute")
            if pet != "absolute":
                raise ValueError(f"unsupported BERT position_embedding_type={pet!r}; only 'absolute'")
            return cls(
                **common,
                type_vocab_size=int(hf.get("type_vocab_size", 2)),
                layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
                pad_token_id=int(hf.get("pad_token_id") or 0),
            )
        return cls(  # mpnet
            **common,
            type_vocab_size=0,
            layer_norm_eps=float(hf.get("layer_norm_eps", 1e-5)),
            pad_token_id=_MPNET_PADDING_IDX,
            position_offset=_MPNET_PADDING_IDX + 1,
            relative_attention_num_buckets=int(hf.get("relative_attention_num_buckets", 32)),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EncoderConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown EncoderConfig fields {sorted(unknown)}")
        return cls(**d)


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
