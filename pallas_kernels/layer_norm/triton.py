"""Pallas-Triton residual LayerNorm: `LayerNorm(x + x_bias + residual)` in one pass over the rows.

A memory-bound kernel: each program owns `block_rows` rows, reads x, the
residual and the parameters once, keeps the row statistics in float32
registers and writes the output once. 8-bit residuals are dequantized and
8-bit outputs quantized in registers, so in the `full_*` modes the residual
stream crosses memory as one byte per value. Rows are tiled as
`triton_rows.column_chunks` says.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.experimental.pallas import triton as pltriton

from pallas_kernels._launch import StaticPartial
from pallas_kernels._platform import interpreting, on_gpu
from pallas_kernels.layer_norm.config import pick_config, unsupported
from pallas_kernels.quant_types import QTYPES
from pallas_kernels.triton_math import fma
from pallas_kernels.triton_rows import RowConfig, call_row_kernel, layer_norm_rows, load_vector, row_tiles, store_tiles


def _kernel(*refs, block_rows, n_rows, n_cols, eps, has_bias, has_residual, scaled_residual, out_qtype, with_float,
            parts=1, channel_residual=False, compiled=False):
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
    # a per-tensor residual scale is one scalar; per channel (`channel_residual`) it is a `[H]` vector like gamma
    residual_scale = rscale_ref[0] if scaled_residual and not channel_residual else None
    hs = []
    for t in tiles:
        h = load(x_ref, t)
        for p in range(1, parts):  # a split-K GEMM's partial products, stacked along the rows
            h = h + load(x_ref, t, p * n_rows)
        if has_bias:
            h = h + vec(xb_ref, t)
        if has_residual:
            r_scale = vec(rscale_ref, t) if channel_residual else residual_scale
            h = fma(load(r_ref, t), r_scale, h, compiled) if scaled_residual else h + load(r_ref, t)
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

    `block_rows` and `num_warps` override `config.pick_config`'s launch shape (for sweeps).
    """
    codes, parts = out_scale is not None, x.shape[0] if partial_sums else 1
    picked = pick_config(codes=codes, parts=parts)
    config = RowConfig(block_rows or picked.block_rows, num_warps or picked.num_warps)
    interpret = interpret or interpreting()
    if not interpret and not on_gpu():
        raise NotImplementedError("triton residual LayerNorm runs on a GPU (or with interpret=True)")
    if (why := unsupported(x, residual)) is not None:
        raise NotImplementedError(f"triton residual LayerNorm: {why}")
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
    channel_residual = residual_scale is not None and jnp.size(residual_scale) > 1
    args += [jnp.asarray(residual_scale, jnp.float32) if channel_residual else f32(residual_scale), f32(out_scale)]
    kernel = StaticPartial(_kernel, block_rows=config.block_rows, n_rows=n_rows, n_cols=n_cols, eps=eps,
                           has_bias=x_bias is not None, has_residual=residual is not None,
                           scaled_residual=residual_scale is not None,
                           out_qtype=out_qtype if out_scale is not None else None, with_float=with_float,
                           parts=parts, channel_residual=channel_residual, compiled=not interpret)
    out = call_row_kernel(kernel, args, n_rows=n_rows, n_cols=n_cols, out_dtype=out_dtype, config=config,
                          interpret=interpret, name="residual_layer_norm")
    return tuple(o.reshape(shape) for o in out) if with_float else out.reshape(shape)
