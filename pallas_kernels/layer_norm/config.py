"""The residual LayerNorm kernel's launch shape, and which inputs it takes (layer_norm/README.md says why)."""

from __future__ import annotations

import jax.numpy as jnp

from pallas_kernels.triton_rows import RowConfig

_FLOATS = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
_CODES = (jnp.dtype(jnp.int8), jnp.dtype(jnp.float8_e4m3fn))


def pick_config(*, codes: bool, parts: int = 1) -> RowConfig:
    """Rows per program and warps: 4 rows on 4 warps; 8-bit outputs (`codes`, rows split into unpadded tiles)
    1 row on 2 warps; a split-K GEMM's partial products (`parts > 1`) 1 row, spreading their extra loads over
    more SMs."""
    return RowConfig(block_rows=1 if codes or parts > 1 else 4, num_warps=2 if codes else 4)


def unsupported(x, residual=None) -> str | None:
    """Why the kernel cannot take `x` (a GEMM output, or its partial products) and `residual` (anything with
    `.shape` and `.dtype`, such as `jax.ShapeDtypeStruct`), or None where it can."""
    if jnp.dtype(x.dtype) not in _FLOATS:
        return f"x.dtype={jnp.dtype(x.dtype)} is not float32, bfloat16 or float16"
    if residual is not None and jnp.dtype(residual.dtype) not in _FLOATS + _CODES:
        return f"residual.dtype={jnp.dtype(residual.dtype)} is neither a float nor 8-bit codes"
    return None


def supports(x, residual=None) -> bool:
    """Whether the kernel takes these rows (see `unsupported`)."""
    return unsupported(x, residual) is None
