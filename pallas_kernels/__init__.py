"""Fused ops for samp-jax, one folder per op.

Each op folder holds its public function and dispatch (`api.py`), its plain-XLA
reference (`base.py`, the specification and the fallback), Pallas kernels as they
land, and tests. Model code calls the functions re-exported here, never a kernel.
"""

from pallas_kernels._dispatch import IMPLEMENTATIONS, Implementation, xla_only
from pallas_kernels._platform import interpret_kernels
from pallas_kernels.attention.api import attention, attention_packed
from pallas_kernels.embedding.api import embedding_layer_norm
from pallas_kernels.layer_norm.api import residual_layer_norm
from pallas_kernels.matmul.api import matmul
from pallas_kernels.quantized_attention.api import quantized_attention, quantized_attention_packed
from pallas_kernels.quantized_matmul.api import PackedWeight, pack_weight, quantized_matmul, quantized_matmul_packed

__all__ = [
    "IMPLEMENTATIONS",
    "Implementation",
    "PackedWeight",
    "attention",
    "attention_packed",
    "embedding_layer_norm",
    "interpret_kernels",
    "matmul",
    "pack_weight",
    "quantized_attention",
    "quantized_attention_packed",
    "quantized_matmul",
    "quantized_matmul_packed",
    "residual_layer_norm",
    "xla_only",
]
