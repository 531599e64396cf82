"""The 8-bit formats and their reference rounding: the specification every quantized op and kernel meets.

`scale = amax / qmax`; `q = clip(round(x * (1 / scale)), -qmax, qmax)` for the integer
formats (symmetric, narrow range as NVIDIA's quantizers use: -127..127), and a
saturating cast for fp8 e4m3 (|x| <= 448). Exact integer products of codes
(`exact_int_einsum`, `dot_8bit`) are part of the specification. How kernels spell
the same rounding in fewer instructions lives in `quant_kernel`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

QTYPES = {
    "int8": (jnp.int8, 127.0),
    "uint8": (jnp.uint8, 255.0),  # non-negative tensors only (softmax probabilities)
    "fp8": (jnp.float8_e4m3fn, 448.0),
}


def qmax(qtype: str) -> float:
    return QTYPES[qtype][1]


def is_codes(x: jax.Array) -> bool:
    """Whether `x` holds 8-bit codes (int8, uint8 or fp8 e4m3) rather than float values."""
    return jnp.dtype(x.dtype) in (jnp.dtype(jnp.int8), jnp.dtype(jnp.uint8), jnp.dtype(jnp.float8_e4m3fn))


def quantize_values(x: jax.Array, scale: jax.Array, qtype: str) -> jax.Array:
    """Rounds `x / scale` into `qtype` (saturating); `scale` broadcasts against `x`.

    Computed as `x * (1 / scale)`: one reciprocal per scale and a multiply per
    element, the form every kernel can afford in its epilogue (a float32
    division is a ten-instruction sequence on the GPU). It differs from a true
    division by at most one float32 ulp before rounding.
    """
    return quantize_scaled(x, 1.0 / scale.astype(jnp.float32), qtype)


def quantize_scaled(x: jax.Array, inv_scale: jax.Array, qtype: str) -> jax.Array:
    """Rounds `x * inv_scale` into `qtype` (saturating): `quantize_values` with the reciprocal already taken."""
    dtype, top = QTYPES[qtype]
    y = x.astype(jnp.float32) * inv_scale.astype(jnp.float32)
    if qtype == "fp8":
        return round_to_e4m3(y).astype(dtype)
    low = 0.0 if qtype == "uint8" else -top
    return jnp.clip(jnp.round(y), low, top).astype(dtype)


def round_to_e4m3(y: jax.Array) -> jax.Array:
    """float32 `y` rounded to nearest-even onto e4m3's grid, saturating at +-448; the cast after is exact.

    Equal to XLA's saturating round-to-nearest-even cast (checked on a million
    values and every tie), spelled in integer bit operations so that the
    result does not depend on how a kernel compiler lowers f32 -> e4m3.
    Normals keep 3 of float32's 23 mantissa bits; e4m3's subnormals (below
    2^-6) sit on a 2^-9 grid.
    """
    y = jnp.clip(y, -448.0, 448.0)
    bits = jax.lax.bitcast_convert_type(y, jnp.int32)
    keep = (bits + 0x7FFFF + ((bits >> 20) & 1)) & -0x100000  # RNE, dropping 20 mantissa bits
    normal = jax.lax.bitcast_convert_type(keep, jnp.float32)
    sub = jnp.round(y * 512.0) * (1.0 / 512.0)
    return jnp.clip(jnp.where(jnp.maximum(y, -y) < 2.0**-6, sub, normal), -448.0, 448.0)


def dequantize_values(x_q: jax.Array, scale: jax.Array, dtype=jnp.float32) -> jax.Array:
    """`x_q * scale` in `dtype`.

    XLA's excess-precision simplification (on by default on the GPU) deletes an
    f32 -> fp8 -> f32 conversion pair, silently skipping the quantization: on
    the H100 every code of a requantized tensor would differ from the CPU's
    (tests/test_gpu_parity.py). The barrier between the 8-bit value and its
    up-cast keeps it.
    """
    if x_q.dtype == jnp.float8_e4m3fn:
        x_q = jax.lax.optimization_barrier(x_q)
    return (x_q.astype(jnp.float32) * scale.astype(jnp.float32)).astype(dtype)


def exact_int_einsum(spec: str, a: jax.Array, b: jax.Array, contract_len: int, max_code_product: float) -> jax.Array:
    """`einsum` of integer codes, exactly, through float32 at full precision.

    Every partial sum of `contract_len` products, each at most
    `max_code_product` in magnitude, is an integer below 2^24, so float32
    represents it exactly. Used for the attention products: XLA's batched
    int8 dots on the GPU returned wrong values for some layouts
    (bench/gpu_dot_checks.py), and exact integers are the specification.
    """
    if contract_len * max_code_product >= 2**24:
        raise NotImplementedError(
            f"{contract_len} products of up to {max_code_product:g} can exceed 2^24: not exact in float32"
        )
    return jnp.einsum(spec, a.astype(jnp.float32), b.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)


def accumulator_dtype(qtype: str):
    """Exact integer accumulation for int8/uint8, float32 for fp8."""
    return jnp.float32 if qtype == "fp8" else jnp.int32


def dot_8bit(spec: str, a: jax.Array, b: jax.Array, contract: tuple[int, int], qtype: str) -> jax.Array:
    """`jnp.einsum(spec, a, b)` on 8-bit operands with an int32 (int8) or float32 (fp8) accumulator.

    XLA on the GPU (jax 0.11.2, H100; bench/gpu_dot_checks.py) returns exactly
    twice the true int8 x int8 -> int32 product when the contraction length is
    not a multiple of 4. Integer operands are therefore zero-padded along the
    contracted axes (`contract`: that axis in `a` and in `b`) to a multiple of 4,
    which leaves the sum unchanged.
    """
    (ax_a, ax_b), k = contract, a.shape[contract[0]]
    if qtype != "fp8" and k % 4:
        pad = 4 - k % 4
        a = jnp.pad(a, [(0, pad) if i == ax_a else (0, 0) for i in range(a.ndim)])
        b = jnp.pad(b, [(0, pad) if i == ax_b else (0, 0) for i in range(b.ndim)])
    return jnp.einsum(spec, a, b, preferred_element_type=accumulator_dtype(qtype))
