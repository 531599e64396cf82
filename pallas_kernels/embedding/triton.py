"""Pallas-Triton fused embedding: word + position (+ token type) gathers, sum and LayerNorm in one kernel.

FasterTransformer runs the three lookups as three kernels; SAMP fuses them, and
so does this: each program gathers `block_rows` tokens' rows from the three
tables, sums them in float32, normalizes and writes the hidden state once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.experimental.pallas import triton as pltriton

from pallas_kernels._launch import StaticPartial
from pallas_kernels._platform import interpreting, on_gpu
from pallas_kernels.layer_norm.triton import (
    call_row_kernel,
    layer_norm_rows,
    load_vector,
    next_pow2,
    row_block,
    tile,
)
from pallas_kernels.quant_types import QTYPES, quantize_in_kernel


def _kernel(*refs, block_rows, width, n_rows, n_cols, eps, has_types, out_qtype):
    refs = list(refs)
    ids_ref, pos_ref = refs.pop(0), refs.pop(0)
    types_ref = refs.pop(0) if has_types else None
    word_ref, ptab_ref = refs.pop(0), refs.pop(0)
    ttab_ref = refs.pop(0) if has_types else None
    inv_ref = refs.pop(-2) if out_qtype is not None else None  # [1 / output scale]
    scale_ref, bias_ref, o_ref = refs
    rows, cols, mask = row_block(block_rows, width, n_rows, n_cols)
    c2 = tile(cols, 1, block_rows, width)

    def gather(ids_ref, table_ref):
        ids = pltriton.load(ids_ref.at[rows], mask=rows < n_rows, other=0)
        return pltriton.load(table_ref.at[tile(ids, 0, block_rows, width), c2], mask=mask, other=0).astype(jnp.float32)

    h = gather(ids_ref, word_ref) + gather(pos_ref, ptab_ref)
    if has_types:
        h = h + gather(types_ref, ttab_ref)
    vec = lambda ref: load_vector(ref, cols, n_cols, block_rows)
    y = layer_norm_rows(h, mask, n_cols, vec(scale_ref), vec(bias_ref), eps)
    if out_qtype is not None:
        y = quantize_in_kernel(y, inv_ref[0], out_qtype)
    pltriton.store(o_ref.at[tile(rows, 0, block_rows, width), c2], y.astype(o_ref.dtype), mask=mask)


def embedding_layer_norm_triton(input_ids, position_ids, token_type_ids, word_table, position_table,
                                token_type_table, scale, bias, *, eps: float, out_dtype=jnp.float32,
                                out_scale=None, out_qtype=None, block_rows: int = 4, interpret: bool = False) -> jax.Array:
    """`embedding_layer_norm_reference` as one Pallas-Triton kernel (GPU, or `interpret` on a CPU)."""
    interpret = interpret or interpreting()
    if not interpret and not on_gpu():
        raise NotImplementedError("triton embedding runs on a GPU (or with interpret=True)")
    shape, n_cols = input_ids.shape, word_table.shape[1]
    n_rows = input_ids.size
    has_types = token_type_table is not None
    flat = lambda a: a.reshape(-1).astype(jnp.int32)
    args = [flat(input_ids), flat(position_ids)] + ([flat(token_type_ids)] if has_types else [])
    args += [word_table, position_table] + ([token_type_table] if has_types else []) + [scale, bias]
    if out_scale is not None:
        args.append(1.0 / jnp.asarray(out_scale, jnp.float32).reshape(1))
        out_dtype = QTYPES[out_qtype][0]
    kernel = StaticPartial(_kernel, block_rows=block_rows, width=next_pow2(n_cols), n_rows=n_rows,
                               n_cols=n_cols, eps=eps, has_types=has_types,
                               out_qtype=out_qtype if out_scale is not None else None)
    out = call_row_kernel(kernel, args, n_rows=n_rows, n_cols=n_cols, out_dtype=out_dtype, block_rows=block_rows,
                          interpret=interpret, name="embedding_layer_norm")
    return out.reshape(*shape, n_cols)
