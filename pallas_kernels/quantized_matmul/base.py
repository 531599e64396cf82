"""Reference for the 8-bit GEMM with its epilogue fused.

    y = act((x_q @ w_q) * x_scale * w_scale + bias)      [-> requantize]

int8 operands accumulate exactly in int32 (`preferred_element_type=jnp.int32`),
fp8 e4m3 operands in float32; the epilogue runs in float32: per-tensor
activation scale times per-column weight scale, bias, activation, then either a
cast to `out_dtype` or a requantization to 8 bits with `out_scale` (what a
kernel writes when the next kernel consumes 8-bit data).

Serving packs each weight once (`pack_weight`): the codes K-major (`[N, K]`,
the only layout 8-bit `wgmma` reads B in) and the per-column epilogue vectors
precomputed, so no transpose or vector arithmetic runs per call.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from pallas_kernels.matmul.base import ACTIVATIONS
from pallas_kernels.quant_types import QTYPES, dot_8bit, quantize_in_kernel, quantize_scaled


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PackedWeight:
    """An 8-bit GEMM weight laid out for the fused epilogue, built once per plan by `pack_weight`.

    Attributes:
      w_t: `[N, K]` codes (int8 or float8_e4m3fn), K-major.
      vectors: `[3, N]` float32: column scale (`x_scale * w_scale`), bias
        (zeros when there is none), reciprocal output scale (ones when the
        result is not requantized).
      qtype: "int8" or "fp8" (static).
      has_bias, requantize: whether the epilogue adds the bias and requantizes (static).
    """

    w_t: jax.Array
    vectors: jax.Array
    qtype: str = dataclasses.field(metadata=dict(static=True))
    has_bias: bool = dataclasses.field(default=True, metadata=dict(static=True))
    requantize: bool = dataclasses.field(default=False, metadata=dict(static=True))

    @property
    def shape(self) -> tuple[int, int]:
        """`(K, N)`, the unpacked weight's shape."""
        n, k = self.w_t.shape
        return k, n


def pack_weight(w_q: jax.Array, w_scale: jax.Array, bias: jax.Array | None = None, *, x_scale: jax.Array,
                out_scale: jax.Array | None = None, qtype: str) -> PackedWeight:
    """Packs a `[K, N]` 8-bit weight with the scales of the activation it multiplies (and of its output)."""
    n = w_q.shape[1]
    vectors = jnp.stack([
        column_scale(jnp.asarray(x_scale), jnp.asarray(w_scale)),
        jnp.zeros((n,), jnp.float32) if bias is None else jnp.asarray(bias, jnp.float32),
        jnp.broadcast_to(1.0 / jnp.asarray(1.0 if out_scale is None else out_scale, jnp.float32), (n,)),
    ])
    return PackedWeight(jnp.asarray(w_q).T, vectors, qtype, bias is not None, out_scale is not None)


def quantized_matmul_reference(
    x_q: jax.Array,
    x_scale: jax.Array,
    w_q: jax.Array,
    w_scale: jax.Array,
    bias: jax.Array | None = None,
    *,
    qtype: str,
    activation: str | None = None,
    out_dtype=jnp.float32,
    out_scale: jax.Array | None = None,
    out_qtype: str | None = None,
) -> jax.Array:
    """8-bit GEMM with fused dequantize / bias / activation (/ requantize).

    Args:
      x_q: `[..., K]` quantized activations (int8 or float8_e4m3fn).
      x_scale: scalar per-tensor activation scale.
      w_q: `[K, N]` quantized weights of the same qtype.
      w_scale: `[1, N]` per-output-channel weight scale.
      bias: optional `[N]` float bias.
      qtype: "int8" or "fp8".
      out_scale, out_qtype: when given, the result is requantized to 8 bits.
    """
    acc = dot_8bit("...k,kn->...n", x_q, w_q, (x_q.ndim - 1, 0), qtype)
    col_scale = column_scale(x_scale, w_scale)
    inv = None if out_scale is None else jnp.broadcast_to(1.0 / jnp.asarray(out_scale, jnp.float32), col_scale.shape)
    return epilogue(acc, col_scale, bias, activation=activation, out_inv_scale=inv, out_qtype=out_qtype or qtype,
                    out_dtype=out_dtype)


def quantized_matmul_packed_reference(x_q: jax.Array, packed: PackedWeight, *, activation: str | None = None,
                                      out_dtype=jnp.float32, out_qtype: str | None = None) -> jax.Array:
    """`quantized_matmul_reference` on a packed weight; `out_qtype` (default: the weight's) when it requantizes."""
    acc = dot_8bit("...k,nk->...n", x_q, packed.w_t, (x_q.ndim - 1, 1), packed.qtype)
    vec = packed.vectors
    return epilogue(acc, vec[0], vec[1] if packed.has_bias else None, activation=activation,
                    out_inv_scale=vec[2] if packed.requantize else None, out_qtype=out_qtype or packed.qtype,
                    out_dtype=out_dtype)


def packed_result_dtype(packed: PackedWeight, out_dtype, out_qtype: str | None):
    """What a packed GEMM returns: 8-bit codes when it requantizes, else `out_dtype`."""
    return jnp.dtype(QTYPES[out_qtype or packed.qtype][0] if packed.requantize else out_dtype)


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
    of the FMA rate, and the FFN1 GEMM's GELU epilogue is instruction-bound (bench/RESULTS.md).
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
# checks (test_mosaic.py) and the requantized GEMM tests allow for
GELU_TANH_ERROR = (2.5e-4, 3.1e-5)


def gelu_tanh_fit(x: jax.Array) -> jax.Array:
    """The exact (erf) GELU from one hardware `tanh` and five FMAs, for epilogues that requantize to 8 bits.

    `x (1 + tanh(x r(x^2))) / 2` with a fitted quadratic `r` (`_GELU_TANH_R`). With approximate math
    Mosaic GPU issues `tanh.approx.f32`, whose relative error (2^-11) sets the bound `GELU_TANH_ERROR`:
    at most a quarter of a thousandth of |x|, about 3% of an int8 step where |x| is the tensor's largest
    value, so an output code moves by at most one, and rarely. It issues 10 fewer instructions per output
    than `gelu_one_exp`, and the FFN1 epilogue is instruction-bound: on the H100 the int8 -> int8 FFN1 GEMM
    at 16384 x 768 x 3072 took 0.0786 ms with it (ping-pong tiles) against 0.1012 before (cooperative; 0.1124
    on ping-pong tiles), and its measured error inside a kernel was 3.13e-5 (bench/RESULTS.md, eighth pass).
    Float outputs keep `gelu_one_exp`, whose 3e-8 is below their rounding.
    """
    z = jnp.minimum(x * x, _GELU_TANH_CLAMP)
    r = (z * _GELU_TANH_R[2] + _GELU_TANH_R[1]) * z + _GELU_TANH_R[0]
    return x * (0.5 + 0.5 * jnp.tanh(x * r))


# The activations the fused GEMM kernels compute in their epilogue: to a float output, and to one
# requantized to 8 bits (Mosaic GPU's GEMM folds the output scale into the latter: gelu_scaled below).
KERNEL_ACTIVATIONS = {"gelu": gelu_one_exp}
REQUANT_ACTIVATIONS = {"gelu": gelu_tanh_fit}

# |gelu_scaled(x, h) / (2 h) - GELU(x)| <= a |x| + b in float16 with the H100's `tanh.approx.f16x2`: the bound
# the GPU test checks (test_mosaic.py) and the requantized GEMM tests allow for (in float32 it is GELU_TANH_ERROR)
HALF_GELU_ERROR = (3.0e-3, 6.0e-5)


def gelu_scaled(x: jax.Array, half_inv_scale: jax.Array, top: float, tanh=jnp.tanh, dtype=jnp.float16,
                clip: bool = True) -> jax.Array:
    """`clip(GELU(x) * inv_scale, -top, top)` for epilogues that requantize, computed in `dtype`.

    `gelu_tanh_fit`'s form with the output scale folded into its last step: `u t + u` with
    `u = x * half_inv_scale` (half the reciprocal output scale, per column) and `t = tanh(x r(x^2))`, two
    instructions fewer than GELU followed by a scale. The FFN1 epilogue is instruction-bound.

    float16 (int8 outputs): Mosaic GPU keeps a `wgmma` tile's values as pairs of neighbouring columns, so
    each half-precision instruction (`HFMA2`, `HMNMX2`, `tanh.approx.f16x2`) serves two outputs; on the H100
    it took the int8 -> int8 16384 x 768 x 3072 GEMM from 0.0764 to 0.0687 ms (bench/RESULTS.md, eleventh
    pass). The price is float16 rounding: `HALF_GELU_ERROR`, at most 0.3% of |x|, so a code moves by one
    step where the exact value lies within a few hundredths of a step of a rounding tie (0.4-1.5% of the
    codes in the GEMM tests, against 0.03% for float32). Such a move trades a rounding error just under half
    a step for one just over it, so the model's error against float32 stays where it was (the GPU parity
    test checks it). float32 (fp8 outputs, whose steps are relative: float16 rounding moved 4-7% of their
    codes): within `GELU_TANH_ERROR`. `tanh`: the kernel passes the hardware's packed tanh for float16.
    `clip=False` where the cast that follows saturates by itself (fp8's `cvt.rn.satfinite`).
    """
    xh = x.astype(dtype)
    z = jnp.minimum(xh * xh, jnp.asarray(_GELU_TANH_CLAMP, dtype))
    r = (z * jnp.asarray(_GELU_TANH_R[2], dtype) + jnp.asarray(_GELU_TANH_R[1], dtype)) * z \
        + jnp.asarray(_GELU_TANH_R[0], dtype)
    u = xh * half_inv_scale.astype(dtype)
    q = u * tanh(xh * r) + u
    return jnp.clip(q, jnp.asarray(-top, dtype), jnp.asarray(top, dtype)) if clip else q


def column_scale(x_scale: jax.Array, w_scale: jax.Array) -> jax.Array:
    """`[N]` float32 dequantization factor: per-tensor activation scale times per-column weight scale."""
    return x_scale.astype(jnp.float32) * w_scale.reshape(-1).astype(jnp.float32)


def epilogue(acc, col_scale, bias, *, activation, out_inv_scale, out_qtype, out_dtype, activations=ACTIVATIONS,
             in_kernel: bool = False, fp8_cast: bool = True, cast_saturates: bool = False):
    """The fused epilogue on an accumulator tile, in float32; every kernel runs this same function.

    `col_scale`, `bias` and `out_inv_scale` are `[N]` (or a tile of it) and
    broadcast over rows; `out_inv_scale` (the reciprocal output scale) set means
    requantize to `out_qtype`. Kernels whose compiler lacks an op pass their own
    `activations` (KERNEL_ACTIVATIONS). `in_kernel`: requantize by `quantize_in_kernel`'s
    conversion-free forms, code for code equal to the reference's; `fp8_cast=False` keeps fp8
    on the reference's bit form there (the tests compare the two); `cast_saturates`: `quantize_in_kernel`'s.
    """
    y = acc.astype(jnp.float32)
    if col_scale is not None:  # None: a float GEMM, nothing to dequantize
        y = y * col_scale
    if bias is not None:
        y = y + bias.astype(jnp.float32)
    if activation is not None:
        if activation not in activations:
            raise NotImplementedError(f"{activation=} has no in-kernel form here")
        y = activations[activation](y)
    if out_inv_scale is not None:
        if in_kernel and (fp8_cast or out_qtype != "fp8"):
            return quantize_in_kernel(y, out_inv_scale, out_qtype, cast_saturates=cast_saturates)
        return quantize_scaled(y, out_inv_scale, out_qtype)
    return y.astype(out_dtype)
