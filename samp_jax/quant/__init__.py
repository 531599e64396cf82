"""Quantization core: quantized tensors, scales, calibration and plan building."""
