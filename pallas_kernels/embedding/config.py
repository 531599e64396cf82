"""The fused embedding kernel's launch shape, and which inputs it takes (embedding/README.md says why)."""

from __future__ import annotations

import jax.numpy as jnp

from pallas_kernels.triton_rows import RowConfig

_FLOATS = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def pick_config() -> RowConfig:
    """4 tokens per program on 4 warps, whatever the output: three gathered rows a token keep it memory-bound."""
    return RowConfig(block_rows=4, num_warps=4)


def unsupported(input_ids, word_table) -> str | None:
    """Why the kernel cannot take these ids and this table (the other tables share its dtype; anything with
    `.shape` and `.dtype`, such as `jax.ShapeDtypeStruct`), or None where it can."""
    if not jnp.issubdtype(input_ids.dtype, jnp.integer):
        return f"input_ids.dtype={jnp.dtype(input_ids.dtype)} is not an integer type"
    if jnp.dtype(word_table.dtype) not in _FLOATS:
        return f"word_table.dtype={jnp.dtype(word_table.dtype)} is not float32, bfloat16 or float16"
    return None


def supports(input_ids, word_table) -> bool:
    """Whether the kernel takes these ids and tables (see `unsupported`)."""
    return unsupported(input_ids, word_table) is None
