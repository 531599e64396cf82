"""Pallas-Triton fused embedding: word + position (+ token type) gathers, sum and LayerNorm in one kernel.

FasterTransformer runs the three lookups as three kernels; SAMP fuses them, and
so does this: each program gathers `block_rows` tokens' rows from the three
tables, sums them in float32, normalizes and writes the hidden state once.
"""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp
from jax.experimental.pallas import triton as pltriton

from pallas_kernels._launch import StaticPartial
from pallas_kernels._platform import interpreting, on_gpu
from pallas_kernels.embedding.config import pick_config, unsupported
from pallas_kernels.quant_types import QTYPES
from pallas_kernels.triton_rows import RowConfig, call_row_kernel, layer_norm_rows, load_vector, row_tiles, store_tiles, tile


def _kernel(*refs, block_rows, n_rows, n_cols, eps, has_types, out_qtype):
    refs = list(refs)
    ids_ref, pos_ref = refs.pop(0), refs.pop(0)
    types_ref = refs.pop(0) if has_types else None
    word_ref, ptab_ref = refs.pop(0), refs.pop(0)
    ttab_ref = refs.pop(0) if has_types else None
    oscale_ref = refs.pop(-2) if out_qtype is not None else None  # [output scale], as stored: no per-call divide
    scale_ref, bias_ref, o_ref = refs
    tiles = row_tiles(block_rows, n_rows, n_cols, split=out_qtype is not None)
    rows = tiles[0].rows

    lookups = [(ids_ref, word_ref), (pos_ref, ptab_ref)] + ([(types_ref, ttab_ref)] if has_types else [])
    ids = [pltriton.load(ref.at[rows], mask=rows < n_rows, other=0) for ref, _ in lookups]  # once per table

    def gather(ids, table_ref, t):
        return pltriton.load(table_ref.at[tile(ids, 0, block_rows, t.cols.shape[0]), t.c2], mask=t.mask,
                             other=0).astype(jnp.float32)

    hs = [functools.reduce(operator.add, [gather(i, table, t) for i, (_, table) in zip(ids, lookups)]) for t in tiles]
    vec = lambda ref, t: load_vector(ref, t.cols, n_cols, block_rows)
    ys = layer_norm_rows(hs, tiles, n_cols, [vec(scale_ref, t) for t in tiles], [vec(bias_ref, t) for t in tiles], eps)
    store_tiles(o_ref, ys, tiles, out_qtype, oscale_ref)


def embedding_layer_norm_triton(input_ids, position_ids, token_type_ids, word_table, position_table,
                                token_type_table, scale, bias, *, eps: float, out_dtype=jnp.float32,
                                out_scale=None, out_qtype=None, block_rows: int | None = None,
                                interpret: bool = False) -> jax.Array:
    """`embedding_layer_norm_reference` as one Pallas-Triton kernel (GPU, or `interpret` on a CPU).

    `block_rows` overrides `config.pick_config`'s tokens per program (for sweeps).
    """
    config = pick_config()
    config = RowConfig(block_rows or config.block_rows, config.num_warps)
    interpret = interpret or interpreting()
    if not interpret and not on_gpu():
        raise NotImplementedError("triton embedding runs on a GPU (or with interpret=True)")
    if (why := unsupported(input_ids, word_table)) is not None:
        raise NotImplementedError(f"triton embedding: {why}")
    shape, n_cols = input_ids.shape, word_table.shape[1]
    n_rows = input_ids.size
    has_types = token_type_table is not None
    flat = lambda a: a.reshape(-1).astype(jnp.int32)
    args = [flat(input_ids), flat(position_ids)] + ([flat(token_type_ids)] if has_types else [])
    args += [word_table, position_table] + ([token_type_table] if has_types else []) + [scale, bias]
    if out_scale is not None:
        args.append(jnp.asarray(out_scale, jnp.float32).reshape(1))
        out_dtype = QTYPES[out_qtype][0]
    kernel = StaticPartial(_kernel, block_rows=config.block_rows, n_rows=n_rows, n_cols=n_cols, eps=eps,
                           has_types=has_types, out_qtype=out_qtype if out_scale is not None else None)
    out = call_row_kernel(kernel, args, n_rows=n_rows, n_cols=n_cols, out_dtype=out_dtype, config=config,
                          interpret=interpret, name="embedding_layer_norm")
    return out.reshape(*shape, n_cols)
