"""The 8-bit dataflow as data: every quantization point and quantized GEMM of a layer, in one table.

Building a plan's parameters (`samp_jax.quant.build`), observing activations for
calibration (`samp_jax.calibration`), the scales file (`samp_jax.quant.scales`) and
the amax import (`convert.amax_import`) all read `POINTS` and `GEMMS`; no other module
spells a point's name. Activation scales are static and per tensor; weights are
quantized per output channel from their own max |w| unless amax values were imported.

- `input` (full): the hidden state entering the layer. Read by the attention/qkv GEMM and the
  attention residual; observed at `layer_{i}/input`; scale in `attention/input_scale`.
- `attention/q` (full): Q, after bias, before 1/sqrt(d). Read by the attention kernel, written by
  the attention/qkv GEMM; observed at `layer_{i}/attention/q`; scale in `attention/q_scale`.
- `attention/k` (full): K, after bias. Read by the attention kernel, written by the attention/qkv
  GEMM; observed at `layer_{i}/attention/k`; scale in `attention/k_scale`.
- `attention/v` (full): V, after bias. Read by the attention kernel, written by the attention/qkv
  GEMM; observed at `layer_{i}/attention/v`; scale in `attention/v_scale`.
- `attention/probs` (full; probs:int8): softmax probabilities. Read by the attention kernel;
  observed at `layer_{i}/attention/probs` over real query/key pairs; scale in
  `attention/probs_scale`.
- `attention/context` (full): attention output: the output projection's input. Read by the
  attention/output GEMM, written by the attention kernel; observed at `layer_{i}/attention/context`;
  scale in `attention/context_scale`.
- `attention_output` (ffn, full): attention LayerNorm output: the FFN input (and, in full_*, its
  residual). Read by the ffn/intermediate GEMM; observed at `layer_{i}/attention_output`; scale in
  `ffn/input_scale`, `attention/output_scale`.
- `ffn/activation` (ffn, full): the activation (GELU) output: the second FFN GEMM's input. Read by
  the ffn/output GEMM, written by the ffn/intermediate GEMM; observed at `layer_{i}/ffn/activation`;
  scale in the GEMMs' packed weights.

A point's scale is `amax / qmax(qtype)`; its amax is stored in `Scales.activations` under
`QuantPoint.key(i)` (`layer_{i}/<name>`), in `scales.safetensors` as `act/layer_{i}/<name>`.
A GEMM that reads a point folds that scale into its packed weight (`x_scale`), one whose
epilogue writes a point's codes takes that scale as its `out_scale`.

| GEMM | quantized in | input point | writes | imported weight amax |
|---|---|---|---|---|
| `attention/qkv` | full | `input` | `attention/q`, `attention/k`, `attention/v` | `weight/layer_{i}/attention/qkv` |
| `attention/output` | full | `attention/context` |  | `weight/layer_{i}/attention/output` |
| `ffn/intermediate` | ffn, full | `attention_output` | `ffn/activation` | `weight/layer_{i}/ffn/intermediate` |
| `ffn/output` | ffn, full | `ffn/activation` |  | `weight/layer_{i}/ffn/output` |

In `full_*` layers every residual is the dequantized 8-bit tensor (8-bit data flows between
fused kernels, SAMP's Figure 2); in `ffn_*` layers the residual stays in the float compute
dtype. A `full_*` layer's `input` codes are written by the kernel before it, with that
point's scale: the embedding (`EMBEDDING_INPUT_SCALE`, also used when the plan's embedding
precision is 8-bit before a float layer 0) or the previous layer's closing LayerNorm
(`NEXT_INPUT_SCALE`).
"""

from __future__ import annotations

import dataclasses
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from samp_jax.plan import LayerMode


@dataclasses.dataclass(frozen=True)
class QuantPoint:
    """One activation tensor of a layer that 8-bit modes quantize with a calibrated per-tensor scale.

    Attributes:
      name: the point's name inside its layer; its key is `layer_{i}/<name>` (`key`).
      tensor: what tensor it covers.
      families: the layer-mode families that quantize it ("ffn", "full").
      observed_in: the layer's submodule that sows its float value during calibration
        ("" for the layer itself), and `sow` the name it sows it under.
      pairs: observed over (real query, real key) pairs of a `[B, N, S, S]` tensor, not real tokens.
      probs: needed only under this `Plan.probs` treatment.
      gemm_input: the GEMM that reads it as its 8-bit input, if any.
      gemm_output: the GEMM whose epilogue writes its codes, if any.
      scale_params: where its scale lives in the built layer's parameters ("module/name").
    """

    name: str
    tensor: str
    families: tuple[str, ...]
    observed_in: str
    sow: str
    pairs: bool = False
    probs: str | None = None
    gemm_input: str | None = None
    gemm_output: str | None = None
    scale_params: tuple[str, ...] = ()

    def key(self, layer: int) -> str:
        """Its key in `Scales.activations`: `layer_3/attention/q`."""
        return f"layer_{layer}/{self.name}"

    def needed_by(self, mode: LayerMode | str, probs: str) -> bool:
        """Whether a layer in `mode`, under the plan's `probs` treatment, needs this point's scale."""
        return LayerMode.parse(mode).family in self.families and self.probs in (None, probs)

    def scale_param(self, module: str) -> str:
        """The name of its scale parameter in `module` of a layer ("attention", "ffn"); ValueError if it has none."""
        for path in self.scale_params:
            if path.rpartition("/")[0] == module:
                return param_in(path, module)
        raise ValueError(f"quantization point {self.name!r} has no scale parameter in {module!r}; "
                         f"it has {self.scale_params}")


@dataclasses.dataclass(frozen=True)
class QuantGemm:
    """One GEMM of a layer that 8-bit modes run on quantized operands.

    Attributes:
      name: its module path inside the layer; imported weight amax live under `layer_{i}/<name>` (`key`).
      families: the layer-mode families that quantize it.
      width: the `EncoderConfig` field giving its output features, times `multiple` (the QKV GEMM stacks
        three parts of `hidden_size` columns each: Q, K and V).
    """

    name: str
    families: tuple[str, ...]
    width: str
    multiple: int = 1

    def key(self, layer: int) -> str:
        """Its key in `Scales.weights`: `layer_3/ffn/output`."""
        return f"layer_{layer}/{self.name}"

    def out_features(self, config: Any) -> int:
        return int(getattr(config, self.width)) * self.multiple

    @property
    def input_point(self) -> QuantPoint:
        """The point whose codes this GEMM reads."""
        return next(p for p in POINTS if p.gemm_input == self.name)

    @property
    def output_points(self) -> tuple[QuantPoint, ...]:
        """The points whose codes this GEMM's epilogue writes, in the order of its output columns."""
        return tuple(p for p in POINTS if p.gemm_output == self.name)


FFN, FULL = ("ffn", "full"), ("full",)

INPUT = QuantPoint("input", "the hidden state entering the layer",
                   FULL, "", "input", gemm_input="attention/qkv", scale_params=("attention/input_scale",))
Q = QuantPoint("attention/q", "Q, after bias, before 1/sqrt(d)", FULL, "attention", "q",
               gemm_output="attention/qkv", scale_params=("attention/q_scale",))
K = QuantPoint("attention/k", "K, after bias", FULL, "attention", "k",
               gemm_output="attention/qkv", scale_params=("attention/k_scale",))
V = QuantPoint("attention/v", "V, after bias", FULL, "attention", "v",
               gemm_output="attention/qkv", scale_params=("attention/v_scale",))
PROBS = QuantPoint("attention/probs", "softmax probabilities", FULL, "attention", "probs",
                   pairs=True, probs="int8", scale_params=("attention/probs_scale",))
CONTEXT = QuantPoint("attention/context", "attention output: the output projection's input", FULL, "attention",
                     "context", gemm_input="attention/output", scale_params=("attention/context_scale",))
ATTENTION_OUTPUT = QuantPoint("attention_output", "attention LayerNorm output: the FFN input (and, in full_*, "
                              "its residual)", FFN, "", "attention_output", gemm_input="ffn/intermediate",
                              scale_params=("ffn/input_scale", "attention/output_scale"))
ACTIVATION = QuantPoint("ffn/activation", "the activation (GELU) output: the second FFN GEMM's input", FFN, "ffn",
                        "activation", gemm_input="ffn/output", gemm_output="ffn/intermediate")

POINTS: tuple[QuantPoint, ...] = (INPUT, Q, K, V, PROBS, CONTEXT, ATTENTION_OUTPUT, ACTIVATION)

QKV = QuantGemm("attention/qkv", FULL, "hidden_size", 3)
ATTENTION_OUT = QuantGemm("attention/output", FULL, "hidden_size")
FFN_INTERMEDIATE = QuantGemm("ffn/intermediate", FFN, "intermediate_size")
FFN_OUT = QuantGemm("ffn/output", FFN, "hidden_size")

GEMMS: tuple[QuantGemm, ...] = (QKV, ATTENTION_OUT, FFN_INTERMEDIATE, FFN_OUT)

# The points `smooth:` plans quantize per channel (`samp_jax.quant.smoothing`); their per-channel max |x| is
# calibrated too. Each is read by one GEMM, whose weight rows take the migrated factors. The two a LayerNorm
# writes (the residual stream) are also read by a residual LayerNorm, which dequantizes them per channel with
# the `residual_scale` vector here; the activation is written by a GEMM epilogue, one output scale per column.
CHANNEL_POINTS = ("input", "attention_output", "ffn/activation")
RESIDUAL_SCALE = {"input": "attention/residual_scale", "attention_output": "ffn/residual_scale"}

# Where a layer's `input` codes are written before it, holding INPUT's scale: in the encoder's embeddings
# (layer 0), and in the previous layer (layer i > 0, when layer i is full_*).
EMBEDDING_INPUT_SCALE = "embeddings/output_scale"
NEXT_INPUT_SCALE = "ffn/next_input_scale"



@dataclasses.dataclass(frozen=True)
class Dataflow:
    """Where a model family's layer departs from the BERT dataflow this table describes.

    Attributes:
      float_epilogue: GEMMs whose output passes through a float op before the points the table says they
        write (ModernBERT: rotary embeddings on Q and K after `attention/qkv`, the GeGLU gate after
        `ffn/intermediate`): they are packed without an output scale and write floats, and those points
        are quantized after the op.
      extra_scale_params: more places a point's scale goes ({point name: ("module/name", ...)}), for a
        point that the table folds into a GEMM but that this family quantizes outside one.
      next_input_codes: the layer before a `full_*` layer writes that layer's input codes with its closing
        LayerNorm (`NEXT_INPUT_SCALE`); False where the layer normalizes its own input (pre-LN).
    """

    float_epilogue: tuple[str, ...] = ()
    extra_scale_params: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    next_input_codes: bool = True


# ModernBERT (pre-LN, rotary, GeGLU): samp_jax/modernbert/encoder.py says how its GEMMs map onto the points.
DATAFLOWS: dict[str, Dataflow] = {
    "modernbert": Dataflow(("attention/qkv", "ffn/intermediate"), {"ffn/activation": ("ffn/activation_scale",)},
                           next_input_codes=False),
}


def dataflow(model_type: str) -> Dataflow:
    """The dataflow of a family's layers: BERT's (the table's) unless `DATAFLOWS` says otherwise."""
    return DATAFLOWS.get(model_type, Dataflow())


GEMMS_INTRO = """A point's scale is `amax / qmax(qtype)`; its amax is stored in `Scales.activations` under
`QuantPoint.key(i)` (`layer_{i}/<name>`), in `scales.safetensors` as `act/layer_{i}/<name>`.
A GEMM that reads a point folds that scale into its packed weight (`x_scale`), one whose
epilogue writes a point's codes takes that scale as its `out_scale`."""

def param_in(path: str, module: str) -> str:
    """The parameter name a module reads for a "module/name" path: `param_in(NEXT_INPUT_SCALE, "ffn")` is
    "next_input_scale"; ValueError if the path is another module's."""
    owner, _, name = path.rpartition("/")
    if owner != module:
        raise ValueError(f"parameter {path!r} belongs to {owner!r}, not {module!r}")
    return name


BY_NAME: dict[str, QuantPoint] = {p.name: p for p in POINTS}
GEMM_BY_NAME: dict[str, QuantGemm] = {g.name: g for g in GEMMS}
_BY_SOW: dict[tuple[str, str], QuantPoint] = {(p.observed_in, p.sow): p for p in POINTS}
_LAYER = re.compile(r"layer_([0-9]+)")

# Name lists, in table order.
ALL_POINTS = tuple(p.name for p in POINTS)
FFN_POINTS = tuple(p.name for p in POINTS if "ffn" in p.families)
FULL_POINTS = tuple(p.name for p in POINTS if p.probs is None)
PROBS_POINT = PROBS.name


def point(layer: int, name: str) -> str:
    """`point(3, "attention/q") == "layer_3/attention/q"`; ValueError for a name that is no point."""
    return by_name(name).key(layer)


def by_name(name: str) -> QuantPoint:
    if name not in BY_NAME:
        raise ValueError(f"unknown quantization point {name!r}; known: {ALL_POINTS}")
    return BY_NAME[name]


def points_for(mode: LayerMode | str, probs: str) -> tuple[QuantPoint, ...]:
    """The points whose scales a layer in `mode` needs under the plan's `probs` treatment, in table order."""
    return tuple(p for p in POINTS if p.needed_by(mode, probs))


def gemms_for(mode: LayerMode | str) -> tuple[QuantGemm, ...]:
    """The GEMMs a layer in `mode` runs on 8-bit operands."""
    family = LayerMode.parse(mode).family
    return tuple(g for g in GEMMS if family in g.families)


def required_points(layer: int, mode: LayerMode | str, probs: str) -> list[str]:
    """Keys of the activation scales layer `layer` in `mode` needs."""
    return [p.key(layer) for p in points_for(mode, probs)]


def parse_key(key: str) -> tuple[int, QuantPoint]:
    """`"layer_3/attention/q"` -> `(3, Q)`; ValueError naming the key if it names no point."""
    layer, _, name = key.partition("/")
    m = _LAYER.fullmatch(layer)
    if m is None or name not in BY_NAME:
        raise ValueError(f"{key!r} names no quantization point: expected layer_<i>/<point>, points {ALL_POINTS}")
    return int(m.group(1)), BY_NAME[name]


def parse_gemm_key(key: str) -> tuple[int, QuantGemm]:
    """`"layer_3/ffn/output"` -> `(3, FFN_OUT)`; ValueError naming the key if it names no quantized GEMM."""
    layer, _, name = key.partition("/")
    m = _LAYER.fullmatch(layer)
    if m is None or name not in GEMM_BY_NAME:
        raise ValueError(f"{key!r} names no quantized GEMM: expected layer_<i>/<GEMM>, GEMMs {tuple(GEMM_BY_NAME)}")
    return int(m.group(1)), GEMM_BY_NAME[name]


def observed_key(path: Sequence[str]) -> str:
    """The key of the point a value was sown at: `("encoder", "layer_3", "attention", "q")` -> `layer_3/attention/q`.

    `path` is the module path of the sown value in the "intermediates" collection, ending with its sow name.
    """
    for at, name in enumerate(path):
        m = _LAYER.fullmatch(name)
        p = _BY_SOW.get(("/".join(path[at + 1 : -1]), path[-1])) if m else None
        if m and p:
            return p.key(int(m.group(1)))
    raise ValueError(f"the value sown at {'/'.join(path)} is no quantization point; sown points are "
                     f"{sorted('/'.join(filter(None, k)) for k in _BY_SOW)} inside layer_<i>")


def observed(intermediates: Mapping[str, Any]) -> dict[str, Any]:
    """The values sown in an "intermediates" collection, keyed by their points (`layer_3/attention/q`).

    Flax keeps each sown value in a tuple; every point is sown once per forward pass.
    """
    out: dict[str, Any] = {}
    for path, values in _sown(intermediates, ()):
        key = observed_key(path)
        if len(values) != 1 or key in out:
            raise ValueError(f"{key} was sown {len(values) + (key in out)} times in one forward pass; expected once")
        out[key] = values[0]
    return out


def _sown(tree: Mapping[str, Any], path: tuple[str, ...]) -> Iterable[tuple[tuple[str, ...], tuple]]:
    for k in sorted(tree):  # sorted, as jax orders dict leaves
        v = tree[k]
        if isinstance(v, Mapping):
            yield from _sown(v, path + (str(k),))
        else:
            yield path + (str(k),), tuple(v)


def describe() -> str:
    """The list of points and the table of GEMMs in this module's docstring, made from `POINTS` and `GEMMS`
    (a test keeps the docstring equal to it)."""
    lines = []
    for p in POINTS:
        read = [f"the {p.gemm_input} GEMM" if p.gemm_input else "the attention kernel"]
        read += ["the attention residual"] if p is INPUT else []
        written = f"the {p.gemm_output} GEMM" if p.gemm_output else "the attention kernel" if p is CONTEXT else None
        at = "/".join(filter(None, ("layer_{i}", p.observed_in, p.sow)))
        text = (f"- `{p.name}` ({', '.join(p.families)}{'; probs:' + p.probs if p.probs else ''}): {p.tensor}. "
                f"Read by {' and '.join(read)}" + (f", written by {written}" if written else "")
                + f"; observed at `{at}`" + (" over real query/key pairs" if p.pairs else "")
                + "; scale in " + (", ".join(f"`{s}`" for s in p.scale_params) or "the GEMMs' packed weights") + ".")
        lines += textwrap.wrap(text, 100, subsequent_indent="  ", break_on_hyphens=False)
    lines += ["", GEMMS_INTRO, "", "| GEMM | quantized in | input point | writes | imported weight amax |",
              "|---|---|---|---|---|"]
    for g in GEMMS:
        writes = ", ".join(f"`{p.name}`" for p in g.output_points)
        lines.append(f"| `{g.name}` | {', '.join(g.families)} | `{g.input_point.name}` | {writes} | "
                     f"`weight/layer_{{i}}/{g.name}` |")
    return "\n".join(lines)
