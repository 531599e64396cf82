"""The residual LayerNorm kernel's launch shape and what it takes, on shapes alone."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from pallas_kernels.layer_norm.config import pick_config, supports, unsupported
from pallas_kernels.triton_rows import RowConfig


def test_launch_shape():
    assert pick_config(codes=False) == RowConfig(block_rows=4, num_warps=4)
    assert pick_config(codes=True) == RowConfig(block_rows=1, num_warps=2)
    assert pick_config(codes=False, parts=3) == RowConfig(block_rows=1, num_warps=4)
    assert pick_config(codes=True, parts=3) == RowConfig(block_rows=1, num_warps=2)


@pytest.mark.parametrize("x, residual", [
    ((16384, 768), jnp.bfloat16), ((3, 128, 768), jnp.int8), ((2, 9, 100), jnp.float8_e4m3fn), ((1, 8), None),
])
def test_takes_float_rows_with_float_or_8bit_residuals(x, residual):
    sds = lambda dt: jax.ShapeDtypeStruct(x, dt)
    for dtype in (jnp.float32, jnp.bfloat16, jnp.float16):
        assert supports(sds(dtype), None if residual is None else sds(residual))


def test_declines_codes_as_x():
    x = jax.ShapeDtypeStruct((4, 768), jnp.int8)
    assert not supports(x)
    assert unsupported(x) == "x.dtype=int8 is not float32, bfloat16 or float16"
    assert not supports(jax.ShapeDtypeStruct((4, 768), jnp.float32), jax.ShapeDtypeStruct((4, 768), jnp.int32))
