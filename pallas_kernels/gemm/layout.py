"""Shared-memory layouts of the Mosaic GEMM's operand tiles, and how the weight tile reaches `wgmma`."""

from __future__ import annotations

import jax.numpy as jnp
from jax.experimental.pallas import mosaic_gpu as plgpu


def swizzled(minor_elems: int, dtype) -> tuple:
    """TMA/`wgmma` shared-memory transforms for tiles whose minor dimension holds `minor_elems` of `dtype`."""
    itemsize = jnp.dtype(dtype).itemsize
    swizzle = plgpu.find_swizzle(minor_elems * itemsize * 8)
    return plgpu.TilingTransform((8, swizzle // itemsize)), plgpu.SwizzleTransform(swizzle)


def weight_kn(in_dtype) -> bool:
    """Whether the weight streams as `[K, N]` tiles: 16-bit `wgmma` reads B either way round, so the float
    GEMM takes the `[K, N]` weight as stored; 8-bit `wgmma` reads B K-major only, so the 8-bit GEMM takes
    the packed `[N, K]` codes (`quantized_matmul.pack_weight`) and hands each tile over transposed."""
    return jnp.dtype(in_dtype).itemsize == 2


def accumulator_dtype(in_dtype):
    """int32 for int8 operands, float32 for fp8 and 16-bit floats."""
    return jnp.int32 if jnp.dtype(in_dtype) == jnp.int8 else jnp.float32


def k_major_operand(tile, scratch, interpret: bool):
    """A K-major `[tile_n, tile_k]` weight tile in shared memory as `wgmma`'s B operand, `[tile_k, tile_n]`.

    Compiled: a transposed view of the tile (no data moves; `wgmma` reads it K-major). The CPU interpreter
    cannot transpose a view, so it copies the transposed tile into `scratch` (`[tile_k, tile_n]`, allocated
    only when interpreting, `transpose_scratch`): the same values, from the same K-major tile the compiled
    kernel reads.
    """
    if not interpret:
        return tile.T
    scratch[...] = tile[...].T
    return scratch


def transpose_scratch(shape: tuple[int, ...], dtype, kn: bool, interpret: bool) -> dict:
    """The `run_scoped` allocation `k_major_operand` needs, `{"b_t": SMEM(shape)}`, when interpreting a K-major
    weight; else nothing (the compiled kernel needs none)."""
    if kn or not interpret:
        return {}
    return {"b_t": plgpu.SMEM(shape, dtype)}
