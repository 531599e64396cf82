"""Quantization points: which tensors each per-layer mode quantizes.

Activation scales are static and per tensor, named by the tensor they observe
(`layer_{i}/...`). Weights are quantized per output channel from their own
max |w| unless amax values were imported.

| point                          | tensor                                   | ffn_* | full_* |
|--------------------------------|------------------------------------------|-------|--------|
| layer_{i}/input                | hidden state entering layer i: QKV GEMM  |       |   x    |
|                                | input and the attention residual         |       |        |
| layer_{i}/attention/q, k, v    | Q, K, V (after bias, before 1/sqrt(d))   |       |   x    |
| layer_{i}/attention/probs      | softmax output (only probs="int8")       |       |   x    |
| layer_{i}/attention/context    | attention output-projection GEMM input   |       |   x    |
| layer_{i}/attention_output     | attention LayerNorm output: FFN1 input   |   x   |   x    |
|                                | (and, in full_*, the FFN residual)       |       |        |
| layer_{i}/ffn/activation       | GELU output: FFN2 input                  |   x   |   x    |

Weights quantized: `ffn_*` the two FFN kernels; `full_*` also the QKV and
attention-output kernels. In `full_*` every residual is the dequantized 8-bit
tensor (8-bit data flows between fused kernels, SAMP's Figure 2); in `ffn_*`
the residual stays in the float compute dtype. The embedding output is
quantized with `layer_0/input` when the plan's embedding precision is 8-bit.
"""

from __future__ import annotations

FFN_POINTS = ("attention_output", "ffn/activation")
FULL_POINTS = ("input", "attention/q", "attention/k", "attention/v", "attention/context") + FFN_POINTS
PROBS_POINT = "attention/probs"
ALL_POINTS = FULL_POINTS + (PROBS_POINT,)


def point(layer: int, name: str) -> str:
    return f"layer_{layer}/{name}"


def required_points(layer: int, mode: str, probs: str) -> list[str]:
    """Activation scales a layer in `mode` needs."""
    if mode.startswith("ffn_"):
        return [point(layer, p) for p in FFN_POINTS]
    if mode.startswith("full_"):
        names = list(FULL_POINTS) + ([PROBS_POINT] if probs == "int8" else [])
        return [point(layer, p) for p in names]
    return []
