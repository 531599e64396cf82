"""The kernels' spellings of the 8-bit rounding (`quant_kernel`) equal the reference (`quant_types`, `jnp.round`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.quant_kernel import int8_codes_from_half, quantize_in_kernel, round_half_even_in_kernel
from pallas_kernels.quant_types import quantize_values


def _values() -> np.ndarray:
    rng = np.random.default_rng(0)
    ties = np.arange(-300, 300) + 0.5  # every tie the 8-bit ranges meet, both parities
    near = np.concatenate([ties + d for d in (np.float32(2**-16), -np.float32(2**-16))])
    return np.concatenate([ties, near, rng.uniform(-260, 260, 100_000), [0.0, -0.0, 127.0, -127.0]]).astype(np.float32)


@pytest.mark.parametrize("jit", [False, True])
def test_round_half_even_in_kernel_interpreted(jit):
    """The interpreter's form runs the compiled form's two adds, kept apart by a barrier XLA does not fold."""
    y = jnp.asarray(_values())
    fn = lambda v: round_half_even_in_kernel(v, compiled=False)
    if jit:
        got = np.asarray(jax.jit(fn)(y))
    else:
        with jax.disable_jit():
            got = np.asarray(fn(y))
    np.testing.assert_array_equal(got, np.round(np.asarray(y)))


def test_round_half_even_in_kernel_compiled_form_op_by_op():
    """The compiled form has no barrier: op by op it rounds as a compiled kernel does (under jit XLA would fold its
    two adds away; Triton does not reassociate them, and the GPU kernel tests check it there)."""
    y = jnp.asarray(_values())
    with jax.disable_jit():
        got = np.asarray(round_half_even_in_kernel(y, compiled=True))
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


def test_int8_codes_from_half_round_half_even():
    q = np.clip(_values(), -127, 127).astype(np.float16)  # as the fp16 epilogue holds them
    got = np.asarray(jax.jit(int8_codes_from_half)(jnp.asarray(q)))
    np.testing.assert_array_equal(got, np.round(q.astype(np.float32)).astype(np.int8))

