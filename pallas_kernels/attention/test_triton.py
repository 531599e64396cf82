"""The Pallas-Triton flash attention on packed QKV: float against float64, 8-bit against the reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.attention.api import attention_packed
from pallas_kernels.attention.test_attention import _attention_np
from pallas_kernels.attention.triton import AttentionConfig, attention_packed_triton, quantized_attention_packed_triton
from pallas_kernels.quantized_attention.api import quantized_attention_packed
from pallas_kernels.testing import rel_error
from pallas_kernels.testing_modes import Interpreted, needs_gpu

SHAPES = [(2, 37, 2, 32), (1, 130, 2, 16), (2, 128, 12, 64)]


def _mask(b, s):
    mask = np.ones((b, s), bool)
    mask[0, s // 3 :] = False  # a padded sequence
    return mask


def _bias(s, n, with_bias, rng):
    return jnp.asarray(rng.standard_normal((1, n, s, s)), jnp.float32) if with_bias else None


class TritonAttentionTest:
    @pytest.mark.parametrize("b, s, n, d", SHAPES)
    @pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
    @pytest.mark.parametrize("with_bias", [False, True])
    def test_float_against_float64(self, b, s, n, d, dtype, with_bias):
        rng = np.random.default_rng(b * s + n)
        qkv = jnp.asarray(rng.standard_normal((b, s, 3, n, d)), dtype)
        mask, bias = _mask(b, s), _bias(s, n, with_bias, rng)
        out = attention_packed(qkv, jnp.asarray(mask), bias, scale=d**-0.5, implementation="triton")
        assert out.shape == (b, s, n, d) and out.dtype == qkv.dtype
        q, k, v = (np.asarray(qkv[:, :, i], np.float64) for i in range(3))
        want = _attention_np(q, k, v, mask, None if bias is None else np.asarray(bias), d**-0.5)
        # P is cast to the input dtype for the second product (as the reference does), then the output
        tol = {"bfloat16": 1e-2, "float16": 2e-3}[dtype]
        assert rel_error(np.asarray(out, np.float64), want) < tol

    @pytest.mark.parametrize("config", [AttentionConfig(64, 64, heads=2), AttentionConfig(128, 128, 8, 2, heads=4)])
    def test_float_heads_per_program(self, config):
        """A loop over several heads per program, one key block or two: the same attention."""
        b, s, n, d = SHAPES[2]
        rng = np.random.default_rng(5)
        qkv = jnp.asarray(rng.standard_normal((b, s, 3, n, d)), jnp.float16)
        mask = _mask(b, s)
        out = attention_packed_triton(qkv, jnp.asarray(mask), scale=d**-0.5, config=config)
        q, k, v = (np.asarray(qkv[:, :, i], np.float64) for i in range(3))
        assert rel_error(np.asarray(out, np.float64), _attention_np(q, k, v, mask, None, d**-0.5)) < 2e-3

    def test_fully_padded_sequence_is_finite(self):
        qkv = jnp.ones((1, 16, 3, 1, 16), jnp.bfloat16)
        out = attention_packed(qkv, jnp.zeros((1, 16), bool), scale=0.25, implementation="triton")
        np.testing.assert_allclose(np.asarray(out, np.float32), 1.0)

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
        # the reference runs on the CPU: XLA's GPU fp8 dot accumulates at reduced precision (bench/RESULTS.md)
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
            # (H100, 2026-11-23: 99.97% equal, relative error 1.3e-4 at 2 x 128 x 12 x 64)
            assert np.mean(out == ref) > 0.99 and rel_error(out, ref) < 1e-3
        else:
            # fp8 products are exact in both; only float32 summation order differs
            assert rel_error(out, ref) < 1e-5


class TestTritonAttentionInterpreted(Interpreted, TritonAttentionTest):
    pass


class TestTritonAttentionCompiled(TritonAttentionTest):
    pytestmark = needs_gpu()


def test_packed_shape_errors():
    qkv = jnp.zeros((2, 8, 3, 2, 16), jnp.bfloat16)
    with pytest.raises(ValueError, match=r"qkv must be \[B, S, 3, N, D\]"):
        attention_packed(qkv[:, :, :2], jnp.ones((2, 8), bool), scale=0.25)
    with pytest.raises(ValueError, match="key_mask.shape"):
        attention_packed(qkv, jnp.ones((2, 9), bool), scale=0.25)
    with pytest.raises(ValueError, match="qkv_q.dtype"):
        quantized_attention_packed(qkv, 1.0, 1.0, 1.0, jnp.ones((2, 8), bool), scale=0.25, qtype="int8")


def test_kernel_declines_what_it_cannot_take():
    with pytest.raises(NotImplementedError, match="bf16/fp16"):
        attention_packed_triton(jnp.zeros((1, 8, 3, 1, 16), jnp.float32), jnp.ones((1, 8), bool), scale=1.0,
                                interpret=True)
    with pytest.raises(ValueError, match="int_qk=True needs int8 Q and K, not fp8"):
        quantized_attention_packed_triton(jnp.zeros((1, 8, 3, 1, 16), jnp.float8_e4m3fn), 1.0, 1.0, 1.0,
                                          jnp.ones((1, 8), bool), scale=1.0, qtype="fp8",
                                          config=AttentionConfig(16, 16, int_qk=True), interpret=True)
    with pytest.raises(ValueError, match="int_qk=True needs a head dim >= 32, not 16"):
        quantized_attention_packed_triton(jnp.zeros((1, 8, 3, 1, 16), jnp.int8), 1.0, 1.0, 1.0,
                                          jnp.ones((1, 8), bool), scale=1.0, qtype="int8",
                                          config=AttentionConfig(16, 16, int_qk=True), interpret=True)
    with pytest.raises(ValueError, match="block_k=24 is not a power of two"):
        attention_packed_triton(jnp.zeros((1, 8, 3, 1, 16), jnp.bfloat16), jnp.ones((1, 8), bool), scale=1.0,
                                config=AttentionConfig(16, 24), interpret=True)
    with pytest.raises(ValueError, match="heads=5 does not divide the 2 heads"):
        attention_packed_triton(jnp.zeros((1, 8, 3, 2, 16), jnp.bfloat16), jnp.ones((1, 8), bool), scale=1.0,
                                config=AttentionConfig(16, 16, heads=5), interpret=True)
    with pytest.raises(NotImplementedError, match="head dim 8"):
        attention_packed_triton(jnp.zeros((1, 8, 3, 1, 8), jnp.bfloat16), jnp.ones((1, 8), bool), scale=1.0,
                                interpret=True)


def test_head_loop_only_with_programs_to_spare():
    """Two heads per program at 128 x 128 (1536 programs), one at batch 1, where halving 12 programs cost time."""
    from pallas_kernels.attention.triton import pick_config

    assert pick_config(128, 64, quant=False, n=12, b=128).heads == 2
    assert pick_config(128, 64, quant=True, qtype="int8", n=12, b=128).heads == 2
    assert pick_config(128, 64, quant=False, n=12, b=1).heads == 1
    assert pick_config(128, 64, quant=True, qtype="int8", n=12, b=8).heads == 1
    assert pick_config(128, 64, quant=False, n=13, b=128).heads == 1  # an odd head count: no pairs


def test_fewer_query_rows_at_small_batch():
    from pallas_kernels.attention.triton import pick_config

    for quant, qtype in ((False, None), (True, "int8"), (True, "fp8")):
        one = pick_config(128, 64, quant=quant, qtype=qtype, n=12, b=1)  # 12 programs of 128 rows
        assert (one.block_q, one.block_k, one.num_warps, one.heads) == (16, 128, 4, 1)
        assert pick_config(128, 64, quant=quant, qtype=qtype, n=12, b=4).block_q == 64  # 48 programs -> 96
        for b in (8, 128):  # 96 programs of 128 rows and more: as before
            assert pick_config(128, 64, quant=quant, qtype=qtype, n=12, b=b).block_q == 128
