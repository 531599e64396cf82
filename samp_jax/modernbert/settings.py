"""`ModernBertSettings`: what a ModernBERT `config.json` says beyond the shapes every encoder has.

Read by `EncoderConfig.from_hf_config` (model_type "modernbert"); `EncoderConfig.modernbert` holds it.
Both spellings Hugging Face writes are read: the Hub's (`global_attn_every_n_layers`, `global_rope_theta`,
`local_rope_theta`) and transformers 5's (`layer_types`, `rope_parameters`, which win where both are
present, as in Hugging Face). Settings this library does not implement are refused, naming key and value.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any

from samp_jax import checks

LAYER_TYPES = ("full_attention", "sliding_attention")
POOLINGS = ("cls", "mean")
_THETA_KEYS = {"full_attention": "global_rope_theta", "sliding_attention": "local_rope_theta"}
_DEFAULT_THETA = {"full_attention": 160_000.0, "sliding_attention": 10_000.0}


@dataclasses.dataclass(frozen=True)
class ModernBertSettings:
    """ModernBERT's switches.

    Attributes:
      layer_types: per layer, "full_attention" (global) or "sliding_attention" (local: each token sees
        the keys within `local_attention // 2` positions on either side).
      local_attention: the local window's total width (Hugging Face's name).
      global_rope_theta, local_rope_theta: the rotary base of global and local layers.
      norm_bias, attention_bias, mlp_bias: whether the LayerNorms, the attention GEMMs (Wqkv, Wo) and
        the MLP GEMMs (Wi, Wo) have biases; the converter fills absent ones with zeros.
      classifier_pooling: "cls" (the first token) or "mean" (over real tokens), before the head.
      classifier_activation: the head's activation, between its dense layer and its LayerNorm.
      classifier_bias: whether the head's dense layer has a bias.
    """

    layer_types: tuple[str, ...]
    local_attention: int = 128
    global_rope_theta: float = 160_000.0
    local_rope_theta: float = 10_000.0
    norm_bias: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    classifier_pooling: str = "cls"
    classifier_activation: str = "gelu"
    classifier_bias: bool = False

    def __post_init__(self) -> None:
        types = self.layer_types
        if isinstance(types, (str, bytes)) or not isinstance(types, (list, tuple)):
            raise ValueError(f"layer_types={types!r} must be a list, one of {LAYER_TYPES} per layer")
        bad = [t for t in types if t not in LAYER_TYPES]
        if bad:
            raise ValueError(f"unsupported layer_types entries {bad}; known: {LAYER_TYPES}")
        object.__setattr__(self, "layer_types", tuple(types))
        object.__setattr__(self, "local_attention", _positive_int("local_attention", self.local_attention))
        for name in ("global_rope_theta", "local_rope_theta"):
            object.__setattr__(self, name, _positive_float(name, getattr(self, name)))
        for name in ("norm_bias", "attention_bias", "mlp_bias", "classifier_bias"):
            checks.flag(name, getattr(self, name))
        if self.classifier_pooling not in POOLINGS:
            raise ValueError(f"unsupported classifier_pooling={self.classifier_pooling!r}; supported: {POOLINGS}")
        checks.activation("classifier_activation", self.classifier_activation)

    @property
    def window(self) -> int:
        """How far a local layer's query sees on either side: `|q - k| <= local_attention // 2`."""
        return self.local_attention // 2

    def is_local(self, layer: int) -> bool:
        return self.layer_types[layer] == "sliding_attention"

    def rope_theta(self, layer: int) -> float:
        return self.local_rope_theta if self.is_local(layer) else self.global_rope_theta

    @classmethod
    def from_hf_config(cls, hf: Mapping[str, Any], num_layers: int) -> ModernBertSettings:
        """The settings of a Hugging Face ModernBERT `config.json`; ValueError naming any key it cannot take."""
        types = hf.get("layer_types")
        if types is None:
            every = _positive_int("global_attn_every_n_layers", hf.get("global_attn_every_n_layers", 3))
            types = ["sliding_attention" if i % every else "full_attention" for i in range(num_layers)]
        elif not isinstance(types, list) or len(types) != num_layers:
            raise ValueError(f"layer_types={types!r} must list one attention type per layer "
                             f"(num_hidden_layers={num_layers})")
        if hf.get("rope_scaling") is not None:
            raise ValueError(f"unsupported rope_scaling={hf['rope_scaling']!r}; only the default rotary embedding")
        theta = {t: hf.get(key, _DEFAULT_THETA[t]) for t, key in _THETA_KEYS.items()}
        rope = hf.get("rope_parameters")
        if rope is not None:
            if not isinstance(rope, Mapping):
                raise ValueError(f"rope_parameters={rope!r} must map attention types to rotary settings")
            for t, params in rope.items():
                if t not in LAYER_TYPES or not isinstance(params, Mapping):
                    raise ValueError(f"unsupported rope_parameters entry {t!r}: {params!r}; known: {LAYER_TYPES}")
                extra = {k: v for k, v in params.items() if k not in ("rope_type", "rope_theta")}
                if params.get("rope_type", "default") != "default" or extra:
                    raise ValueError(f"unsupported rope_parameters[{t!r}]={dict(params)!r}; only "
                                     "rope_type='default' with a rope_theta")
                theta[t] = params.get("rope_theta", theta[t])
        return cls(
            layer_types=tuple(types),
            local_attention=hf.get("local_attention", 128),
            global_rope_theta=theta["full_attention"],
            local_rope_theta=theta["sliding_attention"],
            norm_bias=hf.get("norm_bias", False),
            attention_bias=hf.get("attention_bias", False),
            mlp_bias=hf.get("mlp_bias", False),
            classifier_pooling=hf.get("classifier_pooling", "cls"),
            classifier_activation=hf.get("classifier_activation", "gelu"),
            classifier_bias=hf.get("classifier_bias", False),
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | ModernBertSettings) -> ModernBertSettings:
        """From `dataclasses.asdict` output (a stored `samp_jax.json`); ValueError naming unknown fields."""
        if isinstance(d, ModernBertSettings):
            return d
        if not isinstance(d, Mapping):
            raise ValueError(f"modernbert settings are stored as a JSON object, got {type(d).__name__}: {d!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown or "layer_types" not in d:
            raise ValueError(f"modernbert settings need layer_types and allow {sorted(names)}; got {sorted(d)}")
        return cls(**d)


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{key}={value!r} must be a positive integer")
    return int(value)


def _positive_float(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and float(value) > 0):
        raise ValueError(f"{key}={value!r} must be a finite number > 0")
    return float(value)
