"""What both Mosaic GPU GEMM schedules share: shared-memory layouts and the epilogue of one warpgroup's tile.

The epilogue runs on the accumulator registers and leaves through shared memory
in `epi_tile` pieces, double buffered, so only the final bf16/fp16 or 8-bit
values ever reach device memory (an int32 output would double the bytes
written, which on K = 768 costs as much as the math: ../shared/GPU.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental.pallas import mosaic_gpu as plgpu

from pallas_kernels.quant_types import HALF_RNE_SHIFT, QTYPES, int8_codes_from_half
from pallas_kernels.quantized_matmul.base import KERNEL_ACTIVATIONS, REQUANT_ACTIVATIONS, epilogue, gelu_scaled


def swizzled(minor_elems: int, dtype) -> tuple:
    """TMA/`wgmma` shared-memory transforms for tiles whose minor dimension holds `minor_elems` of `dtype`."""
    itemsize = jnp.dtype(dtype).itemsize
    swizzle = plgpu.find_swizzle(minor_elems * itemsize * 8)
    return plgpu.TilingTransform((8, swizzle // itemsize)), plgpu.SwizzleTransform(swizzle)


def weight_kn(in_dtype, interpret: bool) -> bool:
    """Whether the weight streams as `[K, N]` tiles: 16-bit `wgmma` reads B either way round, 8-bit only
    K-major (`[N, K]`, handed over transposed); the CPU interpreter cannot transpose a shared-memory view."""
    return interpret or jnp.dtype(in_dtype).itemsize == 2


def accumulator_dtype(in_dtype):
    """int32 for int8 operands, float32 for fp8 and 16-bit floats."""
    return jnp.int32 if jnp.dtype(in_dtype) == jnp.int8 else jnp.float32


def out_slots(tile_m: int, tile_n: int, epi_m: int, epi_n: int) -> int:
    """Epilogue staging buffers per warpgroup: two, unless the tile is a single epilogue piece."""
    return min(2, (tile_m * tile_n) // (epi_m * epi_n))


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
    issues the float16 one. The CPU interpreter takes XLA's tanh.
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
    """`quant_types.int8_codes_from_half` on an accumulator-layout tile, one `prmt` per pair of columns.

    After the float16 add, each code is the low byte of its half; LLVM's truncation of a float16 pair to
    two bytes took 2.3 byte permutes (H100, Nsight Compute), this takes one: bytes 0 and 2 of the pair's
    register. The CPU interpreter takes the jnp form.
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


def vector_rows(has_scale: bool) -> dict[str, int]:
    """Rows of the `[rows, N]` epilogue vectors: 8-bit GEMMs carry column scale, bias and reciprocal output
    scale (`base.PackedWeight.vectors`); float GEMMs only a bias."""
    return {"scale": 0, "bias": 1, "inv_scale": 2} if has_scale else {"bias": 0}


def epilogue_and_store(acc: jax.Array, vecs, vbar, out_smem, out_tile, *, epi_m: int, epi_n: int, activation,
                       out_qtype, has_bias: bool, quantize_out: bool, fp8_cast: bool,
                       interpret: bool, has_scale: bool = True, first_split=None) -> None:
    """Scale, bias, activation and cast (or requantize) one warpgroup's `[tile_m, tile_n]` accumulator, then store it.

    `vecs` holds the tile's epilogue vectors (`vector_rows`), landing on `vbar`; `out_smem` is this warpgroup's
    `[slots, epi_m, epi_n]` staging buffer; `out_tile` the tile's device-memory view. `has_scale=False` (a
    float GEMM): no column scale and no requantization. `first_split` (a split-K tile's partial product): whether
    this is the first split, the one that adds the bias.
    """
    tile_m, tile_n = acc.shape
    rows = vector_rows(has_scale)
    plgpu.barrier_wait(vbar)
    col = column(vecs.at[rows["scale"]], interpret) if has_scale else None
    bias = column(vecs.at[rows["bias"]], interpret) if has_bias else None
    if bias is not None and first_split is not None:  # the parts are summed: one of them carries the bias
        bias = bias * jnp.where(first_split, 1.0, 0.0)
    inv_oscale = column(vecs.at[rows["inv_scale"]], interpret) if quantize_out else None
    bcast = lambda v: None if v is None else lax.broadcast_in_dim(v, (tile_m, tile_n), [1])
    if quantize_out and activation == "gelu" and (fp8_cast or out_qtype == "int8"):
        # GELU with the output scale folded in (base.gelu_scaled): on float16 pairs to int8; fp8 keeps float32
        # (its steps are relative, and float16 rounding moved 4-7% of its codes, H100, bench/RESULTS.md),
        # and there the saturating cast clips
        x = acc.astype(jnp.float32) * bcast(col)
        x = x if bias is None else x + bcast(bias)
        dtype, top = QTYPES[out_qtype]
        if out_qtype == "int8":
            q = gelu_scaled(x, bcast(0.5 * inv_oscale), top, tanh=lambda t: tanh_half(t, interpret))
            y = int8_codes_from_pairs(q, interpret)
        else:
            y = gelu_scaled(x, bcast(0.5 * inv_oscale), top, dtype=jnp.float32, clip=interpret).astype(dtype)
    else:
        y = epilogue(acc, bcast(col), bcast(bias), activation=activation, out_inv_scale=bcast(inv_oscale),
                     out_qtype=out_qtype, out_dtype=out_smem.dtype, in_kernel=True,
                     activations=REQUANT_ACTIVATIONS if quantize_out else KERNEL_ACTIVATIONS,
                     fp8_cast=fp8_cast, cast_saturates=not interpret)
    slots = out_slots(tile_m, tile_n, epi_m, epi_n)
    plgpu.wait_smem_to_gmem(0, wait_read_only=True)  # the previous tile's stores have left the buffers
    for ei in range(tile_m // epi_m):
        for ej in range(tile_n // epi_n):
            slot = (ei * (tile_n // epi_n) + ej) % slots
            rows, cols = slice(ei * epi_m, (ei + 1) * epi_m), slice(ej * epi_n, (ej + 1) * epi_n)
            plgpu.wait_smem_to_gmem(slots - 1, wait_read_only=True)
            out_smem[slot] = y[rows, cols]
            plgpu.commit_smem()
            plgpu.copy_smem_to_gmem(out_smem.at[slot], out_tile.at[rows, cols])
