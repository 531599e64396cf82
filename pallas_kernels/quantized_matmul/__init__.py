"""8-bit GEMM with its epilogue fused: `quantized_matmul`, and the packed form a served model calls."""

from pallas_kernels.quantized_matmul.api import PackedWeight, pack_weight, quantized_matmul, quantized_matmul_packed

__all__ = ["PackedWeight", "pack_weight", "quantized_matmul", "quantized_matmul_packed"]
