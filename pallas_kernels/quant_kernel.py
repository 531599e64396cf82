"""`quant_types`' rounding spelled for GPU kernels: the same codes, in the instructions a kernel can afford.

Kernels round without `round` (Pallas-Triton lowers none) and without float-to-int conversions (on Hopper
those run at an eighth of the FMA rate, and the 8-bit epilogues are instruction-bound): adding
`RNE_SHIFT = 1.5 * 2^23` to a float32 `|y| < 2^22` rounds it to nearest-even onto float32's integer grid,
where the shift's low 22 bits are zero, so the sum's low byte is the two's-complement code. Each function
here equals its `quant_types` counterpart value for value on its stated range (`test_quant_types.py`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels.quant_types import QTYPES

RNE_SHIFT = 1.5 * 2.0**23
HALF_RNE_SHIFT = 1536.0  # 1.5 * 2^10: float16's RNE_SHIFT, where its values step by one


def round_half_even_in_kernel(y: jax.Array, *, compiled: bool) -> jax.Array:
    """Nearest-even rounding of float32 `|y| < 2^22` (float32 result): `(y + RNE_SHIFT) - RNE_SHIFT`.

    Two IEEE adds, a fifth of the instructions of a truncation-based rounding. Triton does not reassociate
    float adds; XLA's simplifier folds the pair away, so outside a compiled kernel (`compiled=False`: the
    interpreter, XLA) an optimization barrier sits between them and the same two adds run.
    """
    shifted = y + RNE_SHIFT
    if not compiled:
        shifted = jax.lax.optimization_barrier(shifted)
    return shifted - RNE_SHIFT


def int_codes_in_kernel(y: jax.Array, qtype: str) -> jax.Array:
    """int8/uint8 codes of float32 `y`, already clipped to the code range, rounded to nearest-even.

    The low byte of `y + RNE_SHIFT`'s bits. With no subtraction there is nothing for a compiler to fold, so
    the same form runs compiled and interpreted.
    """
    bits = jax.lax.bitcast_convert_type(y + RNE_SHIFT, jnp.int32)
    return bits.astype(QTYPES[qtype][0])  # truncation to the low byte


def int8_codes_from_half(q: jax.Array) -> jax.Array:
    """int8 codes of float16 `q`, already clipped to [-127, 127], rounded to nearest-even.

    `q + 1536` rounds (one half-precision add, two values per instruction) onto float16's integer grid,
    where the low byte of its bits is the code, as `int_codes_in_kernel` does in float32. The interpreter's
    form of the compiled epilogue's byte permute (`gemm.store.int8_codes_from_pairs`): XLA's GPU compiler does
    not keep the float16 add's rounding (H200, 2026-12-07: 8161 of 8192 codes wrong), so no XLA path on a
    GPU takes it.
    """
    bits = jax.lax.bitcast_convert_type(q + jnp.float16(HALF_RNE_SHIFT), jnp.int16)
    return bits.astype(jnp.int8)  # truncation to the low byte


def quantize_in_kernel(x: jax.Array, inv_scale, qtype: str, *, cast_saturates: bool = False) -> jax.Array:
    """`quant_types.quantize_scaled`, code for code: integer codes by `int_codes_in_kernel`, fp8 by the
    hardware's round-to-nearest-even cast (equal to `round_to_e4m3`, one instruction where that bit form is
    about ten). `cast_saturates`: the fp8 cast clips to +-448 itself (Mosaic GPU's `cvt.rn.satfinite`), so no
    clip goes before it; XLA's cast gives NaN past 448."""
    dtype, top = QTYPES[qtype]
    y = x.astype(jnp.float32) * inv_scale
    if qtype == "fp8":
        return (y if cast_saturates else jnp.clip(y, -top, top)).astype(dtype)
    return int_codes_in_kernel(jnp.clip(y, 0.0 if qtype == "uint8" else -top, top), qtype)
