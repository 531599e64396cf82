from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.attention.api import attention
from pallas_kernels.testing import REL_TOL, rel_error


def _attention_np(q, k, v, mask, bias, scale):
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    logits = np.einsum("bqnd,bknd->bnqk", q, k) * scale
    if bias is not None:
        logits = logits + np.asarray(bias, np.float64)
    logits = np.where(mask[:, None, None, :], logits, -np.inf)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bnqk,bknd->bqnd", p, v)


class AttentionTest:
    IMPLEMENTATION = "xla"

    @pytest.mark.parametrize("b, s, n, d", [(1, 1, 1, 8), (3, 37, 4, 32), (2, 128, 12, 64)])
    @pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
    @pytest.mark.parametrize("with_bias", [False, True])
    def test_against_float64_with_padding(self, b, s, n, d, dtype, with_bias):
        rng = np.random.default_rng(s * n)
        q, k, v = (jnp.asarray(rng.standard_normal((b, s, n, d)), dtype) for _ in range(3))
        lengths = rng.integers(1, s + 1, b)
        lengths[0] = s
        mask = np.arange(s)[None, :] < lengths[:, None]
        bias = rng.standard_normal((1, n, s, s)).astype(np.float32) if with_bias else None
        out = attention(q, k, v, jnp.asarray(mask), bias, scale=d**-0.5, implementation=self.IMPLEMENTATION)
        ref = _attention_np(q, k, v, mask, bias, d**-0.5)
        assert out.dtype == jnp.dtype(dtype)
        assert rel_error(out, ref) < REL_TOL[dtype]

    def test_fully_masked_row_is_finite(self):
        q = jnp.ones((1, 4, 2, 8))
        out = attention(q, q, q, jnp.zeros((1, 4), bool), scale=0.1, implementation=self.IMPLEMENTATION)
        assert np.isfinite(np.asarray(out)).all()


class TestAttentionXla(AttentionTest):
    IMPLEMENTATION = "xla"


def test_shape_errors():
    q = jnp.ones((2, 4, 3, 8))
    with pytest.raises(ValueError, match=r"key_mask.shape=\(2, 5\), expected \(2, 4\)"):
        attention(q, q, q, jnp.ones((2, 5), bool), scale=1.0)
    with pytest.raises(ValueError, match=r"bias.shape=\(1, 3, 4, 5\)"):
        attention(q, q, q, jnp.ones((2, 4), bool), jnp.ones((1, 3, 4, 5)), scale=1.0)
