"""Segment ids as the key mask (several sequences packed in one row): each sequence's rows equal that sequence
attended alone, in the references and in both flash kernels (interpreted here, compiled on the GPU); a 0/1
integer mask is the bool mask, bit for bit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.attention.api import attention_packed
from pallas_kernels.flash.reference import allowed_keys
from pallas_kernels.quantized_attention.api import quantized_attention_packed
from pallas_kernels.testing_modes import Interpreted, needs_gpu

# one row of three sequences and a padded tail, one row of a single sequence: S = 80 (two 64-key blocks)
LENGTHS = ([11, 40, 23], [80])
S, N, D = 80, 2, 32


def _segments() -> np.ndarray:
    seg = np.zeros((len(LENGTHS), S), np.int32)
    for r, lengths in enumerate(LENGTHS):
        seg[r, : sum(lengths)] = np.repeat(np.arange(1, len(lengths) + 1), lengths)
    return seg


def _alone(run, qkv: np.ndarray) -> list[np.ndarray]:
    """`run(qkv [1, L, 3, N, D], mask [1, L])` on each sequence of `LENGTHS` by itself."""
    outs = []
    for r, lengths in enumerate(LENGTHS):
        start = 0
        for n in lengths:
            outs.append(np.asarray(run(jnp.asarray(qkv[r : r + 1, start : start + n]), jnp.ones((1, n), bool)))[0])
            start += n
    return outs


def _packed_rows(out: np.ndarray) -> list[np.ndarray]:
    rows = []
    for r, lengths in enumerate(LENGTHS):
        start = 0
        for n in lengths:
            rows.append(out[r, start : start + n])
            start += n
    return rows


def test_allowed_keys_own_segment_padding_queries_see_every_real_key():
    seg = jnp.asarray([[1, 1, 2, 0]])
    want = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [1, 1, 1, 0]], bool)
    np.testing.assert_array_equal(np.asarray(allowed_keys(seg))[0, 0], want)
    assert allowed_keys(jnp.asarray([[True, False]])).shape == (1, 1, 1, 2)


class SegmentsTest:
    implementation = "xla"

    def test_float16_sequences_as_if_alone(self):
        self._float_sequences_as_if_alone("float16")

    def _float_sequences_as_if_alone(self, dtype):
        qkv = np.random.default_rng(0).standard_normal((len(LENGTHS), S, 3, N, D)).astype(dtype)
        run = lambda x, m: attention_packed(x, m, scale=D**-0.5, implementation=self.implementation)  # noqa: E731
        got = _packed_rows(np.asarray(run(jnp.asarray(qkv), jnp.asarray(_segments())), np.float32))
        want = _alone(lambda x, m: attention_packed(x, m, scale=D**-0.5, implementation="xla"), qkv)
        tol = 2e-3 if dtype == "float16" else 1e-6  # summation order over more (masked) keys
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w.astype(np.float32), atol=tol, rtol=tol)

    @pytest.mark.parametrize("qtype", ["int8", "fp8"])
    def test_8bit_context_codes_as_if_alone(self, qtype):
        rng = np.random.default_rng(1)
        shape = (len(LENGTHS), S, 3, N, D)
        raw = rng.integers(-127, 128, shape) if qtype == "int8" else rng.standard_normal(shape) * 50
        qkv = np.asarray(jnp.asarray(raw, jnp.int8 if qtype == "int8" else jnp.float8_e4m3fn))
        scales = [jnp.float32(v) for v in (0.02, 0.03, 0.01)]
        kw = dict(scale=D**-0.5, qtype=qtype, probs="uint8", out_scale=jnp.float32(0.01))

        def run(x, m, impl):
            return quantized_attention_packed(x, *scales, m, **kw, implementation=impl)

        got = _packed_rows(np.asarray(run(jnp.asarray(qkv), jnp.asarray(_segments()), self.implementation), np.float32))
        with jax.default_device(jax.devices("cpu")[0]):  # XLA's GPU fp8 dot accumulates at reduced precision
            want = _alone(lambda x, m: run(x, m, "xla"), qkv)
        for g, w in zip(got, want):
            w = w.astype(np.float32)
            # codes: the same, but where P's float32 sums in another order put a value on the other side of a tie
            step = 1.0 if qtype == "int8" else 2.0 ** np.maximum(np.floor(np.log2(np.maximum(np.abs(w), 2.0**-6))) - 3, -9)
            assert np.all(np.abs(g - w) <= step * 1.0001) and np.mean(g == w) > 0.99

    def test_zero_one_integer_mask_is_the_bool_mask(self):
        qkv = jnp.asarray(np.random.default_rng(2).standard_normal((2, S, 3, N, D)), jnp.float16)
        mask = np.ones((2, S), bool)
        mask[0, 50:] = False
        run = lambda m: np.asarray(attention_packed(qkv, m, scale=D**-0.5, implementation=self.implementation))  # noqa: E731
        np.testing.assert_array_equal(run(jnp.asarray(mask.astype(np.int32))), run(jnp.asarray(mask)))


class TestSegmentsReference(SegmentsTest):
    def test_float32_sequences_as_if_alone(self):  # the kernels take 16-bit Q, K, V
        self._float_sequences_as_if_alone("float32")


class TestSegmentsTritonInterpreted(Interpreted, SegmentsTest):
    implementation = "triton"


class TestSegmentsTritonCompiled(SegmentsTest):
    pytestmark = needs_gpu()
    implementation = "triton"


def test_float_mask_named_in_the_error():
    with pytest.raises(ValueError, match="key_mask.dtype=float32"):
        attention_packed(jnp.zeros((1, 8, 3, 1, 16), jnp.float16), jnp.ones((1, 8), jnp.float32), scale=0.25)

