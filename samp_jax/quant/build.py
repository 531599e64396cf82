"""Builds the parameter tree of a plan: float params + scales -> what the modules consume.

Which GEMMs a layer mode quantizes, which point's scale each reads and writes, and
where each scale goes come from the table in `samp_jax.quant.points`.

Quantized GEMM kernels are quantized per output channel and packed for the
fused 8-bit GEMM (`pallas_kernels.pack_weight`: K-major codes with the column
scale, bias and reciprocal output scale precomputed), activation amax become
per-tensor scales (`amax / qmax`), float kernels and embedding tables are cast
to the plan's dtype; LayerNorm parameters and biases stay float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from pallas_kernels import pack_weight, qmax
from samp_jax.config import EncoderConfig
from samp_jax.plan import LayerMode, Plan
from samp_jax.quant import smoothing
from samp_jax.quant.points import (
    BY_NAME,
    EMBEDDING_INPUT_SCALE,
    INPUT,
    NEXT_INPUT_SCALE,
    RESIDUAL_SCALE,
    dataflow,
    gemms_for,
    parse_key,
    points_for,
)
from samp_jax.quant.qarray import quantize_weight
from samp_jax.quant.scales import Scales
from samp_jax.quant.tree import get_path, set_path

# Float parameters cast to the compute dtype; the rest (LayerNorm, biases) stays float32.
_CAST_SUFFIXES = ("kernel", "_embeddings")


def cast_params(params: Any, dtype) -> Any:
    """Casts GEMM kernels and embedding tables to `dtype`, the rest to float32."""

    def cast(path, leaf):
        name = path[-1].key
        return jnp.asarray(leaf, dtype if name.endswith(_CAST_SUFFIXES) else jnp.float32)

    return jax.tree_util.tree_map_with_path(cast, params)


def missing_scales(plan: Plan, scales: Scales | None) -> list[str]:
    """`"layer 3 (full_int8): layer_3/attention/q"` for each scale the plan needs and lacks."""
    have = scales.activations if scales is not None else {}
    missing = []
    for i, mode in enumerate(plan.modes):
        missing += [f"layer {i} ({mode}): {p.key(i)}" for p in points_for(mode, plan.probs) if p.key(i) not in have]
    if plan.embedding != "float" and INPUT.key(0) not in have:
        missing.append(f"embedding ({plan.embedding}): {INPUT.key(0)}")
    return missing


def check_plan(plan: Plan, config: EncoderConfig, scales: Scales | None) -> None:
    """ValueError naming the layer and the scale for everything the plan needs and the model lacks."""
    if len(plan.layers) != config.num_layers:
        raise ValueError(f"plan {plan} has {len(plan.layers)} layer modes, the model has {config.num_layers} layers")
    missing = missing_scales(plan, scales)
    if missing:
        source = "no scales at all" if scales is None else f"scales from {scales.method!r}"
        raise ValueError(
            f"plan {plan} needs activation scales the checkpoint lacks ({source}); run `samp-jax calibrate` "
            "or import amax values:\n  " + "\n  ".join(missing)
        )
    smoothing.check(plan, config, scales)


def _scale(scales: Scales, key: str, qtype: str) -> jax.Array:
    return jnp.float32(max(scales.activations[key], 1e-12) / qmax(qtype))


def _qdense(p: Mapping[str, Any], qtype: str, w_amax, *, x_scale, out_scale=None) -> dict[str, Any]:
    """A `QuantDense`'s parameters: the packed weight, its bias folded into the epilogue vectors."""
    w = quantize_weight(p["kernel"], qtype, w_amax)
    bias = jnp.asarray(p["bias"], jnp.float32)
    return {"packed": pack_weight(w.values, w.scale, bias, x_scale=x_scale, out_scale=out_scale, qtype=qtype)}


def _quantize_layer(src: Mapping[str, Any], layer: dict[str, Any], i: int, mode: LayerMode, plan: Plan,
                    config: EncoderConfig, scales: Scales, divisors: Mapping[str, Any]) -> None:
    """Puts layer `i`'s 8-bit GEMMs (packed) and point scales into `layer`, its float parameters in the compute dtype.

    Every GEMM `mode` quantizes reads its input point's scale and writes its output points' codes
    (`samp_jax.quant.points.GEMMS`); every point's scale also goes to its scale parameters.
    """
    qt = mode.qtype
    assert qt is not None
    flow = dataflow(config.model_type)
    scale = {p.name: _scale(scales, p.key(i), qt) for p in points_for(mode, plan.probs)}
    for gemm in gemms_for(mode):
        outs = [] if gemm.name in flow.float_epilogue else [
            scale[p.name] * jnp.asarray(divisors[p.key(i)], jnp.float32) if p.key(i) in divisors else scale[p.name]
            for p in gemm.output_points]
        out_scale = None
        if len(outs) == 1:
            out_scale = outs[0]
        elif outs:  # one scale per output column: Q, K and V each over their third of the columns
            out_scale = jnp.repeat(jnp.stack(outs), gemm.out_features(config) // len(outs))
        set_path(layer, gemm.name, _qdense(get_path(src, gemm.name), qt, scales.weights.get(gemm.key(i)),
                                       x_scale=scale[gemm.input_point.name], out_scale=out_scale))
    for name, value in scale.items():
        for path in BY_NAME[name].scale_params + flow.extra_scale_params.get(name, ()):
            set_path(layer, path, value)


def build_params(params: Mapping[str, Any], config: EncoderConfig, plan: Plan, scales: Scales | None) -> dict:
    """The parameter tree `EncoderWithHead(config, task, plan)` applies."""
    check_plan(plan, config, scales)
    divisors: dict[str, Any] = {}
    if plan.smooth:  # outliers migrated into the weights; the residual stream quantized per channel
        assert scales is not None  # check_plan: a smooth: plan needs per-channel ranges
        params, scales, divisors = smoothing.migrate(params, config, plan, scales)
    out = cast_params(params, plan.compute_dtype)
    enc = out["encoder"]
    if plan.embedding != "float":
        assert scales is not None  # check_plan: an 8-bit embedding needs layer 0's input scale
        set_path(enc, EMBEDDING_INPUT_SCALE, _scale(scales, INPUT.key(0), plan.embedding))
    for i, mode in enumerate(plan.modes):
        if mode.quantizes_ffn:
            assert scales is not None  # check_plan: a quantized layer needs its points' scales
            enc[f"layer_{i}"] = dict(enc[f"layer_{i}"])
            _quantize_layer(params["encoder"][f"layer_{i}"], enc[f"layer_{i}"], i, mode, plan, config, scales, divisors)
    for i in range(config.num_layers):  # the LayerNorm before a full_* layer writes that layer's input codes
        nxt = plan.input_codes(i + 1)
        if nxt is not None and dataflow(config.model_type).next_input_codes:
            assert scales is not None
            set_path(enc, f"layer_{i}/{NEXT_INPUT_SCALE}", _scale(scales, INPUT.key(i + 1), nxt))
    for key, s in divisors.items():  # the residual LayerNorms dequantize a smoothed point per channel
        i, point = parse_key(key)
        if point.name not in RESIDUAL_SCALE:
            continue
        qt = plan.modes[i].qtype
        assert scales is not None and qt is not None
        set_path(enc, f"layer_{i}/{RESIDUAL_SCALE[point.name]}", _scale(scales, key, qt) * jnp.asarray(s, jnp.float32))
    return out
