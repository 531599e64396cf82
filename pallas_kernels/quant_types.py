"""The 8-bit formats shared by the quantized ops: storage dtype and largest magnitude.

`scale = amax / qmax`; `q = clip(round(x / scale), -qmax, qmax)` for the integer
formats (symmetric, narrow range as NVIDIA's quantizers use: -127..127), and a
saturating cast for fp8 e4m3 (|x| <= 448).
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


def quantize_values(x: jax.Array, scale: jax.Array, qtype: str) -> jax.Array:
    """Rounds `x / scale` into `qtype` (saturating); `scale` broadcasts against `x`."""
    dtype, top = QTYPES[qtype]
    y = x.astype(jnp.float32) / scale.astype(jnp.float32)
    if qtype == "fp8":
        return jnp.clip(y, -top, top).astype(dtype)
    low = 0.0 if qtype == "uint8" else -top
    return jnp.clip(jnp.round(y), low, top).astype(dtype)


def accumulator_dtype(qtype: str):
    """Exact integer accumulation for int8/uint8, float32 for fp8."""
    return jnp.float32 if qtype == "fp8" else jnp.int32
