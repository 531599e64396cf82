"""Calibration: activation observers and the four calibrators of NVIDIA's pytorch-quantization."""

from samp_jax.calibration.calibrators import METHODS, HistogramCalibrator, MaxCalibrator, make_calibrator
from samp_jax.calibration.observe import Observable, calibrate, calibrate_batches, read_texts

__all__ = ["METHODS", "HistogramCalibrator", "MaxCalibrator", "Observable", "calibrate", "calibrate_batches",
           "make_calibrator", "read_texts"]
