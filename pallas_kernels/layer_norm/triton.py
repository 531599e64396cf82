"""Pallas-Triton residual LayerNorm: `LayerNorm(x + x_bias + residual)` in one pass over the rows.

A memory-bound kernel: each program owns `block_rows` rows, reads x, the
residual and the parameters once, keeps the row statistics in float32
registers and writes the output once. 8-bit residuals are dequantized and
8-bit outputs quantized in registers, so in the `full_*` modes the residual
stream crosses memory as one byte per value. Rows are padded in registers to a power
of two (Triton's block shapes) and the padding masked out of the statistics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels._launch import StaticPartial, launch
from pallas_kernels._platform import interpreting, on_gpu
from pallas_kernels.quant_types import QTYPES, quantize_in_kernel


def next_pow2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def row_block(block_rows: int, width: int, n_rows: int, n_cols: int):
    """This program's rows `[block_rows]`, columns `[width]` and tile mask `[block_rows, width]`.

    Built from iotas and broadcasts only (Pallas-Triton lowers no `slice`).
    """
    rows = pl.program_id(0) * block_rows + jax.lax.iota(jnp.int32, block_rows)
    cols = jax.lax.iota(jnp.int32, width)
    mask = (tile(rows, 0, block_rows, width) < n_rows) & (tile(cols, 1, block_rows, width) < n_cols)
    return rows, cols, mask


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


def layer_norm_rows(h, mask, n_cols: int, scale, bias, eps: float):
    """LayerNorm of float32 rows `h` whose masked-off columns are padding."""
    h = jnp.where(mask, h, 0.0)
    mean = jnp.sum(h, axis=1, keepdims=True) / n_cols
    centered = jnp.where(mask, h - mean, 0.0)
    var = jnp.sum(centered * centered, axis=1, keepdims=True) / n_cols
    return centered * jax.lax.rsqrt(var + eps) * scale + bias


def _kernel(*refs, block_rows, width, n_rows, n_cols, eps, has_bias, has_residual, scaled_residual, out_qtype,
            with_float):
    refs = list(refs)
    x_ref = refs.pop(0)
    xb_ref = refs.pop(0) if has_bias else None
    r_ref = refs.pop(0) if has_residual else None
    scale_ref, bias_ref, qscales_ref, *o_refs = refs  # qscales: [residual scale, 1 / output scale]
    rows, cols, mask = row_block(block_rows, width, n_rows, n_cols)
    r2, c2 = tile(rows, 0, block_rows, width), tile(cols, 1, block_rows, width)
    # the fill value must be castable to the ref's dtype: Pallas-Triton casts no integer to fp8
    load = lambda ref: pltriton.load(ref.at[r2, c2], mask=mask, other=0 if jnp.issubdtype(ref.dtype, jnp.integer)
                                     else 0.0).astype(jnp.float32)
    vec = lambda ref: load_vector(ref, cols, n_cols, block_rows)
    h = load(x_ref)
    if has_bias:
        h = h + vec(xb_ref)
    if has_residual:
        h = h + (load(r_ref) * qscales_ref[0] if scaled_residual else load(r_ref))
    y = layer_norm_rows(h, mask, n_cols, vec(scale_ref), vec(bias_ref), eps)
    if with_float:
        float_ref = o_refs.pop(0)
        pltriton.store(float_ref.at[r2, c2], y.astype(float_ref.dtype), mask=mask)
    (o_ref,) = o_refs
    if out_qtype is not None:
        y = quantize_in_kernel(y, qscales_ref[1], out_qtype)
    pltriton.store(o_ref.at[r2, c2], y.astype(o_ref.dtype), mask=mask)


def residual_layer_norm_triton(x, residual, scale, bias, *, x_bias=None, eps: float, out_dtype=None,
                               residual_scale=None, out_scale=None, out_qtype=None, with_float: bool = False,
                               block_rows: int = 4, num_warps: int = 4, interpret: bool = False):
    """`residual_layer_norm_reference` as one Pallas-Triton kernel (GPU, or `interpret` on a CPU)."""
    interpret = interpret or interpreting()
    if not interpret and not on_gpu():
        raise NotImplementedError("triton residual LayerNorm runs on a GPU (or with interpret=True)")
    float_dtype = x.dtype if out_dtype is None else out_dtype
    out_dtype = QTYPES[out_qtype][0] if out_scale is not None else float_dtype
    if with_float:
        out_dtype = (float_dtype, out_dtype)
    shape, n_cols = x.shape, x.shape[-1]
    x2 = x.reshape(-1, n_cols)
    n_rows, width = x2.shape[0], next_pow2(n_cols)
    args = [x2] + ([x_bias] if x_bias is not None else []) + (
        [residual.reshape(-1, n_cols)] if residual is not None else []) + [scale, bias]
    f32 = lambda v: jnp.asarray(1.0 if v is None else v, jnp.float32).reshape(())
    args.append(jnp.stack([f32(residual_scale), 1.0 / f32(out_scale)]))
    kernel = StaticPartial(_kernel, block_rows=block_rows, width=width, n_rows=n_rows, n_cols=n_cols, eps=eps,
                               has_bias=x_bias is not None, has_residual=residual is not None,
                               scaled_residual=residual_scale is not None,
                               out_qtype=out_qtype if out_scale is not None else None, with_float=with_float)
    out = call_row_kernel(kernel, args, n_rows=n_rows, n_cols=n_cols, out_dtype=out_dtype, block_rows=block_rows,
                          interpret=interpret, name="residual_layer_norm", num_warps=num_warps)
    return tuple(o.reshape(shape) for o in out) if with_float else out.reshape(shape)
