"""The Pallas-Triton flash attention on packed 8-bit QKV against the XLA reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels.flash.config import AttentionConfig
from pallas_kernels.quantized_attention.api import quantized_attention_packed
from pallas_kernels.quantized_attention.triton import probability_codes, quantized_attention_packed_triton
from pallas_kernels.testing import rel_error
from pallas_kernels.testing_modes import Interpreted, needs_gpu

SHAPES = [(2, 37, 2, 32), (1, 130, 2, 16), (2, 128, 12, 64)]


def _mask(b, s):
    mask = np.ones((b, s), bool)
    mask[0, s // 3 :] = False  # a padded sequence
    return mask


def _bias(s, n, with_bias, rng):
    return jnp.asarray(rng.standard_normal((1, n, s, s)), jnp.float32) if with_bias else None


class TritonQuantizedAttentionTest:
    @pytest.mark.parametrize("b, s, n, d", SHAPES)
    @pytest.mark.parametrize("probs", ["uint8", "int8", "float"])
    @pytest.mark.parametrize("with_bias", [False, True])
    def test_int8_against_reference(self, b, s, n, d, probs, with_bias):
        rng = np.random.default_rng(s + n + d)
        qkv = jnp.asarray(rng.integers(-127, 128, (b, s, 3, n, d)), jnp.int8)
        self._check(qkv, "int8", probs, _mask(b, s), _bias(s, n, with_bias, rng))

    @pytest.mark.parametrize("b, s, n, d", SHAPES[:2])
    @pytest.mark.parametrize("probs", ["uint8", "int8", "float"])
    def test_fp8_against_reference(self, b, s, n, d, probs):
        rng = np.random.default_rng(s * d)
        qkv = jnp.asarray(rng.standard_normal((b, s, 3, n, d)) * 50, jnp.float8_e4m3fn)
        self._check(qkv, "fp8", probs, _mask(b, s), None)

    @pytest.mark.parametrize("qtype", ["int8", "fp8"])
    def test_context_written_as_codes(self, qtype):
        """`out_scale`: the kernel quantizes the context for the output projection."""
        b, s, n, d = SHAPES[2]
        rng = np.random.default_rng(17)
        raw = rng.integers(-127, 128, (b, s, 3, n, d)) if qtype == "int8" else rng.standard_normal((b, s, 3, n, d)) * 50
        qkv = jnp.asarray(raw, jnp.int8 if qtype == "int8" else jnp.float8_e4m3fn)
        self._check(qkv, qtype, "uint8", _mask(b, s), None, out_scale=jnp.float32(0.01))

    @pytest.mark.parametrize("config", [AttentionConfig(64, 64), AttentionConfig(32, 128, int_qk=True),
                                        AttentionConfig(128, 128, num_warps=8, int_qk=True),
                                        AttentionConfig(64, 64, heads=3),
                                        AttentionConfig(128, 128, num_warps=8, num_stages=2, int_qk=True, heads=4)])
    def test_int8_tile_configs(self, config):
        """Two passes over the keys (block_k < S) or one, Q @ K^T as an int8 or an fp16 dot, one head per program
        or a loop over several: each is the reference."""
        b, s, n, d = SHAPES[2]
        qkv = jnp.asarray(np.random.default_rng(23).integers(-127, 128, (b, s, 3, n, d)), jnp.int8)
        self._check(qkv, "int8", "uint8", _mask(b, s), None, config=config)

    @staticmethod
    def _check(qkv, qtype, probs, mask, bias, out_scale=None, config=None):
        d = qkv.shape[-1]
        scales = [jnp.float32(v) for v in ((0.02, 0.03, 0.01) if qtype == "int8" else (0.05, 0.04, 0.02))]
        kw = dict(scale=d**-0.5, qtype=qtype, probs=probs, probs_scale=jnp.float32(0.5 / 127) if probs == "int8" else None,
                  out_scale=out_scale)
        # the reference runs on the CPU: XLA's GPU fp8 dot accumulates at reduced precision (bench/gpu_dot_checks.py)
        with jax.default_device(jax.devices("cpu")[0]):
            ref = quantized_attention_packed(*jax.device_put((qkv, *scales, jnp.asarray(mask), bias),
                                                             jax.devices("cpu")[0]), **kw, implementation="xla")
        if config is None:
            out = quantized_attention_packed(qkv, *scales, jnp.asarray(mask), bias, **kw, implementation="triton")
        else:
            out = quantized_attention_packed_triton(qkv, *scales, jnp.asarray(mask), bias, **kw, config=config)
        assert out.dtype == ref.dtype
        out, ref = np.asarray(out, np.float32), np.asarray(ref, np.float32)
        if out_scale is not None:  # codes: one step at a rounding tie (int8), one e4m3 step (fp8)
            step = 1.0 if qtype == "int8" else 2.0 ** np.maximum(np.floor(np.log2(np.maximum(np.abs(ref), 2.0**-6))) - 3, -9)
            assert np.all(np.abs(out - ref) <= step * 1.0001) and np.mean(out == ref) > 0.99
        elif probs == "float":
            # the kernel feeds P to the tensor core in fp16 (2^-11), the reference keeps float32
            assert rel_error(out, ref) < 1e-3
        elif qtype == "int8":
            # P's codes come from float32 softmax sums in another order: a code at a rounding tie may
            # take the other neighbour; the integer products of equal codes are exact on both sides
            # (H100 at 2 x 128 x 12 x 64: 99.97% equal, relative error 1.3e-4)
            assert np.mean(out == ref) > 0.99 and rel_error(out, ref) < 1e-3
        else:
            # fp8 products are exact in both; only float32 summation order differs
            assert rel_error(out, ref) < 1e-5


class TestTritonQuantizedAttentionInterpreted(Interpreted, TritonQuantizedAttentionTest):
    pass


class TestTritonQuantizedAttentionCompiled(TritonQuantizedAttentionTest):
    pytestmark = needs_gpu()


def _products():
    """Exponentials in [0, 1] and the fixed uint8 scale's multipliers, with exact ties of e * scale among them."""
    rng = np.random.default_rng(3)
    e = np.concatenate([rng.uniform(0, 1, 4094), [0.0, 1.0]]).astype(np.float32)
    to_codes = np.float32(255.0) / rng.uniform(1.0, 4.0, e.size).astype(np.float32)
    e[:256], to_codes[:256] = (np.arange(256) + 0.5) / 256, 256.0  # e * 256 lands on every half-integer
    return e, to_codes


def _codes_in_a_kernel(e, to_codes, compiled: bool) -> np.ndarray:
    def kernel(e_ref, s_ref, o_ref):
        o_ref[...] = probability_codes(e_ref[...], s_ref[...], compiled)

    call = pl.pallas_call(kernel, out_shape=jax.ShapeDtypeStruct(e.shape, jnp.float16), interpret=not compiled,
                          compiler_params=pltriton.CompilerParams(num_warps=4))
    return np.asarray(call(jnp.asarray(e), jnp.asarray(to_codes)), np.float64)


def test_probability_codes_interpreted_round_the_product_half_even():
    """The interpreter's codes: the compiled kernel's fma onto float32's integer grid and the shift taken off (XLA's
    multiply-add rounds once or twice, which can move a code only where the float32 product is a tie)."""
    e, to_codes = _products()
    got = _codes_in_a_kernel(e, to_codes, compiled=False)
    exact = e.astype(np.float64) * to_codes
    np.testing.assert_array_equal(got, np.round(exact))  # no float32 product here rounds onto a tie


class TestProbabilityCodesCompiled:
    pytestmark = needs_gpu()

    def test_probability_codes_compiled_round_the_exact_product(self):
        e, to_codes = _products()
        exact = e.astype(np.float64) * to_codes
        np.testing.assert_array_equal(_codes_in_a_kernel(e, to_codes, compiled=True), np.round(exact))

    def test_probability_codes_compiled_equal_interpreted(self):
        e, to_codes = _products()
        np.testing.assert_array_equal(_codes_in_a_kernel(e, to_codes, compiled=True),
                                      _codes_in_a_kernel(e, to_codes, compiled=False))


def test_packed_dtype_errors():
    qkv = jnp.zeros((2, 8, 3, 2, 16), jnp.bfloat16)
    with pytest.raises(ValueError, match="qkv_q.dtype"):
        quantized_attention_packed(qkv, 1.0, 1.0, 1.0, jnp.ones((2, 8), bool), scale=0.25, qtype="int8")


def test_kernel_declines_what_it_cannot_take():
    with pytest.raises(ValueError, match="int_qk=True needs int8 Q and K, not fp8"):
        quantized_attention_packed_triton(jnp.zeros((1, 8, 3, 1, 16), jnp.float8_e4m3fn), 1.0, 1.0, 1.0,
                                          jnp.ones((1, 8), bool), scale=1.0, qtype="fp8",
                                          config=AttentionConfig(16, 16, int_qk=True), interpret=True)
    with pytest.raises(ValueError, match="int_qk=True needs a head dim >= 32, not 16"):
        quantized_attention_packed_triton(jnp.zeros((1, 8, 3, 1, 16), jnp.int8), 1.0, 1.0, 1.0,
                                          jnp.ones((1, 8), bool), scale=1.0, qtype="int8",
                                          config=AttentionConfig(16, 16, int_qk=True), interpret=True)
    with pytest.raises(NotImplementedError, match="sequence 600 > 512"):
        quantized_attention_packed_triton(jnp.zeros((1, 600, 3, 1, 16), jnp.int8), 1.0, 1.0, 1.0,
                                          jnp.ones((1, 600), bool), scale=1.0, qtype="int8", interpret=True)
