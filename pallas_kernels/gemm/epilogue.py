"""The GEMM epilogue's math, in jnp: what the 8-bit GEMM's reference computes and every kernel runs on its tiles.

    y = act(acc * col_scale + bias)      -> cast to out_dtype, or requantize to 8 bits

No Mosaic GPU import here: the op references use it on any backend.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from pallas_kernels.activations import ACTIVATIONS
from pallas_kernels.quant_kernel import quantize_in_kernel
from pallas_kernels.quant_types import quantize_scaled


@dataclasses.dataclass(frozen=True)
class Epilogue:
    """What a GEMM kernel does to its accumulator before storing it (static: part of the kernel's key).

    Attributes:
      activation: a key of `activations.KERNEL_ACTIVATIONS` (float outputs) or `REQUANT_ACTIVATIONS`
        (requantized outputs), or None.
      has_bias: add the bias row of the epilogue vectors.
      has_scale: multiply by the column-scale row (8-bit GEMMs: dequantization); float GEMMs have none.
      requantize: write 8-bit `out_qtype` codes with the reciprocal-output-scale row.
      out_qtype: "int8" or "fp8", the codes' type where `requantize`.
    """

    activation: str | None = None
    has_bias: bool = True
    has_scale: bool = True
    requantize: bool = False
    out_qtype: str | None = None

    def __post_init__(self) -> None:
        if self.requantize and (not self.has_scale or self.out_qtype not in ("int8", "fp8")):
            raise ValueError(f"Epilogue: requantize=True needs has_scale and out_qtype 'int8' or 'fp8', got {self}")

    @property
    def linear(self) -> bool:
        """Whether partial products through it sum to the whole product's (no activation, no requantization)."""
        return self.activation is None and not self.requantize


def vector_rows(has_scale: bool) -> dict[str, int]:
    """Rows of the `[rows, N]` epilogue vectors: 8-bit GEMMs carry column scale, bias and reciprocal output
    scale (`quantized_matmul.PackedWeight.vectors`); float GEMMs only a bias."""
    return {"scale": 0, "bias": 1, "inv_scale": 2} if has_scale else {"bias": 0}


def epilogue(acc: jax.Array, col_scale: jax.Array | None, bias: jax.Array | None, *, activation: str | None,
             out_inv_scale: jax.Array | None, out_qtype: str | None, out_dtype, activations=ACTIVATIONS,
             in_kernel: bool = False, cast_saturates: bool = False) -> jax.Array:
    """The fused epilogue on an accumulator (or a tile of it), in float32.

    `col_scale`, `bias` and `out_inv_scale` are `[N]` (or a tile of it) and broadcast over rows; `col_scale`
    None: a float GEMM, nothing to dequantize; `out_inv_scale` (the reciprocal output scale) set means
    requantize to `out_qtype`. Kernels whose compiler lacks an op pass their own `activations`
    (`activations.KERNEL_ACTIVATIONS`). `in_kernel`: requantize by `quantize_in_kernel`'s conversion-free
    forms, code for code equal to the reference's `quantize_scaled`; `cast_saturates`: `quantize_in_kernel`'s.
    """
    y = acc.astype(jnp.float32)
    if col_scale is not None:
        y = y * col_scale
    if bias is not None:
        y = y + bias.astype(jnp.float32)
    if activation is not None:
        if activation not in activations:
            raise NotImplementedError(f"{activation=} has no in-kernel form here")
        y = activations[activation](y)
    if out_inv_scale is not None:
        if out_qtype is None:
            raise ValueError("epilogue: requantizing (out_inv_scale set) needs an out_qtype")
        if in_kernel:
            return quantize_in_kernel(y, out_inv_scale, out_qtype, cast_saturates=cast_saturates)
        return quantize_scaled(y, out_inv_scale, out_qtype)
    return y.astype(out_dtype)
