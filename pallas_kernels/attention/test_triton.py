"""The Pallas-Triton flash attention on packed float QKV against float64."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.attention.api import attention_packed
from pallas_kernels.attention.test_attention import _attention_np
from pallas_kernels.attention.triton import attention_packed_triton
from pallas_kernels.flash.config import AttentionConfig
from pallas_kernels.testing import rel_error
from pallas_kernels.testing_modes import Interpreted, needs_gpu

SHAPES = [(2, 37, 2, 32), (1, 130, 2, 16), (2, 128, 12, 64)]


def _mask(b, s):
    mask = np.ones((b, s), bool)
    mask[0, s // 3 :] = False  # a padded sequence
    return mask


class TritonAttentionTest:
    @pytest.mark.parametrize("b, s, n, d", SHAPES)
    @pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
    @pytest.mark.parametrize("with_bias", [False, True])
    def test_float_against_float64(self, b, s, n, d, dtype, with_bias):
        rng = np.random.default_rng(b * s + n)
        qkv = jnp.asarray(rng.standard_normal((b, s, 3, n, d)), dtype)
        mask = _mask(b, s)
        bias = jnp.asarray(rng.standard_normal((1, n, s, s)), jnp.float32) if with_bias else None
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


def test_kernel_declines_what_it_cannot_take():
    with pytest.raises(NotImplementedError, match="bf16/fp16"):
        attention_packed_triton(jnp.zeros((1, 8, 3, 1, 16), jnp.float32), jnp.ones((1, 8), bool), scale=1.0,
                                interpret=True)
    with pytest.raises(ValueError, match="block_k=24 is not a power of two"):
        attention_packed_triton(jnp.zeros((1, 8, 3, 1, 16), jnp.bfloat16), jnp.ones((1, 8), bool), scale=1.0,
                                config=AttentionConfig(16, 24), interpret=True)
    with pytest.raises(ValueError, match="heads=5 does not divide the 2 heads"):
        attention_packed_triton(jnp.zeros((1, 8, 3, 2, 16), jnp.bfloat16), jnp.ones((1, 8), bool), scale=1.0,
                                config=AttentionConfig(16, 16, heads=5), interpret=True)
    with pytest.raises(NotImplementedError, match="head dim 8"):
        attention_packed_triton(jnp.zeros((1, 8, 3, 1, 8), jnp.bfloat16), jnp.ones((1, 8), bool), scale=1.0,
                                interpret=True)
