"""Builds the parameter tree of a plan: float params + scales -> what the modules consume.

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

from pallas_kernels import pack_weight
from pallas_kernels.quant_types import qmax
from samp_jax.config import EncoderConfig
from samp_jax.plan import Plan, mode_qtype
from samp_jax.quant.points import point, required_points
from samp_jax.quant.qarray import quantize_weight
from samp_jax.quant.scales import Scales

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
    for i, mode in enumerate(plan.layers):
        missing += [f"layer {i} ({mode}): {p}" for p in required_points(i, mode, plan.probs) if p not in have]
    if plan.embedding != "float" and point(0, "input") not in have:
        missing.append(f"embedding ({plan.embedding}): {point(0, 'input')}")
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


def _scale(scales: Scales, name: str, qtype: str) -> jax.Array:
    return jnp.float32(max(scales.activations[name], 1e-12) / qmax(qtype))


def _qdense(p: Mapping[str, Any], qtype: str, w_amax, *, x_scale, out_scale=None) -> dict[str, Any]:
    """A `QuantDense`'s parameters: the packed weight, its bias folded into the epilogue vectors."""
    w = quantize_weight(p["kernel"], qtype, w_amax)
    bias = jnp.asarray(p["bias"], jnp.float32)
    return {"packed": pack_weight(w.values, w.scale, bias, x_scale=x_scale, out_scale=out_scale, qtype=qtype)}


def build_params(params: Mapping[str, Any], config: EncoderConfig, plan: Plan, scales: Scales | None) -> dict:
    """The parameter tree `EncoderWithHead(config, task, plan)` applies."""
    check_plan(plan, config, scales)
    out = cast_params(params, plan.compute_dtype)
    enc = out["encoder"]
    if plan.embedding != "float":
        enc["embeddings"] = {**enc["embeddings"], "output_scale": _scale(scales, point(0, "input"), plan.embedding)}
    for i, mode in enumerate(plan.layers):
        qt = mode_qtype(mode)
        if qt is None:
            continue
        src = params["encoder"][f"layer_{i}"]
        layer = enc[f"layer_{i}"]

        def w(gemm: str, i: int = i):  # imported weight amax, if any
            return scales.weights.get(f"layer_{i}/{gemm}")

        def s(name: str, i: int = i, qt: str = qt):
            return _scale(scales, point(i, name), qt)

        ffn_in, act = s("attention_output"), s("ffn/activation")
        layer["ffn"] = {
            "input_scale": ffn_in,
            "intermediate": _qdense(src["ffn"]["intermediate"], qt, w("ffn/intermediate"), x_scale=ffn_in,
                                    out_scale=act),
            "output": _qdense(src["ffn"]["output"], qt, w("ffn/output"), x_scale=act),
            "layer_norm": layer["ffn"]["layer_norm"],
        }
        if not mode.startswith("full_"):  # the float attention's LayerNorm also writes the FFN's codes
            layer["attention"] = {**layer["attention"], "output_scale": ffn_in}
        else:
            attn_in, q, k, v = s("input"), s("attention/q"), s("attention/k"), s("attention/v")
            ctx = s("attention/context")
            attn = {
                "input_scale": attn_in,
                "q_scale": q,
                "k_scale": k,
                "v_scale": v,
                "context_scale": ctx,  # the attention kernel writes the context as codes
                "output_scale": ffn_in,  # the residual LayerNorm writes the FFN's 8-bit input
                "qkv": _qdense(src["attention"]["qkv"], qt, w("attention/qkv"), x_scale=attn_in,
                               out_scale=jnp.repeat(jnp.stack([q, k, v]), config.hidden_size)),
                "output": _qdense(src["attention"]["output"], qt, w("attention/output"), x_scale=ctx),
                "layer_norm": layer["attention"]["layer_norm"],
            }
            if plan.probs == "int8":
                attn["probs_scale"] = s("attention/probs")
            layer["attention"] = attn
    for i in range(config.num_layers):  # the LayerNorm before a full_* layer writes that layer's input codes
        nxt = plan.input_codes(i + 1)
        if nxt is not None:
            ffn = enc[f"layer_{i}"]["ffn"]
            enc[f"layer_{i}"]["ffn"] = {**ffn, "next_input_scale": _scale(scales, point(i + 1, "input"), nxt)}
    return out
