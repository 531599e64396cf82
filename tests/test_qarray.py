"""Quantize/dequantize round trips (property-based) and QArray's validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from samp_jax.quant.qarray import QArray, fake_quant, quantize, quantize_weight

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)
# XLA on CPU flushes float32 subnormals to zero; real tensors hold none.
normal = st.one_of(st.just(0.0), st.floats(2.0**-90, 1e3, width=32), st.floats(-1e3, -(2.0**-90), width=32))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 9), st.integers(1, 17)), elements=finite))
def test_int8_round_trip_error_is_at_most_half_a_step(x):
    q = quantize(x, "int8")
    assert q.values.dtype == jnp.int8 and np.abs(np.asarray(q.values)).max() <= 127
    err = np.abs(np.asarray(q.dequantize()) - x)
    assert np.all(err <= np.asarray(q.scale) / 2 * (1 + 1e-6) + 1e-30)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 9), st.integers(1, 17)), elements=normal))
def test_per_channel_int8_uses_each_columns_range(x):
    q = quantize_weight(x, "int8")
    assert q.scale.shape == (1, x.shape[1]) and q.channel_axis == 1
    err = np.abs(np.asarray(q.dequantize()) - x)
    assert np.all(err <= np.asarray(q.scale) / 2 * (1 + 1e-6) + 1e-30)
    # every non-zero column reaches the top code
    cols = np.abs(x).max(0) > 0
    assert np.all(np.abs(np.asarray(q.values)).max(0)[cols] == 127)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.integers(1, 64), elements=finite))
def test_fp8_round_trip_relative_error(x):
    q = quantize(x, "fp8")
    assert q.values.dtype == jnp.float8_e4m3fn
    back = np.asarray(q.dequantize())
    scale = float(np.asarray(q.scale).reshape(()))
    # e4m3 keeps 3 mantissa bits: relative error <= 2^-4 for normal values; below
    # its smallest normal (2^-6 in scaled units) the absolute error is <= 2^-10. The
    # 1e-30 is the int8 tests' allowance for subnormal inputs, which XLA on the CPU
    # flushes to zero; a NaN fails any bound.
    bound = np.maximum(np.abs(x) * 2.0**-4, 2.0**-10 * scale) * (1 + 1e-6) + 1e-30
    assert np.all(np.abs(back - x) <= bound)


@pytest.mark.parametrize("qtype", ["int8", "fp8"])
def test_tiny_tensors_keep_a_normal_scale(qtype):
    # Hypothesis found these: their amax / qmax is a subnormal, which the CPU flushes to zero (x / 0: NaN)
    for x in ([0.0, 1.8062812e-37], [1.1754944e-38], [-3e-37, 2e-38, 0.0]):
        x = np.asarray(x, np.float32)
        q = quantize(x, qtype)
        scale = float(np.asarray(q.scale).reshape(()))
        assert scale >= np.finfo(np.float32).tiny
        back = np.asarray(q.dequantize())
        assert np.isfinite(back).all() and np.all(np.abs(back - x) <= np.abs(x) * 2.0**-4 + scale / 2)


def test_zero_tensor_and_uint8_clip():
    q = quantize(np.zeros((2, 3), np.float32), "int8")
    assert np.isfinite(np.asarray(q.scale)).all() and not np.asarray(q.values).any()
    p = fake_quant(jnp.array([-0.2, 0.0, 0.2, 1.0, 1.3]), jnp.float32(1 / 255), "uint8")
    np.testing.assert_allclose(np.asarray(p), [0.0, 0.0, 51 / 255, 1.0, 1.0], rtol=1e-6)


def test_qarray_is_a_pytree_with_static_metadata():
    q = quantize_weight(np.arange(12, dtype=np.float32).reshape(3, 4) - 5, "int8")
    leaves, tree = jax.tree_util.tree_flatten(q)
    assert len(leaves) == 2
    again = jax.tree_util.tree_unflatten(tree, leaves)
    assert again.qtype == "int8" and again.channel_axis == 1
    doubled = jax.jit(lambda a: a.dequantize() * 2)(q)
    np.testing.assert_allclose(np.asarray(doubled), 2 * np.asarray(q.dequantize()))


@pytest.mark.parametrize(
    "values, scale, axis, message",
    [
        (np.zeros((3, 4), np.int8), np.ones((4,), np.float32), 1, r"scale.shape=\(4,\) must have the rank"),
        (np.zeros((3, 4), np.int8), np.ones((1, 3), np.float32), 1, r"does not fit values.shape=\(3, 4\)"),
        (np.zeros((3, 4), np.int8), np.ones((3, 4), np.float32), None, "channel_axis=None"),
    ],
)
def test_validator_quotes_shapes(values, scale, axis, message):
    with pytest.raises(ValueError, match=message):
        QArray(values, scale, "int8", axis)
    with pytest.raises(ValueError, match="unknown qtype='int4'"):
        QArray(values, np.ones((1, 1), np.float32), "int4")
