from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.quantized_attention.api import quantized_attention
from pallas_kernels.testing import rel_error


def _oracle(q, k, v, sq, sk, sv, mask, scale, probs, p_scale, p_top, p_low):
    """float64: exact logits from the 8-bit codes, softmax, P rounded onto its grid."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    logits = np.einsum("bqnd,bknd->bnqk", q, k) * sq * sk * scale
    logits = np.where(mask[:, None, None, :], logits, -np.inf)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    if probs != "float":
        p = np.clip(np.round(p / p_scale), p_low, p_top) * p_scale
    return np.einsum("bnqk,bknd->bqnd", p, v * sv)


class QuantizedAttentionTest:
    IMPLEMENTATION = "xla"

    @pytest.mark.parametrize("b, s, n, d", [(1, 3, 1, 8), (2, 37, 4, 32), (2, 128, 12, 32)])
    @pytest.mark.parametrize("probs", ["uint8", "int8", "float"])
    def test_int8_against_float64(self, b, s, n, d, probs):
        rng = np.random.default_rng(s + n)
        q, k, v = (rng.integers(-127, 128, (b, s, n, d)).astype(np.int8) for _ in range(3))
        sq, sk, sv = np.float32(0.02), np.float32(0.03), np.float32(0.05)
        lengths = rng.integers(1, s + 1, b)
        lengths[0] = s
        mask = np.arange(s)[None] < lengths[:, None]
        p_scale = {"uint8": 1 / 255, "int8": 1 / 127, "float": None}[probs]
        out = quantized_attention(
            jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), jnp.float32(sq), jnp.float32(sk), jnp.float32(sv),
            jnp.asarray(mask), scale=d**-0.5, qtype="int8", probs=probs,
            probs_scale=jnp.float32(p_scale) if probs == "int8" else None, implementation=self.IMPLEMENTATION,
        )
        ref = _oracle(q, k, v, sq, sk, sv, mask, d**-0.5, probs, p_scale, 255 if probs == "uint8" else 127, 0)
        # Only float32 softmax rounding separates the two; it can move a P value
        # across a rounding boundary, one code (1/255 or 1/127 of P) at most.
        assert rel_error(out, ref) < (1e-5 if probs == "float" else 2e-3)

    def test_uint8_uses_twice_the_codes_of_naive_int8(self):
        """SAMP's appendix: symmetric int8 spends half its codes on negative P; uint8 does not."""
        rng = np.random.default_rng(0)
        b, s, n, d = 2, 64, 4, 32
        q, k, v = (rng.integers(-127, 128, (b, s, n, d)).astype(np.int8) for _ in range(3))
        mask = np.ones((b, s), bool)
        args = (jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), jnp.float32(0.01), jnp.float32(0.01),
                jnp.float32(0.05), jnp.asarray(mask))
        exact = quantized_attention(*args, scale=d**-0.5, qtype="int8", probs="float")
        errors = {}
        for probs in ("int8", "uint8"):
            out = quantized_attention(*args, scale=d**-0.5, qtype="int8", probs=probs,
                                      probs_scale=jnp.float32(1 / 127), implementation=self.IMPLEMENTATION)
            errors[probs] = rel_error(out, exact)
        assert errors["uint8"] < 0.65 * errors["int8"]  # half the step: about half the error

    def test_fp8(self):
        rng = np.random.default_rng(1)
        q, k, v = (jnp.asarray(rng.standard_normal((2, 16, 2, 16)) * 20, jnp.float8_e4m3fn) for _ in range(3))
        mask = jnp.ones((2, 16), bool)
        out = quantized_attention(q, k, v, jnp.float32(0.05), jnp.float32(0.05), jnp.float32(0.05), mask,
                                  scale=0.25, qtype="fp8", probs="float", implementation=self.IMPLEMENTATION)
        ref = _oracle(q, k, v, 0.05, 0.05, 0.05, np.ones((2, 16), bool), 0.25, "float", None, None, None)
        assert rel_error(out, ref) < 1e-5


class TestQuantizedAttentionXla(QuantizedAttentionTest):
    IMPLEMENTATION = "xla"


def test_errors():
    z = jnp.zeros((1, 4, 2, 8), jnp.int8)
    one = jnp.float32(1)
    with pytest.raises(ValueError, match="probs='int8' \\(naive\\) needs a calibrated probs_scale"):
        quantized_attention(z, z, z, one, one, one, jnp.ones((1, 4), bool), scale=1.0, qtype="int8", probs="int8")
    with pytest.raises(ValueError, match="probs='int4' must be one of"):
        quantized_attention(z, z, z, one, one, one, jnp.ones((1, 4), bool), scale=1.0, qtype="int8", probs="int4")
    with pytest.raises(ValueError, match="q_q.dtype=float32, expected int8"):
        quantized_attention(z.astype(jnp.float32), z, z, one, one, one, jnp.ones((1, 4), bool), scale=1.0, qtype="int8")
