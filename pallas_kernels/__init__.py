"""Fused ops for samp-jax, one folder per op, over a shared kernel layer.

Each op folder holds its public function and dispatch (`api.py`), its plain-XLA
reference (`base.py`, the specification and the fallback), thin kernel adapters,
and tests. The shared layer beneath them holds what kernels share (the Mosaic
GEMM engine in `gemm/`, activations, dispatch, launch, the device's properties);
`fused/` above them composes ops whose kernels cooperate (a GEMM whose partial
products a LayerNorm sums). Model code calls the functions re-exported here,
never a kernel.
"""

from pallas_kernels._dispatch import IMPLEMENTATIONS, Implementation, xla_only
from pallas_kernels._platform import default_device, interpret_kernels
from pallas_kernels.activations import ACTIVATIONS
from pallas_kernels.attention.api import attention, attention_packed
from pallas_kernels.embedding.api import embedding_layer_norm
from pallas_kernels.flash.reference import allowed_keys
from pallas_kernels.fused import Codes, dense_residual_layer_norm, quantized_dense_residual_layer_norm
from pallas_kernels.layer_norm.api import residual_layer_norm
from pallas_kernels.matmul.api import matmul
from pallas_kernels.quant_types import QTYPES, dequantize_values, is_codes, qmax, quantize_values
from pallas_kernels.quantized_attention.api import quantized_attention, quantized_attention_packed
from pallas_kernels.quantized_attention.base import PROBS_MODES
from pallas_kernels.quantized_matmul.api import PackedWeight, pack_weight, quantized_matmul, quantized_matmul_packed

__all__ = [
    "ACTIVATIONS",
    "IMPLEMENTATIONS",
    "PROBS_MODES",
    "QTYPES",
    "Codes",
    "Implementation",
    "PackedWeight",
    "allowed_keys",
    "attention",
    "attention_packed",
    "default_device",
    "dense_residual_layer_norm",
    "dequantize_values",
    "embedding_layer_norm",
    "interpret_kernels",
    "is_codes",
    "matmul",
    "pack_weight",
    "qmax",
    "quantized_attention",
    "quantized_attention_packed",
    "quantized_dense_residual_layer_norm",
    "quantized_matmul",
    "quantized_matmul_packed",
    "quantize_values",
    "residual_layer_norm",
    "xla_only",
]
