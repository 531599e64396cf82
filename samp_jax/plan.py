"""Precision plans: one mode per Transformer layer, plus plan-wide settings.

Layer modes (SAMP's names), typed as `LayerMode`:
  fp16       every GEMM unquantized, in the plan's float dtype (fp16, bf16 or fp32
             as `dtype` says); "float" is accepted as another spelling of it
  ffn_int8   SAMP's Quant-FFN-Only: the two FFN GEMMs in INT8
  full_int8  SAMP's Fully-Quant: QKV, attention-output and FFN GEMMs and both
             attention products in INT8, 8-bit data between the fused ops
  ffn_fp8, full_fp8   the same with FP8 e4m3 operands
Plan-wide settings:
  dtype      float type of everything not quantized: fp16 (default), bf16, fp32
  embedding  the embedding output's precision: float, int8 or fp8 (default:
             8-bit when layer 0 is full_*, since its input is then 8-bit)
  probs      softmax-probability treatment in full_* layers: uint8 (default,
             whole 8-bit range), int8 (naive symmetric, SAMP's), float
  smooth     outlier migration strength alpha in [0, 1] for full_* layers (default:
             none): the residual stream each LayerNorm writes as 8-bit codes is
             quantized per channel, channel j divided by s_j = amax_j^alpha /
             wmax_j^(1 - alpha) and the consuming GEMM's weight row j multiplied
             by it (`samp_jax.quant.smoothing`); needs per-channel calibration

String form: comma-separated terms, e.g. "ffn_int8:0-7,fp16:8-11",
"full_int8:0-5,probs:int8", "full_fp8,dtype:bf16". `MODE` alone applies to
every layer; `MODE:0-3+6` to layers 0..3 and 6; layers no term names are fp16.
"fp32", "bf16" and "fp16" alone are float plans of that dtype. Spaces around
terms and separators are ignored; an empty plan, a layer range written
high-low and a setting given twice are errors. A plan is always written with
the spelling "fp16" for unquantized layers (never "float"), so plan strings,
JSON files and tune caches read the same as they always have.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp

from pallas_kernels import PROBS_MODES


class LayerMode(enum.StrEnum):
    """A layer's precision mode: its family ("float", "ffn", "full") and 8-bit type (None, "int8", "fp8").

    A member is its spelling (`str(LayerMode.FFN_INT8) == "ffn_int8"`, and it compares and hashes
    as that string), so plans, files and the command line keep their strings.
    """

    FLOAT = "fp16"
    FFN_INT8 = "ffn_int8"
    FULL_INT8 = "full_int8"
    FFN_FP8 = "ffn_fp8"
    FULL_FP8 = "full_fp8"

    @classmethod
    def parse(cls, text: object) -> LayerMode:
        """The mode a spelling names ("fp16" or its alias "float", "ffn_int8", ...); ValueError naming it otherwise."""
        if isinstance(text, LayerMode):
            return text
        mode = _SPELLED.get(text) if isinstance(text, str) else None
        if mode is None:
            raise ValueError(f"unknown precision mode {text!r}; known: {LAYER_MODES} (and 'float' for fp16)")
        return mode

    @classmethod
    def of(cls, family: str, qtype: str | None = None) -> LayerMode:
        """The mode of a family and 8-bit type: `of("full", "int8")` is FULL_INT8, `of("float")` FLOAT."""
        spelling = "fp16" if (family, qtype) == ("float", None) else f"{family}_{qtype}"
        if spelling not in LAYER_MODES:
            raise ValueError(f"no layer mode of family={family!r} and qtype={qtype!r}; families: {FAMILIES}, "
                             f"8-bit types: {QTYPES}")
        return cls(spelling)

    @property
    def family(self) -> str:
        """"float" (nothing quantized), "ffn" (the FFN GEMMs) or "full" (every GEMM and the attention products)."""
        return "float" if self is LayerMode.FLOAT else self.value.split("_", 1)[0]

    @property
    def qtype(self) -> str | None:
        """The 8-bit type of the quantized GEMMs' operands ("int8", "fp8"), None for FLOAT."""
        return None if self is LayerMode.FLOAT else self.value.split("_", 1)[1]

    @property
    def quantizes_ffn(self) -> bool:
        return self.family != "float"

    @property
    def quantizes_attention(self) -> bool:
        """The QKV and attention-output GEMMs and the attention products run in 8 bits."""
        return self.family == "full"

    @property
    def input_qtype(self) -> str | None:
        """The 8-bit type the layer's input crosses memory in (full_* modes), None where it is float."""
        return self.qtype if self.quantizes_attention else None


LAYER_MODES = tuple(m.value for m in LayerMode)  # the spellings plans are written with
FAMILIES = ("float", "ffn", "full")
QTYPES = ("int8", "fp8")
_SPELLED = {**{m.value: m for m in LayerMode}, "float": LayerMode.FLOAT}
DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16, "fp16": jnp.float16}
EMBEDDING_MODES = ("float", "int8", "fp8")
SETTINGS = ("dtype", "embedding", "probs", "smooth")
SPELLINGS = (f"layer modes {', '.join(LAYER_MODES)} or float (alone, or MODE:FIRST-LAST+LAYER); float plans "
             f"{', '.join(DTYPES)} (alone); settings {', '.join(s + ':...' for s in SETTINGS)}")


def mode_qtype(mode: str) -> str | None:
    """"ffn_int8" -> "int8", "full_fp8" -> "fp8", "fp16" -> None (`LayerMode.parse(mode).qtype`)."""
    return LayerMode.parse(mode).qtype


@dataclasses.dataclass(frozen=True)
class Plan:
    """An ordered, validated, JSON-serializable precision plan.

    `layers` holds one `LayerMode` per layer (given as modes or their spellings); a
    `LayerMode` is a `str`, so `layers` compares equal to the tuple of spellings.
    """

    layers: tuple[str, ...]  # LayerMode members; `modes` gives them typed
    dtype: str = "fp16"
    embedding: str = ""  # "" -> derived from layer 0
    probs: str = "uint8"
    smooth: str = ""  # "" -> no outlier migration; else alpha in [0, 1], spelled as `f"{alpha:g}"`

    def __post_init__(self) -> None:
        if isinstance(self.layers, (str, bytes)) or not isinstance(self.layers, (list, tuple)):
            raise ValueError(f"layers={self.layers!r} must be a list of layer modes, one per layer")
        object.__setattr__(self, "layers", tuple(self.layers))
        for name in SETTINGS:
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name}={getattr(self, name)!r} must be a string")
        if not self.layers:
            raise ValueError("a plan needs at least one layer")
        modes = []
        for i, mode in enumerate(self.layers):
            try:
                modes.append(LayerMode.parse(mode))
            except ValueError:
                raise ValueError(f"unknown precision mode {mode!r} for layer {i}; known: {LAYER_MODES} "
                                 "(and 'float' for fp16)") from None
        object.__setattr__(self, "layers", tuple(modes))
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; known: {tuple(DTYPES)}")
        if self.probs not in PROBS_MODES:
            raise ValueError(f"unknown probs treatment {self.probs!r}; known: {PROBS_MODES}")
        first = self.modes[0].input_qtype
        if not self.embedding:
            object.__setattr__(self, "embedding", first or "float")
        if self.embedding not in EMBEDDING_MODES:
            raise ValueError(f"unknown embedding precision {self.embedding!r}; known: {EMBEDDING_MODES}")
        if first and self.embedding != first:
            raise ValueError(
                f"layer 0 is {self.layers[0]}, which takes {first} input: embedding precision must be "
                f"{first!r}, not {self.embedding!r}"
            )
        if self.smooth:
            object.__setattr__(self, "smooth", _smooth_spelling(self.smooth))
            if not any(m.quantizes_attention for m in self.modes):
                raise ValueError(f"smooth:{self.smooth} migrates outliers in full_* layers and this plan has none: "
                                 f"{[str(m) for m in self.modes]}")

    # ---- construction --------------------------------------------------------
    @classmethod
    def uniform(cls, mode: str, num_layers: int, **kwargs: Any) -> Plan:
        return cls(layers=(mode,) * num_layers, **kwargs)

    @classmethod
    def parse(cls, plan: str | Path | Mapping | Plan, num_layers: int) -> Plan:
        """A Plan from a Plan, its string form, its JSON dict, or a path to a JSON file."""
        if isinstance(plan, Plan):
            result = plan
        elif isinstance(plan, Mapping):
            result = cls.from_dict(plan)
        elif isinstance(plan, Path) or (isinstance(plan, str) and plan.strip().endswith(".json")):
            path = Path(plan.strip() if isinstance(plan, str) else plan)
            if not path.is_file():
                raise FileNotFoundError(f"plan file {path} not found")
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"corrupt plan JSON {path}: {e}") from None
            try:
                result = cls.from_dict(data)
            except ValueError as e:
                raise ValueError(f"plan file {path}: {e}") from None
        elif isinstance(plan, str):
            result = cls._from_string(plan, num_layers)
        else:
            raise ValueError(f"plan must be a Plan, a string, a dict or a JSON path, got {type(plan).__name__}")
        if len(result.layers) != num_layers:
            raise ValueError(f"plan has {len(result.layers)} layer modes, the model has {num_layers} layers")
        return result

    @classmethod
    def _from_string(cls, text: str, num_layers: int) -> Plan:
        terms = [t.strip() for t in text.split(",")]
        if not any(terms):
            raise ValueError(f"empty plan {text!r}: name one, e.g. 'fp32', 'bf16' or 'ffn_int8:0-7,fp16:8-11'")
        if len(terms) == 1 and terms[0] in DTYPES:
            return cls.uniform("fp16", num_layers, dtype=terms[0])
        modes: list[LayerMode | None] = [None] * num_layers
        settings: dict[str, str] = {}
        for term in filter(None, terms):
            name, colon, spec = (part.strip() for part in term.partition(":"))
            if name in SETTINGS:
                if not spec:
                    raise ValueError(f"plan term {term!r} needs a value, e.g. '{name}:...'")
                if name in settings:
                    raise ValueError(f"{name} is set twice in plan {text!r} ({settings[name]} and {spec})")
                settings[name] = spec
                continue
            if name not in _SPELLED:
                alone = (f"; {name!r} names a whole float plan only alone: with other terms write 'dtype:{name}'"
                         if name in DTYPES else "")
                raise ValueError(f"unknown precision mode {name!r} in plan term {term!r}{alone}; known: {SPELLINGS}")
            if colon and not spec:
                raise ValueError(f"plan term {term!r} needs layers after ':', e.g. '{name}:0-3', or none for all")
            mode = LayerMode.parse(name)
            for layer in _parse_layers(spec, num_layers, term):
                if modes[layer] is not None:
                    again = "twice" if modes[layer] == mode else f"two modes ({modes[layer]} and {name})"
                    raise ValueError(f"layer {layer} is given {again} in {text!r}")
                modes[layer] = mode
        return cls(layers=tuple(m or LayerMode.FLOAT for m in modes), **settings)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Plan:
        if not isinstance(d, Mapping):
            raise ValueError(
                f"plan JSON must be an object like {{\"layers\": [\"fp16\", ...]}}, got {type(d).__name__}: {d!r}"
            )
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown or "layers" not in d:
            raise ValueError(f"plan JSON needs 'layers' and allows dtype/embedding/probs/smooth; got keys {sorted(d)}")
        return cls(**d)

    # ---- output ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {"layers": [str(m) for m in self.layers], "dtype": self.dtype, "embedding": self.embedding,
             "probs": self.probs}
        return {**d, "smooth": self.smooth} if self.smooth else d  # plans without it read as they always have

    def to_string(self) -> str:
        if set(self.layers) == {LayerMode.FLOAT} and self.embedding == "float" and self.probs == "uint8" \
                and not self.smooth:
            return self.dtype
        runs: dict[LayerMode, list[str]] = {}
        start = 0
        modes = self.modes
        for i in range(1, len(modes) + 1):
            if i == len(modes) or modes[i] != modes[start]:
                runs.setdefault(modes[start], []).append(
                    str(start) if i - 1 == start else f"{start}-{i - 1}")
                start = i
        terms = [str(m) if len(runs) == 1 else f"{m}:{'+'.join(r)}" for m, r in runs.items()]
        default = Plan(self.layers)
        terms += [f"{k}:{getattr(self, k)}" for k in SETTINGS if getattr(self, k) != getattr(default, k)]
        return ",".join(terms)

    def __str__(self) -> str:
        return self.to_string()

    # ---- properties ------------------------------------------------------------
    @property
    def modes(self) -> tuple[LayerMode, ...]:
        """The layer modes, typed."""
        return self.layers  # type: ignore[return-value]  # __post_init__ made every entry a LayerMode

    @property
    def compute_dtype(self):
        return DTYPES[self.dtype]

    @property
    def is_quantized(self) -> bool:
        return any(m.quantizes_ffn for m in self.modes) or self.embedding != "float"

    def num_quantized(self) -> int:
        return sum(m.quantizes_ffn for m in self.modes)

    def input_codes(self, i: int) -> str | None:
        """The 8-bit type layer `i`'s input crosses memory in, or None where it is float.

        A `full_*` layer quantizes its input once for its QKV GEMM and its residual,
        so the kernel before it (the embedding, or the previous layer's LayerNorm)
        writes that input as codes from float32: no quantize kernel between layers.
        `i == len(layers)` is the encoder's output, which is float.
        """
        return None if i == len(self.layers) else self.modes[i].input_qtype

    @property
    def smooth_alpha(self) -> float | None:
        """The outlier migration strength, None without it."""
        return float(self.smooth) if self.smooth else None

    def smooths(self, i: int) -> bool:
        """Whether layer `i`'s LayerNorm-written points (its input and its attention output) are smoothed: a
        `full_*` layer of a plan with `smooth`."""
        return bool(self.smooth) and self.modes[i].quantizes_attention


def _smooth_spelling(text: str) -> str:
    try:
        alpha = float(text)
    except ValueError:
        alpha = float("nan")
    if not 0.0 <= alpha <= 1.0:  # NaN fails too
        raise ValueError(f"smooth:{text} must be a migration strength alpha in [0, 1], e.g. smooth:0.5")
    return f"{alpha:g}"


def _parse_layers(spec: str, num_layers: int, term: str) -> list[int]:
    if not spec:
        return list(range(num_layers))
    layers: list[int] = []
    for part in spec.split("+"):
        lo, dash, hi = (p.strip() for p in part.partition("-"))
        if not (re.fullmatch(r"[0-9]+", lo) and (not dash or re.fullmatch(r"[0-9]+", hi))):
            negative = "; layers count from 0" if part.strip().startswith("-") else ""
            raise ValueError(
                f"bad layer range {part!r} in plan term {term!r}: write LAYER or FIRST-LAST (digits){negative}"
            )
        first, last = int(lo), int(hi) if dash else int(lo)
        if first > last:
            raise ValueError(f"layer range {part!r} in {term!r} is reversed: write '{last}-{first}'")
        if last >= num_layers:
            raise ValueError(f"layer range {part!r} in {term!r} is outside the model's layers 0-{num_layers - 1}")
        layers += range(first, last + 1)
    return layers
