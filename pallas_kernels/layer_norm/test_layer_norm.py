from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.layer_norm.api import residual_layer_norm
from pallas_kernels.testing import REL_TOL, assert_codes_close, layer_norm_np, rel_error
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

    @pytest.mark.parametrize("qtype,per_channel", [("int8", False), ("fp8", False), ("int8", True), ("fp8", True)])
    def test_8bit_residual_in_codes_out(self, qtype, per_channel):
        """The full_* data flow: codes in as the residual (one scale, or one per channel: a smoothed residual
        stream), codes out for the next GEMM, against float64."""
        rng = np.random.default_rng(5)
        shape, h = (3, 17, 384), 384
        x = jnp.asarray(rng.standard_normal(shape) * 3, jnp.float32)
        r_scale = (rng.uniform(0.005, 0.2, h).astype(np.float32) if per_channel else np.float32(0.03))
        o_scale = np.float32(0.04 if qtype == "int8" else 0.01)
        codes = rng.integers(-127, 128, shape) if qtype == "int8" else rng.standard_normal(shape) * 60
        res = jnp.asarray(codes, jnp.int8 if qtype == "int8" else jnp.float8_e4m3fn)
        xb, scale, bias = (rng.standard_normal(h).astype(np.float32) for _ in range(3))
        out = residual_layer_norm(x, res, scale, bias, x_bias=xb, eps=1e-12, residual_scale=jnp.asarray(r_scale),
                                  out_scale=jnp.float32(o_scale), out_qtype=qtype, implementation=self.IMPLEMENTATION)
        assert out.dtype == (jnp.int8 if qtype == "int8" else jnp.float8_e4m3fn) and out.shape == shape
        total = np.asarray(x, np.float64) + xb + np.asarray(res, np.float64) * r_scale
        assert_codes_close(out, layer_norm_np(total, scale, bias, 1e-12) / o_scale, qtype)

    def test_float_and_codes_together(self):
        """`with_float`: the float output and its codes from one pass. The codes equal asking for them alone; the
        float output is asking for it alone up to one fp16 step, since the 8-bit form tiles the row differently
        (`column_chunks`) and so sums its statistics in another order."""
        rng = np.random.default_rng(9)
        x, res = (jnp.asarray(rng.standard_normal((2, 9, 256)), jnp.float16) for _ in range(2))
        scale, bias = (rng.standard_normal(256).astype(np.float32) for _ in range(2))
        kw = dict(eps=1e-12, implementation=self.IMPLEMENTATION)
        y, q = residual_layer_norm(x, res, scale, bias, out_scale=jnp.float32(0.05), out_qtype="int8",
                                   with_float=True, **kw)
        assert y.dtype == jnp.float16 and q.dtype == jnp.int8
        alone = np.asarray(residual_layer_norm(x, res, scale, bias, **kw))
        assert np.all(np.abs(np.asarray(y, np.float32) - alone.astype(np.float32)) <= np.spacing(np.abs(alone)))
        alone = residual_layer_norm(x, res, scale, bias, out_scale=jnp.float32(0.05), out_qtype="int8", **kw)
        np.testing.assert_array_equal(np.asarray(q), np.asarray(alone))

    @pytest.mark.parametrize("out", ["float16", "int8"])
    def test_partial_sums(self, out):
        """A split-K GEMM's float32 partial products `[P, ..., H]`, summed in the kernel, against float64."""
        rng = np.random.default_rng(11)
        shape, h = (2, 9, 384), 384
        parts = jnp.asarray(rng.standard_normal((3, *shape)) * 2, jnp.float32)
        res = jnp.asarray(rng.standard_normal(shape), jnp.float16)
        xb, scale, bias = (rng.standard_normal(h).astype(np.float32) for _ in range(3))
        kw = dict(out_scale=jnp.float32(0.04), out_qtype="int8") if out == "int8" else {}
        y = residual_layer_norm(parts, res, scale, bias, x_bias=xb, eps=1e-12, out_dtype=jnp.float16,
                                partial_sums=True, implementation=self.IMPLEMENTATION, **kw)
        assert y.shape == shape and y.dtype == jnp.dtype(out)
        total = np.asarray(parts, np.float64).sum(axis=0) + xb + np.asarray(res, np.float64)
        want = layer_norm_np(total, scale, bias, 1e-12)
        if out == "int8":
            assert_codes_close(y, want / 0.04, "int8")
        else:
            assert rel_error(y, want) < REL_TOL["float16"]

    def test_constant_row_is_finite(self):
        out = residual_layer_norm(jnp.ones((1, 4, 8)), None, jnp.ones(8), jnp.zeros(8), eps=1e-12,
                                  implementation=self.IMPLEMENTATION)
        np.testing.assert_array_equal(np.asarray(out), 0.0)


class TestResidualLayerNormXla(ResidualLayerNormTest):
    IMPLEMENTATION = "xla"


def test_8bit_arguments_name_the_bad_value():
    x, codes = jnp.ones((2, 4)), jnp.ones((2, 4), jnp.int8)
    one = jnp.ones(4)
    with pytest.raises(ValueError, match="residual.dtype=int8 with residual_scale=None"):
        residual_layer_norm(x, codes, one, one, eps=1e-5)
    with pytest.raises(ValueError, match="residual.dtype=float32 with residual_scale=set"):
        residual_layer_norm(x, x, one, one, eps=1e-5, residual_scale=jnp.float32(1))
    with pytest.raises(ValueError, match=r"out_scale.shape=\(4,\), expected a per-tensor scalar"):
        residual_layer_norm(x, None, one, one, eps=1e-5, out_scale=one, out_qtype="int8")
    with pytest.raises(ValueError, match="with_float=True returns"):
        residual_layer_norm(x, None, one, one, eps=1e-5, with_float=True)
    with pytest.raises(ValueError, match="out_qtype='int4' needs an out_scale"):
        residual_layer_norm(x, None, one, one, eps=1e-5, out_scale=jnp.float32(1), out_qtype="int4")


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


def test_partial_sums_shapes():
    parts, res, one = jnp.ones((2, 3, 4)), jnp.ones((3, 4)), jnp.ones(4)
    assert residual_layer_norm(parts, res, one, one, eps=1e-5, partial_sums=True).shape == (3, 4)
    with pytest.raises(ValueError, match=r"residual.shape=\(2, 3, 4\) != x.shape\[1:\] \(partial sums\)=\(3, 4\)"):
        residual_layer_norm(parts, parts, one, one, eps=1e-5, partial_sums=True)
