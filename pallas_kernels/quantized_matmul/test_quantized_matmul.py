from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.gemm.config import GemmConfig
from pallas_kernels.quant_types import QTYPES
from pallas_kernels.quantized_matmul.api import pack_weight, quantized_matmul, quantized_matmul_packed
from pallas_kernels.quantized_matmul.mosaic import quantized_matmul_mosaic_packed
from pallas_kernels.testing import gelu_np, rel_error

SHAPES = [(1, 8, 16), (7, 33, 65), (64, 384, 1536), (5, 1536, 384)]  # (M, K, N)


def _operands(m, k, n, qtype, seed):
    rng = np.random.default_rng(seed)
    if qtype == "int8":
        x = rng.integers(-127, 128, (m, k)).astype(np.int8)
        w = rng.integers(-127, 128, (k, n)).astype(np.int8)
    else:
        x = (rng.standard_normal((m, k)) * 50).astype(jnp.float8_e4m3fn)
        w = (rng.standard_normal((k, n)) * 50).astype(jnp.float8_e4m3fn)
    x_scale = np.float32(rng.uniform(0.01, 0.1))
    w_scale = rng.uniform(1e-3, 1e-2, (1, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    return x, w, x_scale, w_scale, bias


class QuantizedMatmulTest:
    IMPLEMENTATION = "xla"

    @pytest.mark.parametrize("m, k, n", SHAPES)
    def test_int8_accumulates_exactly(self, m, k, n):
        x, w, xs, ws, _ = _operands(m, k, n, "int8", m + k + n)
        out = quantized_matmul(jnp.asarray(x), jnp.float32(1), jnp.asarray(w), jnp.ones((1, n), jnp.float32),
                               qtype="int8", implementation=self.IMPLEMENTATION)
        exact = x.astype(np.int64) @ w.astype(np.int64)
        assert np.abs(exact).max() < 2**24  # representable exactly in the float32 output
        np.testing.assert_array_equal(np.asarray(out), exact.astype(np.float32))

    @pytest.mark.parametrize("m, k, n", SHAPES)
    @pytest.mark.parametrize("qtype", ["int8", "fp8"])
    @pytest.mark.parametrize("activation", [None, "gelu"])
    def test_epilogue_against_float64(self, m, k, n, qtype, activation):
        x, w, xs, ws, b = _operands(m, k, n, qtype, m * n)
        out = quantized_matmul(jnp.asarray(x), jnp.float32(xs), jnp.asarray(w), jnp.asarray(ws), jnp.asarray(b),
                               qtype=qtype, activation=activation, implementation=self.IMPLEMENTATION)
        ref = (np.asarray(x, np.float64) @ np.asarray(w, np.float64)) * xs * ws + b
        if activation == "gelu":
            ref = 0.5 * ref * (1 + np.vectorize(math.erf)(ref / math.sqrt(2)))
        # int8: exact product, float32 epilogue; fp8: float32 accumulation over K.
        assert rel_error(out, ref) < (1e-6 if qtype == "int8" else 1e-5)

    def test_requantized_output(self):
        x, w, xs, ws, b = _operands(16, 64, 32, "int8", 3)
        out_scale = jnp.float32(0.05)
        q = quantized_matmul(jnp.asarray(x), jnp.float32(xs), jnp.asarray(w), jnp.asarray(ws), jnp.asarray(b),
                             qtype="int8", out_scale=out_scale, implementation=self.IMPLEMENTATION)
        assert q.dtype == jnp.int8
        y = (x.astype(np.int64) @ w.astype(np.int64)) * np.float32(xs) * ws + b
        expected = np.clip(np.round(y.astype(np.float32) / np.float32(0.05)), -127, 127)
        # a value within float32 rounding of a .5 tie may land on either neighbour
        assert np.abs(np.asarray(q, np.int32) - expected).max() <= 1
        assert np.mean(np.asarray(q) == expected) > 0.999


class TestQuantizedMatmulXla(QuantizedMatmulTest):
    IMPLEMENTATION = "xla"


def test_errors_name_the_bad_value():
    x8, w8 = jnp.zeros((2, 4), jnp.int8), jnp.zeros((4, 3), jnp.int8)
    one, ws = jnp.float32(1), jnp.ones((1, 3), jnp.float32)
    with pytest.raises(ValueError, match="needs int8 operands, got x_q.dtype=float32"):
        quantized_matmul(jnp.zeros((2, 4)), one, w8, ws, qtype="int8")
    with pytest.raises(ValueError, match=r"w_scale.shape=\(3,\), expected \(1, 3\)"):
        quantized_matmul(x8, one, w8, jnp.ones(3), qtype="int8")
    with pytest.raises(ValueError, match=r"x_scale.shape=\(2,\), expected a per-tensor scalar"):
        quantized_matmul(x8, jnp.ones(2), w8, ws, qtype="int8")
    with pytest.raises(ValueError, match="qtype='int4' must be"):
        quantized_matmul(x8, one, w8, ws, qtype="int4")
    assert QTYPES["fp8"][1] == 448.0


@pytest.mark.parametrize("qtype", ["int8", "fp8"])
@pytest.mark.parametrize("activation, requantize, bias", [(None, False, False), ("gelu", True, True), (None, False, True)])
def test_packed_weight_gives_the_unpacked_result(qtype, activation, requantize, bias):
    """Packing once (K-major codes, precomputed epilogue vectors) changes nothing in the result."""
    x, w, xs, ws, b = _operands(24, 128, 64, qtype, 11)
    x, w, ws = jnp.asarray(x), jnp.asarray(w), jnp.asarray(ws)
    b = jnp.asarray(b) if bias else None
    out_scale = jnp.float32(0.03) if requantize else None
    packed = pack_weight(w, ws, b, x_scale=jnp.float32(xs), out_scale=out_scale, qtype=qtype)
    assert packed.shape == (128, 64) and packed.w_t.shape == (64, 128)
    want = quantized_matmul(x, jnp.float32(xs), w, ws, b, qtype=qtype, activation=activation, out_scale=out_scale,
                            implementation="xla")
    got = quantized_matmul_packed(x.reshape(2, 12, 128), packed, activation=activation, implementation="xla")
    assert got.dtype == want.dtype and got.shape == (2, 12, 64)
    np.testing.assert_array_equal(np.asarray(got, np.float32).reshape(24, 64), np.asarray(want, np.float32))
    # and the Mosaic kernel on the packed weight, interpreted (rows padded 24 -> 64)
    cfg = GemmConfig(tile_m=64, tile_n=32, tile_k=64, max_concurrent_steps=2, epi_tile_m=64, epi_tile_n=32,
                           grid_tile_width=2)
    kern = quantized_matmul_mosaic_packed(x, packed, activation=activation, config=cfg, interpret=True)
    kern, ref = np.asarray(kern, np.float32), np.asarray(want, np.float32)
    if requantize:  # GELU's erf by polynomial in the kernel: a code at a tie may take the other neighbour
        steps = np.abs(kern - ref) / np.maximum(np.abs(ref) * 2.0**-3, 2.0**-9) if qtype == "fp8" else np.abs(kern - ref)
        assert steps.max() <= 1.0001 and np.mean(kern == ref) > 0.99
    else:
        assert rel_error(kern, ref) < 1e-5


def test_packed_errors_name_the_bad_value():
    w8, ws = jnp.zeros((4, 3), jnp.int8), jnp.ones((1, 3), jnp.float32)
    packed = pack_weight(w8, ws, x_scale=jnp.float32(1), qtype="int8")
    with pytest.raises(ValueError, match="expected a PackedWeight"):
        quantized_matmul_packed(jnp.zeros((2, 4), jnp.int8), w8)
    with pytest.raises(ValueError, match="the weight is int8, x_q.dtype=float32"):
        quantized_matmul_packed(jnp.zeros((2, 4)), packed)
    with pytest.raises(ValueError, match=r"x_q.shape=\(2, 5\) does not contract with a \[4, 3\] weight"):
        quantized_matmul_packed(jnp.zeros((2, 5), jnp.int8), packed)
    with pytest.raises(ValueError, match="out_qtype='int8' but the weight was packed without an out_scale"):
        quantized_matmul_packed(jnp.zeros((2, 4), jnp.int8), packed, out_qtype="int8")


def test_kernel_gelu_against_float64():
    """The GEMM kernels' one-exp GELU is the exact (erf) GELU to within 3e-8 plus float32 rounding, past the clamp too."""
    from pallas_kernels.activations import gelu_one_exp

    x = np.concatenate([np.linspace(-12, 12, 480_001), [0.0, -0.0, 6.0, -6.0, 1e-30, -1e-30]]).astype(np.float32)
    got = np.asarray(gelu_one_exp(jnp.asarray(x)), np.float64)
    xd = x.astype(np.float64)
    err = np.abs(got - gelu_np(xd))
    # a few float32 roundings of |x| plus the fit's 3e-8
    assert (err <= 5e-8 + 2.5e-7 * np.abs(xd)).all(), (err.max(), xd[err.argmax()])


def test_tanh_gelu_against_float64():
    """The requantizing epilogue's tanh GELU: within 3.0e-5 of the exact GELU with an exact tanh (the CPU's),
    the fit's error; the GPU's approximate tanh adds the rest of `GELU_TANH_ERROR` (gemm/test_epilogue.py)."""
    from pallas_kernels.activations import gelu_tanh_fit

    x = np.concatenate([np.linspace(-12, 12, 480_001), [0.0, -0.0, 5.0, -5.0, 1e-30, -1e-30]]).astype(np.float32)
    got = np.asarray(gelu_tanh_fit(jnp.asarray(x)), np.float64)
    xd = x.astype(np.float64)
    err = np.abs(got - gelu_np(xd))
    assert (err <= 3.0e-5 + 2.5e-7 * np.abs(xd)).all(), (err.max(), xd[err.argmax()])
    assert err.max() > 1e-5  # the fit's error, not an exact erf: the bound above is the one that matters
