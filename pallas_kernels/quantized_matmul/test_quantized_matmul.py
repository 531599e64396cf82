from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.quant_types import QTYPES
from pallas_kernels.quantized_matmul.api import quantized_matmul
from pallas_kernels.testing import rel_error

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
