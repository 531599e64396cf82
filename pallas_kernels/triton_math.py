"""Math for Pallas-Triton kernels as the single PTX instruction that Triton's own lowering takes several for.

The interpreter cannot run inline PTX: with `compiled=False` each function takes the nearest XLA op, which
differs from the instruction only in its last rounding (`test_triton_math.py` states by how much, and on the
GPU checks that the two agree).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental.pallas import triton as pltriton


def _asm(instruction: str, *args: jax.Array) -> jax.Array:
    """One float32 PTX instruction applied elementwise: `$0` is the result, `$1 ...` the arguments."""
    return pltriton.elementwise_inline_asm(instruction, args=list(args), constraints=",".join(["=f"] + ["f"] * len(args)),
                                           pack=1, result_shape_dtypes=[jax.ShapeDtypeStruct(args[0].shape, args[0].dtype)])[0]


def fma(a: jax.Array, b, c, compiled: bool) -> jax.Array:
    """`a * b + c` in float32, as one `fma.rn.f32` in a compiled kernel.

    Triton emits IEEE multiplies and adds that ptxas does not fuse (the 8-bit LayerNorm's SASS has no `FFMA`
    without it; Nsight Compute on the H100). The interpreter takes `a * b + c`, which XLA may fuse or round
    twice.
    """
    a, b, c = jnp.broadcast_arrays(a, b, c)
    if not compiled:
        return a * b + c
    return _asm("fma.rn.f32 $0, $1, $2, $3;", a, b, c)


def exp2(x: jax.Array, compiled: bool) -> jax.Array:
    """`2 ** x` in float32, as one `ex2.approx.ftz.f32` in a compiled kernel.

    Triton lowers `exp2` to `ex2.approx.f32`, which keeps subnormal results: ptxas wraps each one in a range
    test and two multiplies (`FSETP`, two `FMUL` around the `MUFU.EX2`), 3 of the 8-bit attention's 22
    instructions per logit (Nsight Compute, H100). Flushed, a result below 2^-126 is zero: a softmax
    term that small is under every probability code's half step and under float32's rounding of the row's
    sum. The interpreter takes `jnp.exp2`.
    """
    if not compiled:
        return jnp.exp2(x)
    return _asm("ex2.approx.ftz.f32 $0, $1;", x)
