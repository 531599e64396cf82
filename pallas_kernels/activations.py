"""Activation functions: the references by Hugging Face `hidden_act` name, and the forms GEMM epilogues compute.

`ACTIVATIONS` is the specification (the references and the XLA path run it). A GEMM epilogue runs
its own form of an activation where the compiler lacks an op or the epilogue is instruction-bound:
`KERNEL_ACTIVATIONS` for float outputs, `REQUANT_ACTIVATIONS` for outputs requantized to 8 bits,
each within a stated bound of the reference (the bounds are what the tests check).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp


def gelu_tanh(x: jax.Array) -> jax.Array:
    """GELU's tanh approximation (`gelu_new`)."""
    return jax.nn.gelu(x, approximate=True)


def gelu_erf(x: jax.Array) -> jax.Array:
    """The exact GELU, `x Phi(x)`, by erf: Mosaic GPU lowers erf but not erfc, and kernels and reference
    must run the same formula."""
    return 0.5 * x * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))


def quick_gelu(x: jax.Array) -> jax.Array:
    return x * jax.nn.sigmoid(1.702 * x)


# Names follow Hugging Face's `hidden_act` values so configs map one to one.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": gelu_erf,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_tanh,
    "quick_gelu": quick_gelu,
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}

# ln erfc(a / sqrt 2) = a * q(a) on 0 <= a <= 6: q of degree 8, fitted by least squares weighted by GELU's
# sensitivity to it (0.5 a erfc(a / sqrt 2)) on 400k points; q(0) is -sqrt(2 / pi), erfc's slope.
_GELU_Q = (-0.7978860139846802, -0.31829676032066345, -0.036381084471940994, 0.004862498492002487,
           -4.2523253796389326e-05, -0.00016895750013645738, 4.332652679295279e-05, -5.213066742726369e-06,
           2.6052245516439143e-07)
_GELU_CLAMP = 6.0
# log2(0.5 erfc(a / sqrt 2)) = -1 + log2(e) a q(a): a degree-9 polynomial in a, so one exp2 gives half of
# erfc with no multiply before it (Mosaic GPU's exp is a multiply by log2(e) and `ex2.approx`)
_GELU_P2 = (-1.0, *(c * math.log2(math.e) for c in _GELU_Q))


def gelu_one_exp(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU from one exp2, max/min, a select and FMAs: `x (1 - h)` for `x >= 0`, `x h` below,
    with `h = 0.5 erfc(|x| / sqrt 2)`.

    `log2 h = -1 + log2(e) |x| q(|x|)` with `|x|` clamped at 6 (where erfc is 2e-9). Against float64 the
    fit's |error| is <= 3e-8 on [-8, 8] (the tests bound it, with float32 rounding, on [-12, 12]): an
    absolute bound, the one requantization cares about. Mosaic GPU (jax 0.11.2) has no layout rule for
    `math.erf`; this form compiles there, and it issues one special-function instruction per output
    (`ex2.approx`) where Abramowitz & Stegun's erf takes two (`rsqrt`, `ex2`). Those issue at an eighth
    of the FMA rate, and the FFN1 GEMM's GELU epilogue is instruction-bound.
    """
    a = jnp.minimum(jnp.maximum(x, -x), _GELU_CLAMP)
    p = a * _GELU_P2[-1] + _GELU_P2[-2]
    for c in _GELU_P2[-3::-1]:
        p = p * a + c
    h = jnp.exp2(p)
    return x * jnp.where(x >= 0, 1.0 - h, h)


# Phi(x) = (1 + tanh(u)) / 2 with u = atanh(erf(x / sqrt 2)) = x r(x^2): r of degree 2, least squares on
# 0 <= x <= 5 weighted by GELU's sensitivity to u (x sech^2 u / 2); |x| past 5 is clamped inside r (tanh is
# 1 - 1e-10 there). With an exact tanh, |GELU error| <= 3.0e-5.
_GELU_TANH_R = (0.7974578184174319, 0.03705103484568741, -0.00035886744000445346)
_GELU_TANH_CLAMP = 25.0
# |GELU error| <= a |x| + b on the H100 (tanh.approx.f32 is within 2^-10.987 relative): the bound the GPU test
# checks (gemm/test_epilogue.py) and the requantized GEMM tests allow for
GELU_TANH_ERROR = (2.5e-4, 3.1e-5)


def gelu_tanh_fit(x: jax.Array) -> jax.Array:
    """The exact (erf) GELU from one hardware `tanh` and five FMAs, for epilogues that requantize to 8 bits.

    `x (1 + tanh(x r(x^2))) / 2` with a fitted quadratic `r` (`_GELU_TANH_R`). With approximate math
    Mosaic GPU issues `tanh.approx.f32`, whose relative error (2^-11) sets the bound `GELU_TANH_ERROR`:
    at most a quarter of a thousandth of |x|, about 3% of an int8 step where |x| is the tensor's largest
    value, so an output code moves by at most one, and rarely. It issues 10 fewer instructions per output
    than `gelu_one_exp`, and the requantizing FFN1 epilogue is instruction-bound (bench/RESULTS.md, GEMM
    table). Float outputs keep `gelu_one_exp`, whose 3e-8 is below their rounding.
    """
    z = jnp.minimum(x * x, _GELU_TANH_CLAMP)
    r = (z * _GELU_TANH_R[2] + _GELU_TANH_R[1]) * z + _GELU_TANH_R[0]
    return x * (0.5 + 0.5 * jnp.tanh(x * r))


# The activations the fused GEMM kernels compute in their epilogue: to a float output, and to one
# requantized to 8 bits (the Mosaic GEMM folds the output scale into the latter: gelu_scaled below).
KERNEL_ACTIVATIONS = {"gelu": gelu_one_exp}
REQUANT_ACTIVATIONS = {"gelu": gelu_tanh_fit}

# |gelu_scaled(x, h) / (2 h) - GELU(x)| <= a |x| + b in float16 with the H100's `tanh.approx.f16x2`: the bound
# the GPU test checks (gemm/test_epilogue.py) and the requantized GEMM tests allow for (in float32 it is
# GELU_TANH_ERROR)
HALF_GELU_ERROR = (3.0e-3, 6.0e-5)


def gelu_scaled(x: jax.Array, half_inv_scale: jax.Array, top: float, tanh: Callable[[jax.Array], jax.Array] = jnp.tanh,
                dtype=jnp.float16, clip: bool = True) -> jax.Array:
    """`clip(GELU(x) * inv_scale, -top, top)` for epilogues that requantize, computed in `dtype`.

    `gelu_tanh_fit`'s form with the output scale folded into its last step: `u t + u` with
    `u = x * half_inv_scale` (half the reciprocal output scale, per column) and `t = tanh(x r(x^2))`, two
    instructions fewer than GELU followed by a scale. The FFN1 epilogue is instruction-bound.

    float16 (int8 outputs): Mosaic GPU keeps a `wgmma` tile's values as pairs of neighbouring columns, so
    each half-precision instruction (`HFMA2`, `HMNMX2`, `tanh.approx.f16x2`) serves two outputs. The price
    is float16 rounding: `HALF_GELU_ERROR`, at most 0.3% of |x|, so a code moves by one step where the
    exact value lies within a few hundredths of a step of a rounding tie (0.4-1.5% of the codes in the
    GEMM tests, against 0.03% for float32). Such a move trades a rounding error just under half a step for
    one just over it, so the model's error against float32 does not grow (the GPU parity test checks it).
    float32 (fp8 outputs, whose steps are relative: float16 rounding moves 4-7% of their codes): within
    `GELU_TANH_ERROR`. `tanh`: the kernel passes the hardware's packed tanh for float16.
    `clip=False` where the cast that follows saturates by itself (fp8's `cvt.rn.satfinite`).
    """
    xh = x.astype(dtype)
    z = jnp.minimum(xh * xh, jnp.asarray(_GELU_TANH_CLAMP, dtype))
    r = (z * jnp.asarray(_GELU_TANH_R[2], dtype) + jnp.asarray(_GELU_TANH_R[1], dtype)) * z \
        + jnp.asarray(_GELU_TANH_R[0], dtype)
    u = xh * half_inv_scale.astype(dtype)
    q = u * tanh(xh * r) + u
    return jnp.clip(q, jnp.asarray(-top, dtype), jnp.asarray(top, dtype)) if clip else q
