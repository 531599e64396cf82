"""Outlier migration for `smooth:` plans: the residual stream quantized per channel, its outliers moved into weights.

BERT's residual stream and its FFN activation have a few outlier channels (Bondarenko et al., 2021), so one
scale per tensor leaves the other channels a handful of levels. In a `full_*` layer three points are smoothed
(`points.CHANNEL_POINTS`): two LayerNorm outputs written as 8-bit codes, the layer's `input` (read by the QKV
GEMM and the attention residual) and its `attention_output` (read by the FFN's first GEMM and the FFN
residual), and the activation (GELU) output the FFN's first GEMM writes for its second. With migration
strength alpha, channel j of such a point `x` is divided by

    s_j = amax_j ** alpha / wmax_j ** (1 - alpha)

(SmoothQuant; `amax_j` its calibrated max |x_j|, `wmax_j` the max |w| of row j of the GEMM reading it), and

- the LayerNorm writing `x` has its gamma and beta divided by s (the embedding's LayerNorm, or its projection's
  columns, for layer 0's input), so it writes the codes of `x / s` with one per-tensor scale, `max_j(amax_j /
  s_j) / qmax`: no kernel of the producer changes; the GEMM writing the activation takes that scale times s
  as its per-column output scale (its epilogue has one per column anyway);
- the GEMM reading it has weight row j multiplied by s_j before its per-output-channel quantization, so its
  product is unchanged in exact arithmetic;
- the residual LayerNorm dequantizes the codes with the vector `scale * s` (`RESIDUAL_SCALE` parameters): the
  8-bit residual is quantized per channel at the cost of a vector load.

Inside the attention, balancing Q against K per channel and moving V's outliers into the output projection
(both exact, in the weights alone) were measured too and left out: on MiniLM's held-out MRPC and SST-2 they
did not lower the output error (docs/quantization.md).

alpha = 0 moves all of the spread into the activations (every weight row scaled to max |w| = 1); alpha = 1
gives each activation channel the whole 8-bit range and moves all of the spread into the weights. The
strength is chosen on held-out data (`bench/smooth_accuracy.py`). Only BERT's dataflow takes it:
DeBERTa's disentangled terms reuse the QKV weights against unsmoothed position embeddings, and ModernBERT
normalizes each layer's input itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from samp_jax.config import EncoderConfig
from samp_jax.plan import Plan
from samp_jax.quant.points import (
    ACTIVATION,
    ATTENTION_OUTPUT,
    FFN_INTERMEDIATE,
    FFN_OUT,
    INPUT,
    QKV,
)
from samp_jax.quant.scales import Scales
from samp_jax.quant.tree import get_path, set_path

# below this share of the largest channel a channel's max counts as this share: a channel never active in the
# calibration data (amax 0) would otherwise get s = 0 and divide by zero
FLOOR = 1e-5
UNSMOOTHABLE = ("deberta-v2", "modernbert")


def factors(channel_amax: np.ndarray, weight: np.ndarray, alpha: float) -> np.ndarray:
    """SmoothQuant's per-channel divisors `s` for an activation with per-channel max `channel_amax` `[K]` read by
    a GEMM with kernel `weight` `[K, N]`."""
    a = np.asarray(channel_amax, np.float64)
    w = np.max(np.abs(np.asarray(weight, np.float64)), axis=1)
    a = np.maximum(a, FLOOR * max(a.max(), 1e-30))
    w = np.maximum(w, FLOOR * max(w.max(), 1e-30))
    return (a**alpha / w ** (1.0 - alpha)).astype(np.float32)


def check(plan: Plan, config: EncoderConfig, scales: Scales | None) -> None:
    """ValueError naming what a `smooth:` plan needs and the model or its scales lack."""
    if not plan.smooth:
        return
    if config.model_type in UNSMOOTHABLE:
        raise ValueError(f"plan {plan}: smooth: is not supported for model_type {config.model_type!r} "
                         f"({', '.join(UNSMOOTHABLE)} are not; see samp_jax.quant.smoothing)")
    have = scales.channels if scales is not None else {}
    missing = [p.key(i) for i in range(config.num_layers) if plan.smooths(i)
               for p in (INPUT, ATTENTION_OUTPUT, ACTIVATION) if p.key(i) not in have]
    if missing:
        raise ValueError(f"plan {plan} needs per-channel activation ranges the checkpoint's scales lack; calibrate "
                         f"again with `samp-jax calibrate` (imported amax values carry none): {', '.join(missing)}")


def migrate(params: Mapping[str, Any], config: EncoderConfig, plan: Plan,
            scales: Scales) -> tuple[dict[str, Any], Scales, dict[str, np.ndarray]]:
    """The float parameters and scales with the plan's outliers migrated, and the per-channel divisors.

    Returns `(params, scales, divisors)`: the LayerNorms writing each smoothed point divided by s, the GEMMs
    reading it with rows multiplied by s, the point's per-tensor amax `max(amax / s)`, and `divisors` keyed by
    point (`layer_3/input`): the build makes them the residual LayerNorms' scale vectors and the activation
    GEMM's per-column output scales. Imported weight amax of the GEMMs whose rows change are dropped (they no longer
    describe the weights). `params` and `scales` are left as they were.
    """
    alpha = plan.smooth_alpha
    assert alpha is not None
    out: dict[str, Any] = dict(params)
    activations, weights = dict(scales.activations), dict(scales.weights)
    divisors: dict[str, np.ndarray] = {}
    enc = "encoder"
    for i in range(config.num_layers):
        if not plan.smooths(i):
            continue
        for point, gemm, producers in (
            (INPUT, QKV, _input_producers(config, i)),
            (ATTENTION_OUTPUT, FFN_INTERMEDIATE, ((f"layer_{i}/attention/layer_norm", "ln"),)),
            (ACTIVATION, FFN_OUT, ()),  # written by ffn/intermediate's epilogue: the build scales its columns
        ):
            key = point.key(i)
            kernel_path = f"{enc}/layer_{i}/{gemm.name}/kernel"
            kernel = np.asarray(get_path(out, kernel_path), np.float32)
            s = factors(scales.channels[key], kernel, alpha)
            set_path(out, kernel_path, kernel * s[:, None])
            for module, kind in producers:
                if kind == "ln":  # gamma and beta: the LayerNorm's output divided by s
                    for name in ("scale", "bias"):
                        path = f"{enc}/{module}/{name}"
                        set_path(out, path, np.asarray(get_path(out, path), np.float32) / s)
                else:  # a Dense (ELECTRA's embedding projection): its output columns divided by s
                    kpath, bpath = f"{enc}/{module}/kernel", f"{enc}/{module}/bias"
                    set_path(out, kpath, np.asarray(get_path(out, kpath), np.float32) / s[None, :])
                    set_path(out, bpath, np.asarray(get_path(out, bpath), np.float32) / s)
            activations[key] = float(max((scales.channels[key] / s).max(), 1e-12))  # channels are >= 0 (Scales)
            weights.pop(gemm.key(i), None)
            divisors[key] = s
    migrated = Scales(activations, weights, f"{scales.method},smooth:{plan.smooth}", scales.source, scales.channels)
    return out, migrated, divisors


def _input_producers(config: EncoderConfig, i: int) -> tuple[tuple[str, str], ...]:
    """The module that writes layer `i`'s input codes: the previous layer's FFN LayerNorm, or for layer 0 the
    embedding's LayerNorm (its projection, where the model has one)."""
    if i > 0:
        return ((f"layer_{i - 1}/ffn/layer_norm", "ln"),)
    if config.has_embedding_projection:
        return (("embeddings/project", "dense"),)
    return (("embeddings/layer_norm", "ln"),)
