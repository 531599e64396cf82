"""The epilogue of one warpgroup's accumulator tile inside a Mosaic GEMM kernel, and its store.

The epilogue runs on the accumulator registers and leaves through shared memory in `epi_tile` pieces,
double buffered, so only the final bf16/fp16, float32-partial or 8-bit values reach device memory (an
int32 output would double the bytes written, which on K = 768 costs as much as the math).

Two steps run an instruction the CPU interpreter cannot (inline PTX through `plgpu.inline_mgpu`); the
interpreter runs their jnp twins, the same math, and `gemm/test_epilogue.py` checks the pairs agree on
the GPU (`..._compiled_only` tests).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental.pallas import mosaic_gpu as plgpu

from pallas_kernels.activations import KERNEL_ACTIVATIONS, REQUANT_ACTIVATIONS, gelu_scaled
from pallas_kernels.gemm.config import out_slots
from pallas_kernels.gemm.epilogue import Epilogue, epilogue, vector_rows
from pallas_kernels.quant_kernel import HALF_RNE_SHIFT, int8_codes_from_half
from pallas_kernels.quant_types import QTYPES


def column(vec_smem, interpret: bool) -> jax.Array:
    """A `[tile_n]` per-column vector from shared memory, laid out to broadcast over the accumulator's rows.

    The CPU interpreter has no layouts and reads the ref directly.
    """
    if interpret:
        return vec_smem[...]
    return plgpu.load(vec_smem, (), layout=plgpu.Layout.WGMMA.reduce(0))


def tanh_half(x: jax.Array, interpret: bool) -> jax.Array:
    """tanh of a float16 accumulator-layout tile by `tanh.approx.f16x2`, two values per instruction.

    Mosaic GPU (jax 0.10-0.11) issues the approximate tanh for float32 only; its packed-instruction helper
    issues the float16 one. The interpreter takes XLA's tanh (the instruction's error is within
    `activations.HALF_GELU_ERROR`, which the compiled test checks).
    """
    if interpret:
        return jnp.tanh(x)
    import jax.experimental.mosaic.gpu as mgpu

    @plgpu.inline_mgpu(arg_types=(plgpu.Layout.WGMMA,),
                       return_type=plgpu.ShapeDtypeStruct(x.shape, jnp.float16, layout=plgpu.Layout.WGMMA))
    def packed(_, tile):
        return tile._pointwise(mgpu.FragmentedArray._lift_fast_packed_instr("tanh.approx.f16x2", "tanh.approx.f16"))

    return packed(x)


def int8_codes_from_pairs(q: jax.Array, interpret: bool) -> jax.Array:
    """`quant_kernel.int8_codes_from_half` on an accumulator-layout tile, one `prmt` per pair of columns.

    After the float16 add, each code is the low byte of its half; LLVM's truncation of a float16 pair to
    two bytes takes 2.3 byte permutes (H100, Nsight Compute), this takes one: bytes 0 and 2 of the pair's
    register. The interpreter runs `int8_codes_from_half`, the same add and the same low byte.
    """
    if interpret:
        return int8_codes_from_half(q)
    import jax.experimental.mosaic.gpu as mgpu
    from jaxlib.mlir import ir
    from jaxlib.mlir.dialects import llvm

    shifted = q + jnp.float16(HALF_RNE_SHIFT)  # rounds onto float16's integer grid, as int8_codes_from_half

    def low_bytes(reg):
        i32, i16 = ir.IntegerType.get_signless(32), ir.IntegerType.get_signless(16)
        word = mgpu.utils.bitcast(reg, i32)
        pair = llvm.inline_asm(i16, [word], "{ .reg .b32 t; prmt.b32 t, $1, $1, 0x20; cvt.u16.u32 $0, t; }",
                               "=h,r")
        return mgpu.utils.bitcast(pair, ir.VectorType.get((2,), ir.IntegerType.get_signless(8)))

    @plgpu.inline_mgpu(arg_types=(plgpu.Layout.WGMMA,),
                       return_type=plgpu.ShapeDtypeStruct(q.shape, jnp.int8, layout=plgpu.Layout.WGMMA))
    def pack(_, tile):
        return tile._pointwise(low_bytes, output_is_signed=True)

    return pack(shifted)


def epilogue_and_store(acc: jax.Array, vecs, vbar, out_smem, out_tile, *, spec: Epilogue, epi_m: int, epi_n: int,
                       interpret: bool, first_split=None) -> None:
    """Scale, bias, activation and cast (or requantize) one warpgroup's `[tile_m, tile_n]` accumulator, then store it.

    `vecs` holds the tile's epilogue vectors (`epilogue.vector_rows`), landing on `vbar`; `out_smem` is this
    warpgroup's `[slots, epi_m, epi_n]` staging buffer; `out_tile` the tile's device-memory view.
    `first_split` (a split-K tile's partial product): whether this is the first split, the one that adds the
    bias.
    """
    tile_m, tile_n = acc.shape
    rows = vector_rows(spec.has_scale)
    plgpu.barrier_wait(vbar)
    col = column(vecs.at[rows["scale"]], interpret) if spec.has_scale else None
    bias = column(vecs.at[rows["bias"]], interpret) if spec.has_bias else None
    if bias is not None and first_split is not None:  # the parts are summed: one of them carries the bias
        bias = bias * jnp.where(first_split, 1.0, 0.0)
    inv_oscale = column(vecs.at[rows["inv_scale"]], interpret) if spec.requantize else None
    bcast = lambda v: None if v is None else lax.broadcast_in_dim(v, (tile_m, tile_n), [1])  # noqa: E731
    if spec.requantize and spec.activation == "gelu":
        # GELU with the output scale folded in (activations.gelu_scaled): on float16 pairs to int8; fp8 keeps
        # float32 (its steps are relative: float16 rounding moves 4-7% of its codes), and there the saturating
        # cast clips (the interpreter's cast does not saturate, so it clips first)
        assert col is not None and inv_oscale is not None and spec.out_qtype is not None  # Epilogue checks it
        x = acc.astype(jnp.float32) * lax.broadcast_in_dim(col, (tile_m, tile_n), [1])
        x = x if bias is None else x + lax.broadcast_in_dim(bias, (tile_m, tile_n), [1])
        half_inv = lax.broadcast_in_dim(0.5 * inv_oscale, (tile_m, tile_n), [1])
        dtype, top = QTYPES[spec.out_qtype]
        if spec.out_qtype == "int8":
            q = gelu_scaled(x, half_inv, top, tanh=lambda t: tanh_half(t, interpret))
            y = int8_codes_from_pairs(q, interpret)
        else:
            y = gelu_scaled(x, half_inv, top, dtype=jnp.float32, clip=interpret).astype(dtype)
    else:
        y = epilogue(acc, bcast(col), bcast(bias), activation=spec.activation, out_inv_scale=bcast(inv_oscale),
                     out_qtype=spec.out_qtype, out_dtype=out_smem.dtype, in_kernel=True,
                     activations=REQUANT_ACTIVATIONS if spec.requantize else KERNEL_ACTIVATIONS,
                     cast_saturates=not interpret)
    slots = out_slots(tile_m, tile_n, epi_m, epi_n)
    plgpu.wait_smem_to_gmem(0, wait_read_only=True)  # the previous tile's stores have left the buffers
    for ei in range(tile_m // epi_m):
        for ej in range(tile_n // epi_n):
            slot = (ei * (tile_n // epi_n) + ej) % slots
            rows_, cols = slice(ei * epi_m, (ei + 1) * epi_m), slice(ej * epi_n, (ej + 1) * epi_n)
            plgpu.wait_smem_to_gmem(slots - 1, wait_read_only=True)
            out_smem[slot] = y[rows_, cols]
            plgpu.commit_smem()
            plgpu.copy_smem_to_gmem(out_smem.at[slot], out_tile.at[rows_, cols])
