from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.layer_norm.api import residual_layer_norm
from pallas_kernels.testing import REL_TOL, layer_norm_np, rel_error
from pallas_kernels.testing_modes import Interpreted, needs_gpu

SHAPES = [(1, 1, 8), (3, 17, 384), (2, 5, 768), (4, 33, 100)]


class ResidualLayerNormTest:
    IMPLEMENTATION = "xla"

    @pytest.mark.parametrize("shape", SHAPES)
    @pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
    @pytest.mark.parametrize("with_residual", [True, False])
    def test_against_float64(self, shape, dtype, with_residual):
        rng = np.random.default_rng(sum(shape))
        h = shape[-1]
        x = jnp.asarray(rng.standard_normal(shape) * 3 + 1, dtype)
        res = jnp.asarray(rng.standard_normal(shape), dtype) if with_residual else None
        xb, scale, bias = (rng.standard_normal(h).astype(np.float32) for _ in range(3))
        out = residual_layer_norm(x, res, scale, bias, x_bias=xb, eps=1e-12, implementation=self.IMPLEMENTATION)
        total = np.asarray(x, np.float64) + xb + (np.asarray(res, np.float64) if with_residual else 0)
        assert out.dtype == jnp.dtype(dtype)
        assert rel_error(out, layer_norm_np(total, scale, bias, 1e-12)) < REL_TOL[dtype]

    def test_constant_row_is_finite(self):
        out = residual_layer_norm(jnp.ones((1, 4, 8)), None, jnp.ones(8), jnp.zeros(8), eps=1e-12,
                                  implementation=self.IMPLEMENTATION)
        np.testing.assert_array_equal(np.asarray(out), 0.0)


class TestResidualLayerNormXla(ResidualLayerNormTest):
    IMPLEMENTATION = "xla"


def test_shape_errors():
    with pytest.raises(ValueError, match=r"residual.shape=\(2, 3\) != x.shape=\(2, 4\)"):
        residual_layer_norm(jnp.ones((2, 4)), jnp.ones((2, 3)), jnp.ones(4), jnp.ones(4), eps=1e-5)
    with pytest.raises(ValueError, match=r"x_bias.shape=\(3,\), expected \(4,\)"):
        residual_layer_norm(jnp.ones((2, 4)), None, jnp.ones(4), jnp.ones(4), x_bias=jnp.ones(3), eps=1e-5)


class TestResidualLayerNormTritonInterpret(Interpreted, ResidualLayerNormTest):
    IMPLEMENTATION = "triton"


class TestResidualLayerNormTriton(ResidualLayerNormTest):
    IMPLEMENTATION = "triton"
    pytestmark = needs_gpu()
