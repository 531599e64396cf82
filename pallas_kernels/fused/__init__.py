"""Fused ops over the op layer: several kernels computing one step of a model, and the protocol between them.

Ops (pallas_kernels/<op>/) never import this package; it imports their public APIs.
"""

from pallas_kernels.fused.dense_layer_norm import Codes, dense_residual_layer_norm, quantized_dense_residual_layer_norm

__all__ = ["Codes", "dense_residual_layer_norm", "quantized_dense_residual_layer_norm"]
