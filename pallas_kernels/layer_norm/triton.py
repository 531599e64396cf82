"""Pallas-Triton residual LayerNorm: `LayerNorm(x + x_bias + residual)` in one pass over the rows.

A memory-bound kernel: each program owns `block_rows` rows, reads x, the
residual and the parameters once, keeps the row statistics in float32
registers and writes the output once. 8-bit residuals are dequantized and
8-bit outputs quantized in registers, so in the `full_*` modes the residual
stream crosses memory as one byte per value. Triton's block shapes are powers of
two: a row is split into equal power-of-two tiles where its width allows (768 =
3 x 256), else padded to one and the padding masked out of the statistics.
"""

from __future__ import annotations

import functools
import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels._launch import StaticPartial, launch
from pallas_kernels._platform import interpreting, on_gpu
from pallas_kernels.quant_kernel import quantize_in_kernel
from pallas_kernels.quant_types import QTYPES
from pallas_kernels.triton_math import fma


def next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def column_chunks(n_cols: int, split: bool = True) -> tuple[int, int]:
    """`(width, count)`: a row as `count` power-of-two tiles of `width` columns (Triton's block shapes).

    With `split`, 768 = 3 x 256 (BERT-base) and 384 = 3 x 128 (MiniLM) take three unpadded tiles: one
    1024-wide tile leaves a quarter of the lanes computing padding, and the 8-bit-output LayerNorm is
    instruction-bound (H100, 16384 x 768: 0.0289 -> 0.0257 ms, bench/RESULTS.md). The float-output one is
    memory-bound and was slower split (0.0296 -> 0.0306; the fp16 plan's 24 LayerNorms 0.730 -> 0.778 ms), so
    callers split only 8-bit outputs. Otherwise, or with no power-of-two factor of 64 or more, one tile padded
    to the next power of two.
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


def row_tiles(block_rows: int, n_rows: int, n_cols: int, split: bool) -> list[Tile]:
    """This program's rows as the tiles of `column_chunks(n_cols, split)`.

    Built from iotas and broadcasts only (Pallas-Triton lowers no `slice`).
    """
    width, count = column_chunks(n_cols, split)
    rows = pl.program_id(0) * block_rows + jax.lax.iota(jnp.int32, block_rows)
    out = []
    for c in range(count):
        cols = c * width + jax.lax.iota(jnp.int32, width)
        r2, c2 = tile(rows, 0, block_rows, width), tile(cols, 1, block_rows, width)
        out.append(Tile(rows, cols, r2, c2, (r2 < n_rows) & (c2 < n_cols)))
    return out


def tile(v, dim: int, block_rows: int, width: int):
    """A row (`dim=0`) or column (`dim=1`) vector broadcast to the `[block_rows, width]` tile."""
    return jax.lax.broadcast_in_dim(v, (block_rows, width), (dim,))


def load_vector(ref, cols, n_cols: int, block_rows: int):
    """A `[H]` parameter vector as float32, broadcast over the tile's rows."""
    v = pltriton.load(ref.at[cols], mask=cols < n_cols, other=0).astype(jnp.float32)
    return tile(v, 1, block_rows, cols.shape[0])


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


def call_row_kernel(kernel: StaticPartial, args, *, n_rows: int, n_cols: int, out_dtype, block_rows: int,
                    interpret: bool, name: str, num_warps: int = 4):
    """Launches a row-blocked kernel writing `[n_rows, n_cols]` (one array per dtype when `out_dtype` is a
    tuple): one program per `block_rows` rows, lowered once per executable (`_launch`)."""
    return launch(StaticPartial(_row_call, kernel=kernel, n_rows=n_rows, n_cols=n_cols, out_dtype=out_dtype,
                                block_rows=block_rows, interpret=interpret, name=name, num_warps=num_warps), *args)


def layer_norm_rows(hs, tiles: list[Tile], n_cols: int, scales, biases, eps: float,
                    compiled: bool = False) -> list[jax.Array]:
    """LayerNorm of the float32 rows split over `tiles` (`hs[i]` on `tiles[i]`); padding columns are masked out.
    `compiled`: multiply-adds as fused `fma`s (`fma`)."""
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
    var = row_sum([functools.reduce(lambda acc, c: fma(c, c, acc, compiled), centered[1:],
                                    centered[0] * centered[0])]) / n_cols
    inv = jax.lax.rsqrt(var + eps)
    return [fma(c * inv, sc, b, compiled) for c, sc, b in zip(centered, scales, biases)]


def store_tiles(ref, ys, tiles: list[Tile], out_qtype: str | None = None, oscale_ref=None) -> None:
    """Writes the rows `ys` (on `tiles`) to `ref`; with `out_qtype`, as codes of the `[1]` output scale in
    `oscale_ref`. Its reciprocal is one division per program: Triton's float32 division is within 2 ulps, so a
    code moves only at a tie."""
    inv_scale = 1.0 / oscale_ref[0] if out_qtype is not None else None
    for y, t in zip(ys, tiles):
        if out_qtype is not None:
            y = quantize_in_kernel(y, inv_scale, out_qtype)
        pltriton.store(ref.at[t.r2, t.c2], y.astype(ref.dtype), mask=t.mask)


def _kernel(*refs, block_rows, n_rows, n_cols, eps, has_bias, has_residual, scaled_residual, out_qtype, with_float,
            parts=1, compiled=False):
    refs = list(refs)
    x_ref = refs.pop(0)
    xb_ref = refs.pop(0) if has_bias else None
    r_ref = refs.pop(0) if has_residual else None
    # the scalars arrive as they are stored (no per-call stack of them, a launch each): [1] arrays
    scale_ref, bias_ref, rscale_ref, oscale_ref, *o_refs = refs
    float_ref = o_refs.pop(0) if with_float else None
    (o_ref,) = o_refs
    tiles = row_tiles(block_rows, n_rows, n_cols, split=out_qtype is not None)
    # the fill value must be castable to the ref's dtype: Pallas-Triton casts no integer to fp8
    load = lambda ref, t, row0=0: pltriton.load(ref.at[t.r2 + row0, t.c2], mask=t.mask, other=0 if jnp.issubdtype(
        ref.dtype, jnp.integer) else 0.0).astype(jnp.float32)
    vec = lambda ref, t: load_vector(ref, t.cols, n_cols, block_rows)
    residual_scale = rscale_ref[0] if scaled_residual else None
    hs = []
    for t in tiles:
        h = load(x_ref, t)
        for p in range(1, parts):  # a split-K GEMM's partial products, stacked along the rows
            h = h + load(x_ref, t, p * n_rows)
        if has_bias:
            h = h + vec(xb_ref, t)
        if has_residual:
            h = fma(load(r_ref, t), residual_scale, h, compiled) if scaled_residual else h + load(r_ref, t)
        hs.append(h)
    ys = layer_norm_rows(hs, tiles, n_cols, [vec(scale_ref, t) for t in tiles], [vec(bias_ref, t) for t in tiles], eps,
                         compiled)
    if with_float:
        store_tiles(float_ref, ys, tiles)
    store_tiles(o_ref, ys, tiles, out_qtype, oscale_ref)


def residual_layer_norm_triton(x, residual, scale, bias, *, x_bias=None, eps: float, out_dtype=None,
                               residual_scale=None, out_scale=None, out_qtype=None, with_float: bool = False,
                               partial_sums: bool = False, block_rows: int | None = None, num_warps: int | None = None,
                               interpret: bool = False):
    """`residual_layer_norm_reference` as one Pallas-Triton kernel (GPU, or `interpret` on a CPU).

    Launch shape: 4 rows on 4 warps, or for 8-bit outputs (rows split into tiles) 1 row on 2 warps, the fastest
    of 1-16 rows on 2-8 warps for that form on the H100 at 16384 x 768 (0.0248 -> 0.0226 ms; 0.0205 since one
    reduction a row and fused multiply-adds, where one warp took 0.0211; bench/RESULTS.md).
    Partial sums (`x` as `[P, ..., H]`, P > 1) take one row per program: at 128 rows and 4 float32 parts, 0.0030 ms on
    4 rows against 0.0021 on one (H100, 2026-11-23).
    """
    codes, parts = out_scale is not None, x.shape[0] if partial_sums else 1
    # partial products: the loads per value multiply, and one row per program spreads them over more SMs
    block_rows = block_rows or (1 if codes or parts > 1 else 4)
    num_warps = num_warps or (2 if codes else 4)
    interpret = interpret or interpreting()
    if not interpret and not on_gpu():
        raise NotImplementedError("triton residual LayerNorm runs on a GPU (or with interpret=True)")
    float_dtype = x.dtype if out_dtype is None else out_dtype
    out_dtype = QTYPES[out_qtype][0] if out_scale is not None else float_dtype
    if with_float:
        out_dtype = (float_dtype, out_dtype)
    shape, n_cols = x.shape[1:] if partial_sums else x.shape, x.shape[-1]
    x2 = x.reshape(-1, n_cols)  # partial products: P blocks of rows
    n_rows = x2.shape[0] // parts
    args = [x2] + ([x_bias] if x_bias is not None else []) + (
        [residual.reshape(-1, n_cols)] if residual is not None else []) + [scale, bias]
    f32 = lambda v: jnp.asarray(1.0 if v is None else v, jnp.float32).reshape(1)
    args += [f32(residual_scale), f32(out_scale)]
    kernel = StaticPartial(_kernel, block_rows=block_rows, n_rows=n_rows, n_cols=n_cols, eps=eps,
                               has_bias=x_bias is not None, has_residual=residual is not None,
                               scaled_residual=residual_scale is not None,
                               out_qtype=out_qtype if out_scale is not None else None, with_float=with_float,
                               parts=parts, compiled=not interpret)
    out = call_row_kernel(kernel, args, n_rows=n_rows, n_cols=n_cols, out_dtype=out_dtype, block_rows=block_rows,
                          interpret=interpret, name="residual_layer_norm", num_warps=num_warps)
    return tuple(o.reshape(shape) for o in out) if with_float else out.reshape(shape)
