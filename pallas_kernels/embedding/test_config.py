"""The fused embedding kernel's launch shape and what it takes, on shapes alone."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels.embedding.config import pick_config, supports, unsupported
from pallas_kernels.triton_rows import RowConfig


def test_launch_shape():
    assert pick_config() == RowConfig(block_rows=4, num_warps=4)


def test_takes_integer_ids_and_float_tables():
    for ids in (jnp.int32, jnp.int64, jnp.uint16):
        for table in (jnp.float32, jnp.bfloat16, jnp.float16):
            assert supports(jax.ShapeDtypeStruct((8, 128), ids), jax.ShapeDtypeStruct((30522, 768), table))


def test_declines_float_ids_and_8bit_tables():
    ids, table = jax.ShapeDtypeStruct((8, 128), jnp.int32), jax.ShapeDtypeStruct((30522, 768), jnp.float32)
    assert unsupported(jax.ShapeDtypeStruct((8, 128), jnp.float32), table) == "input_ids.dtype=float32 is not an integer type"
    assert not supports(ids, jax.ShapeDtypeStruct((30522, 768), jnp.int8))
