"""Dense + residual + LayerNorm: the fused op against the plain composition of its references, on XLA (exactly)
and on its kernels (interpreted: the Mosaic GEMM writing split-K partial products, the Triton LayerNorm summing
them)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels import fused as ops
from pallas_kernels._dispatch import xla_only
from pallas_kernels._platform import H100, interpret_kernels
from pallas_kernels.layer_norm.base import residual_layer_norm_reference
from pallas_kernels.matmul.base import matmul_reference
from pallas_kernels.quantized_matmul.base import pack_weight, quantized_matmul_packed_reference
from pallas_kernels.testing import rel_error

EPS = 1e-12


def _float_operands(m, k, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((m, k)), dtype)
    w = jnp.asarray(rng.standard_normal((k, n)) / np.sqrt(k), dtype)
    b, scale, shift = (jnp.asarray(rng.standard_normal(n), jnp.float32) for _ in range(3))
    residual = jnp.asarray(rng.standard_normal((m, n)), dtype)
    return x, w, b, residual, scale, shift


def _8bit_operands(m, k, n, seed=0):
    rng = np.random.default_rng(seed)
    x_q = jnp.asarray(rng.integers(-127, 128, (m, k)), jnp.int8)
    w_q = jnp.asarray(rng.integers(-127, 128, (k, n)), jnp.int8)
    w_scale = jnp.asarray(rng.uniform(0.5, 2, (1, n)) / 127, jnp.float32)
    x_scale = jnp.float32(1 / (127 * np.sqrt(k)))
    packed = pack_weight(w_q, w_scale, jnp.asarray(rng.standard_normal(n), jnp.float32), x_scale=x_scale,
                         qtype="int8")
    residual = jnp.asarray(rng.integers(-127, 128, (m, n)), jnp.int8)
    scale, shift = (jnp.asarray(rng.standard_normal(n), jnp.float32) for _ in range(2))
    return x_q, packed, residual, jnp.float32(0.02), scale, shift


def test_float_equals_its_references_composed():
    x, w, b, res, scale, shift = _float_operands(24, 64, 32, "bfloat16")
    codes = ops.Codes(jnp.float32(0.05), "int8")
    with xla_only():
        y = ops.dense_residual_layer_norm(x, w, b, res, scale, shift, eps=EPS, out_dtype=jnp.float32)
        y2, q = ops.dense_residual_layer_norm(x, w, b, res, scale, shift, eps=EPS, out_dtype=jnp.float32,
                                              codes=codes, keep_float=True)
    h = matmul_reference(x, w, b)
    want = residual_layer_norm_reference(h, res, scale, shift, eps=EPS, out_dtype=jnp.float32)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(want))
    np.testing.assert_array_equal(np.asarray(y2), np.asarray(want))
    want_q = residual_layer_norm_reference(h, res, scale, shift, eps=EPS, out_scale=codes.scale, out_qtype="int8")
    np.testing.assert_array_equal(np.asarray(q), np.asarray(want_q))


def test_8bit_equals_its_references_composed():
    x_q, packed, res, res_scale, scale, shift = _8bit_operands(24, 64, 32)
    with xla_only():
        q = ops.quantized_dense_residual_layer_norm(x_q, packed, res, scale, shift, eps=EPS, out_dtype=jnp.float16,
                                                    residual_scale=res_scale, codes=ops.Codes(jnp.float32(0.05), "int8"))
    h = quantized_matmul_packed_reference(x_q, packed, out_dtype=jnp.float16)
    want = residual_layer_norm_reference(h, res, scale, shift, eps=EPS, residual_scale=res_scale,
                                         out_scale=jnp.float32(0.05), out_qtype="int8")
    assert q.dtype == jnp.int8
    np.testing.assert_array_equal(np.asarray(q), np.asarray(want))


def test_keep_float_needs_codes():
    x, w, b, res, scale, shift = _float_operands(8, 64, 32, "float32")
    with pytest.raises(ValueError, match="keep_float=True returns"):
        ops.dense_residual_layer_norm(x, w, b, res, scale, shift, eps=EPS, keep_float=True)


def test_float_kernels_split_k_interpreted():
    """64 rows of a 256-wide weight: the GEMM's H100 tile choice splits K in four (64 x 64 tiles), the LayerNorm
    sums the float32 parts."""
    from pallas_kernels.gemm.tile_choice import GemmProblem, choose_tiles

    m, k, n = 64, 256, 256
    assert choose_tiles(GemmProblem(m, n, k, "float16", "float16", partial_sums=True), H100).config.splits == 4
    x, w, b, res, scale, shift = _float_operands(m, k, n, "float16", seed=1)
    with xla_only():
        want = ops.dense_residual_layer_norm(x, w, b, res, scale, shift, eps=EPS, out_dtype=jnp.float32)
    with interpret_kernels():
        got = ops.dense_residual_layer_norm(x, w, b, res, scale, shift, eps=EPS, out_dtype=jnp.float32)
    # the split sums the products in float32 where the reference rounds them to fp16 once
    assert rel_error(np.asarray(got), np.asarray(want)) < 2e-3


def test_8bit_kernels_split_k_interpreted():
    x_q, packed, res, res_scale, scale, shift = _8bit_operands(64, 256, 256, seed=2)
    kw = dict(eps=EPS, out_dtype=jnp.float16, residual_scale=res_scale)
    with xla_only():
        want = ops.quantized_dense_residual_layer_norm(x_q, packed, res, scale, shift, **kw)
    with interpret_kernels():
        got = ops.quantized_dense_residual_layer_norm(x_q, packed, res, scale, shift, **kw)
    assert got.dtype == want.dtype == jnp.float16
    assert rel_error(np.asarray(got, np.float32), np.asarray(want, np.float32)) < 2e-3
