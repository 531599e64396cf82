"""The kernels' spellings of round-to-nearest-even equal `jnp.round` (which rounds half to even)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.quant_types import quantize_in_kernel, quantize_values, round_half_even_in_kernel


def _values() -> np.ndarray:
    rng = np.random.default_rng(0)
    ties = np.arange(-300, 300) + 0.5  # every tie the 8-bit ranges meet, both parities
    near = np.concatenate([ties + d for d in (np.float32(2**-16), -np.float32(2**-16))])
    return np.concatenate([ties, near, rng.uniform(-260, 260, 100_000), [0.0, -0.0, 127.0, -127.0]]).astype(np.float32)


@pytest.mark.parametrize("compiled", [False, True])
def test_round_half_even_in_kernel(compiled):
    y = jnp.asarray(_values())
    # op by op, as a compiled kernel computes it: under jit XLA folds the compiled form's two adds away
    with jax.disable_jit():
        got = np.asarray(round_half_even_in_kernel(y, compiled=compiled))
    np.testing.assert_array_equal(got, np.round(np.asarray(y)))


@pytest.mark.parametrize("qtype", ["int8", "uint8", "fp8"])
@pytest.mark.parametrize("jit", [False, True])
def test_quantize_in_kernel_equals_quantize_values(qtype, jit):
    x = jnp.asarray(_values() * 0.03)
    inv = 1.0 / jnp.float32(0.03)  # the reciprocal quantize_values takes
    fn = lambda v: quantize_in_kernel(v, inv, qtype)
    if jit:  # nothing for XLA's simplifier to fold: the shifted add's bits are used, not undone
        got = np.asarray(jax.jit(fn)(x), np.float32)
    else:
        with jax.disable_jit():
            got = np.asarray(fn(x), np.float32)
    want = np.asarray(quantize_values(x, jnp.float32(0.03), qtype), np.float32)
    np.testing.assert_array_equal(got, want)
