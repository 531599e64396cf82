"""triton_math's single-instruction forms in a Pallas-Triton kernel: what the interpreter runs in their place, what the
GPU runs, and that the two agree."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
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


def _exp2_inputs() -> np.ndarray:
    return np.linspace(-160.0, 100.0, N, dtype=np.float32)


def _fma_inputs() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    return tuple(rng.standard_normal(N).astype(np.float32) * s for s in (3.0, 5.0, 10.0))


def test_exp2_interpreted_is_xla_exp2():
    """The interpreter cannot run `ex2.approx.ftz`: it takes XLA's exp2 (the compiled kernels' results are within
    both forms' error bounds of it, `test_exp2_compiled_agrees_with_interpreted`)."""
    x = _exp2_inputs()
    np.testing.assert_array_equal(_apply(exp2, x, compiled=False), np.asarray(jnp.exp2(jnp.asarray(x))))


def test_fma_interpreted_rounds_at_most_twice():
    """The interpreter cannot run `fma.rn.f32`: it takes XLA's `a * b + c`, which XLA's CPU compiler may fuse or
    round twice; either is within one float32 ulp of the exact value."""
    a, b, c = _fma_inputs()
    got = _apply(fma, a, b, c, compiled=False)
    exact = a.astype(np.float64) * b + c  # the product of two float32 is exact in float64
    assert np.all(np.abs(got - exact) <= np.spacing(np.abs(exact).astype(np.float32)) + 1e-30)


class TestCompiled:
    pytestmark = needs_gpu()

    def test_exp2_compiled_is_ex2_approx_ftz(self):
        x = _exp2_inputs()
        got = _apply(exp2, x, compiled=True)
        want, normal = np.exp2(x.astype(np.float64)), x >= -126
        # ex2.approx: relative error within 2^-22 on normal results (PTX ISA)
        assert np.all(np.abs(got[normal] - want[normal]) <= 2.0**-21 * want[normal])
        assert np.all(got[~normal] == 0.0)  # flushed to zero, not left subnormal

    def test_exp2_compiled_agrees_with_interpreted(self):
        """Within the two forms' error bounds of each other. jax lowers exp2 to `exp(x * ln 2)`: rounding the
        product (and ln 2) costs up to 2 |x| ln 2 2^-24 relative, XLA's exp up to 2 ulp (2^-22); `ex2.approx`
        2^-22. Flushed subnormals differ by under 2^-126."""
        x = _exp2_inputs()
        got, interpreted = _apply(exp2, x, compiled=True), _apply(exp2, x, compiled=False)
        relative = 2.0**-21 + 2 * np.abs(x.astype(np.float64)) * np.log(2) * 2.0**-24
        excess = np.abs(got - interpreted.astype(np.float64)) - (relative * interpreted + 2.0**-126)
        worst = int(np.argmax(excess))
        assert excess[worst] <= 0, (f"x={x[worst]:g}: compiled {got[worst]:.9g}, interpreted {interpreted[worst]:.9g}, "
                                    f"relative difference {abs(got[worst] / interpreted[worst] - 1):.3g}")

    def test_fma_compiled_rounds_once(self):
        """Fused: exactly the float32 rounding of the exact result."""
        a, b, c = _fma_inputs()
        exact = a.astype(np.float64) * b + c
        np.testing.assert_array_equal(_apply(fma, a, b, c, compiled=True), exact.astype(np.float32))

    def test_fma_compiled_agrees_with_interpreted(self):
        """The interpreter's `a * b + c` may round the product first (XLA's GPU compiler does not always fuse it):
        half an ulp of the product, then half of the result's, against the fused form's one rounding. Where the
        sum cancels, the product's ulp is many of the result's (H200: 1 ulp of the result was exceeded)."""
        a, b, c = _fma_inputs()
        got, interpreted = _apply(fma, a, b, c, compiled=True), _apply(fma, a, b, c, compiled=False)
        product = np.abs(a * b)
        bound = 0.5 * np.spacing(product) + np.spacing(np.abs(got))
        worst = int(np.argmax(np.abs(got - interpreted) - bound))
        assert np.all(np.abs(got - interpreted) <= bound), (
            f"a={a[worst]:.9g} b={b[worst]:.9g} c={c[worst]:.9g}: fused {got[worst]:.9g}, interpreted {interpreted[worst]:.9g}")
