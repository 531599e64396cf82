from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.matmul.api import matmul
from pallas_kernels.testing import REL_TOL, rel_error

SHAPES = [(1, 8, 16), (7, 33, 65), (64, 384, 1536), (3, 5, 768)]  # (M, K, N); odd sizes on purpose


def _erf_gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


class MatmulTest:
    IMPLEMENTATION = "xla"

    @pytest.mark.parametrize("m, k, n", SHAPES)
    @pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
    @pytest.mark.parametrize("activation", [None, "gelu", "gelu_new", "relu"])
    def test_against_float64(self, m, k, n, dtype, activation):
        rng = np.random.default_rng(m * k + n)
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        xs, ws = jnp.asarray(x, dtype), jnp.asarray(w, dtype)
        out = matmul(xs, ws, jnp.asarray(b), activation=activation, implementation=self.IMPLEMENTATION)
        assert out.dtype == jnp.dtype(dtype) and out.shape == (m, n)
        # The oracle sees the operands as rounded to `dtype`, so only accumulation
        # and output rounding are measured.
        acc = np.asarray(xs, np.float64) @ np.asarray(ws, np.float64) + b
        ref = {None: acc, "gelu": _erf_gelu(acc), "relu": np.maximum(acc, 0),
               "gelu_new": 0.5 * acc * (1 + np.tanh(np.sqrt(2 / np.pi) * (acc + 0.044715 * acc**3)))}[activation]
        assert rel_error(out, ref) < REL_TOL[dtype]

    def test_no_bias_and_out_dtype(self):
        x = jnp.ones((2, 4), jnp.bfloat16)
        w = jnp.full((4, 3), 0.5, jnp.bfloat16)
        out = matmul(x, w, out_dtype=jnp.float32, implementation=self.IMPLEMENTATION)
        assert out.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(out), np.full((2, 3), 2.0))


class TestMatmulXla(MatmulTest):
    IMPLEMENTATION = "xla"


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"x.shape=\(2, 4\) does not contract with w.shape=\(5, 3\)"):
        matmul(jnp.ones((2, 4)), jnp.ones((5, 3)))
    with pytest.raises(ValueError, match=r"bias.shape=\(4,\), expected \(3,\)"):
        matmul(jnp.ones((2, 4)), jnp.ones((4, 3)), jnp.ones(4))
    with pytest.raises(ValueError, match="unknown activation='mish'"):
        matmul(jnp.ones((2, 4)), jnp.ones((4, 3)), activation="mish")
