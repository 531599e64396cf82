"""triton_math's single-instruction forms, in a Pallas-Triton kernel: interpreted (XLA's ops) and compiled (GPU)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels.testing_modes import needs_gpu
from pallas_kernels.triton_math import exp2, fma

N = 4096


def _apply(fn, *arrays: np.ndarray, compiled: bool) -> np.ndarray:
    def kernel(*refs):
        *ins, out = refs
        out[...] = fn(*(r[...] for r in ins), compiled=compiled)

    call = pl.pallas_call(kernel, out_shape=jax.ShapeDtypeStruct((N,), jnp.float32), interpret=not compiled,
                          compiler_params=pltriton.CompilerParams(num_warps=4))
    return np.asarray(call(*(jnp.asarray(a) for a in arrays)))


def _check_exp2(compiled: bool) -> None:
    x = np.linspace(-160.0, 100.0, N, dtype=np.float32)
    got = _apply(exp2, x, compiled=compiled)
    if not compiled:  # XLA's exp2, as the kernels' references compute it
        np.testing.assert_array_equal(got, np.asarray(jnp.exp2(jnp.asarray(x))))
        return
    want, normal = np.exp2(x.astype(np.float64)), x >= -126
    # ex2.approx: relative error within 2^-22 on normal results (PTX ISA)
    assert np.all(np.abs(got[normal] - want[normal]) <= 2.0**-21 * want[normal])
    assert np.all(got[~normal] == 0.0)  # flushed to zero, not left subnormal


def _check_fma(compiled: bool) -> None:
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(N).astype(np.float32) * s for s in (3.0, 5.0, 10.0))
    got = _apply(fma, a, b, c, compiled=compiled)
    exact = a.astype(np.float64) * b + c  # the product of two float32 is exact in float64
    ulp = np.spacing(np.abs(exact).astype(np.float32))
    # one rounding of the exact value (fused), or two (the interpreter's multiply then add)
    assert np.all(np.abs(got - exact) <= (0.5 if compiled else 1.0) * ulp + 1e-30)
    if compiled:  # fused: exactly the float32 rounding of the exact result, where a separate multiply is not
        assert np.mean(got == exact.astype(np.float32)) == 1.0


@pytest.mark.parametrize("check", [_check_exp2, _check_fma])
def test_interpreted(check):
    check(compiled=False)


class TestCompiled:
    pytestmark = needs_gpu()

    @pytest.mark.parametrize("check", [_check_exp2, _check_fma])
    def test_compiled(self, check):
        check(compiled=True)
