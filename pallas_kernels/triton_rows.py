"""Pallas-Triton helpers for row kernels (LayerNorm, embedding): tiles over a row, the LayerNorm, stores, launch.

A program owns `block_rows` whole rows. Triton's block shapes are powers of two: a row is split into equal
power-of-two tiles where its width allows (768 = 3 x 256), else padded to one and the padding masked out of
the statistics. Everything here is built from iotas and broadcasts only (Pallas-Triton lowers no `slice`).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels._launch import StaticPartial, launch
from pallas_kernels.quant_kernel import quantize_in_kernel
from pallas_kernels.triton_math import fma


def next_pow2(n: int) -> int:
    """The smallest power of two >= `n` (n >= 1)."""
    return 1 << (n - 1).bit_length()


@dataclasses.dataclass(frozen=True)
class RowConfig:
    """Launch shape of a row kernel: `block_rows` rows per program, on `num_warps` warps."""

    block_rows: int = 4
    num_warps: int = 4


def column_chunks(n_cols: int, split: bool = True) -> tuple[int, int]:
    """`(width, count)`: a row as `count` power-of-two tiles of `width` columns (Triton's block shapes).

    With `split`, 768 = 3 x 256 (BERT-base) and 384 = 3 x 128 (MiniLM) take three unpadded tiles, where one
    1024-wide tile would leave a quarter of the lanes computing padding: that pays in the instruction-bound
    8-bit-output LayerNorm and not in the memory-bound float-output one, so callers split only 8-bit outputs
    (layer_norm/README.md). Otherwise, or with no power-of-two factor of 64 or more, one tile padded to the
    next power of two.
    """
    width = n_cols & -n_cols
    if not split or width == n_cols or width < 64 or n_cols // width > 8:
        return next_pow2(n_cols), 1
    return width, n_cols // width


class Tile(NamedTuple):
    """One `[block_rows, width]` tile of this program's rows: indices broadcast to the tile, and its mask."""

    rows: jax.Array  # [block_rows]
    cols: jax.Array  # [width]
    r2: jax.Array
    c2: jax.Array
    mask: jax.Array


def tile(v, dim: int, block_rows: int, width: int):
    """A row (`dim=0`) or column (`dim=1`) vector broadcast to the `[block_rows, width]` tile."""
    return jax.lax.broadcast_in_dim(v, (block_rows, width), (dim,))


def row_tiles(block_rows: int, n_rows: int, n_cols: int, split: bool) -> list[Tile]:
    """This program's rows as the tiles of `column_chunks(n_cols, split)`."""
    width, count = column_chunks(n_cols, split)
    rows = pl.program_id(0) * block_rows + jax.lax.iota(jnp.int32, block_rows)
    out = []
    for c in range(count):
        cols = c * width + jax.lax.iota(jnp.int32, width)
        r2, c2 = tile(rows, 0, block_rows, width), tile(cols, 1, block_rows, width)
        out.append(Tile(rows, cols, r2, c2, (r2 < n_rows) & (c2 < n_cols)))
    return out


def load_vector(ref, cols, n_cols: int, block_rows: int):
    """A `[H]` parameter vector as float32, broadcast over the tile's rows."""
    v = pltriton.load(ref.at[cols], mask=cols < n_cols, other=0).astype(jnp.float32)
    return tile(v, 1, block_rows, cols.shape[0])


def layer_norm_rows(hs, tiles: list[Tile], n_cols: int, scales, biases, eps: float,
                    fused: bool = False) -> list[jax.Array]:
    """LayerNorm of the float32 rows split over `tiles` (`hs[i]` on `tiles[i]`); padding columns are masked out.
    `fused`: multiply-adds as one `fma.rn.f32` each (`triton_math.fma`; a compiled kernel only)."""
    padded = len(tiles) * tiles[0].cols.shape[0] != n_cols
    if padded:
        hs = [jnp.where(t.mask, h, 0.0) for h, t in zip(hs, tiles)]
    # the tiles are added elementwise before one reduction: a reduction per tile costs a shuffle tree and a
    # cross-warp exchange each (three times the shuffles at 768 = 3 x 256)
    row_sum = lambda ts: jnp.sum(functools.reduce(operator.add, ts), axis=1, keepdims=True)
    mean = row_sum(hs) / n_cols
    centered = [h - mean for h in hs]
    if padded:
        centered = [jnp.where(t.mask, c, 0.0) for c, t in zip(centered, tiles)]
    var = row_sum([functools.reduce(lambda acc, c: fma(c, c, acc, fused), centered[1:],
                                    centered[0] * centered[0])]) / n_cols
    inv = jax.lax.rsqrt(var + eps)
    return [fma(c * inv, sc, b, fused) for c, sc, b in zip(centered, scales, biases)]


def store_tiles(ref, ys, tiles: list[Tile], out_qtype: str | None = None, oscale_ref=None) -> None:
    """Writes the rows `ys` (on `tiles`) to `ref`; with `out_qtype`, as codes of the `[1]` output scale in
    `oscale_ref`. Its reciprocal is one division per program: Triton's float32 division is within 2 ulps, so a
    code moves only at a tie."""
    inv_scale = 1.0 / oscale_ref[0] if out_qtype is not None else None
    for y, t in zip(ys, tiles):
        if out_qtype is not None:
            y = quantize_in_kernel(y, inv_scale, out_qtype)
        pltriton.store(ref.at[t.r2, t.c2], y.astype(ref.dtype), mask=t.mask)


def _row_call(*args, kernel, n_rows: int, n_cols: int, out_dtype, block_rows: int, interpret: bool, name: str,
              num_warps: int):
    shape = lambda dt: jax.ShapeDtypeStruct((n_rows, n_cols), dt)
    return pl.pallas_call(
        kernel,
        out_shape=tuple(map(shape, out_dtype)) if isinstance(out_dtype, tuple) else shape(out_dtype),
        grid=(pl.cdiv(n_rows, block_rows),),
        compiler_params=pltriton.CompilerParams(num_warps=num_warps, num_stages=1),
        interpret=interpret,
        name=name,
    )(*args)


def call_row_kernel(kernel: StaticPartial, args, *, n_rows: int, n_cols: int, out_dtype, config: RowConfig,
                    interpret: bool, name: str):
    """Launches a row-blocked kernel writing `[n_rows, n_cols]` (one array per dtype when `out_dtype` is a
    tuple): one program per `config.block_rows` rows, lowered once per executable (`_launch`)."""
    return launch(StaticPartial(_row_call, kernel=kernel, n_rows=n_rows, n_cols=n_cols, out_dtype=out_dtype,
                                block_rows=config.block_rows, interpret=interpret, name=name,
                                num_warps=config.num_warps), *args)
