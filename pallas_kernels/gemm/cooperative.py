"""The "cooperative" schedule of the Mosaic GEMM: two compute warpgroups share each CTA tile.

A persistent kernel: one program per SM walks the (M/tile, N/tile) output tiles in a planar snake; a
memory warpgroup streams `[cta_m, tile_k]` activation and weight tiles into shared memory with TMA,
and the two compute warpgroups split the CTA tile along `cfg.wg_axis`, run its main loop (`wgmma` into a
register accumulator), then its epilogue (store.py), together. While they run the epilogue the tensor
cores idle, which costs little where the main loop is long (FFN2's K = 3072) and much where the epilogue
is (FFN1's GELU): pingpong.py overlaps the two there.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

from pallas_kernels.gemm.config import GemmConfig, out_slots
from pallas_kernels.gemm.epilogue import Epilogue
from pallas_kernels.gemm.layout import accumulator_dtype, swizzled
from pallas_kernels.gemm.store import epilogue_and_store


def cooperative_kernel(x_gmem, w_gmem, vec_gmem, out_gmem, *, cfg: GemmConfig, epilogue: Epilogue, kn: bool,
                       interpret: bool) -> None:
    """One program (an SM) of the cooperative GEMM; `plgpu.nd_loop` spreads the tiles over the programs.

    `kn`: the weight is `[K, N]` (else K-major `[N, K]`, each tile handed to `wgmma` as a transposed view).
    """
    m, k = x_gmem.shape
    in_dtype, out_dtype = x_gmem.dtype, out_gmem.dtype
    n = w_gmem.shape[1] if kn else w_gmem.shape[0]
    tile_m, tile_n, tile_k = cfg.tile_m, cfg.tile_n, cfg.tile_k
    cta_m, cta_n = cfg.cta_tile
    m_iters, n_iters, k_iters = m // cta_m, n // cta_n, k // tile_k
    acc_dtype = accumulator_dtype(in_dtype)
    in_transforms = swizzled(tile_k, in_dtype)
    epi_m, epi_n = cfg.epi_tile_m, cfg.epi_tile_n
    out_transforms = swizzled(epi_n, out_dtype)
    slots = out_slots(tile_m, tile_n, epi_m, epi_n)

    def pipeline(body, compute_context):
        return plgpu.emit_pipeline_warp_specialized(
            body,
            grid=(k_iters,),
            memory_registers=40,
            in_specs=[
                plgpu.BlockSpec((cta_m, tile_k), lambda kk: (0, kk), transforms=in_transforms),
                plgpu.BlockSpec((tile_k, cta_n), lambda kk: (kk, 0), transforms=() if interpret else in_transforms)
                if kn
                else plgpu.BlockSpec((cta_n, tile_k), lambda kk: (0, kk), transforms=in_transforms),
            ],
            wg_axis="wg",
            num_compute_wgs=2,
            max_concurrent_steps=cfg.max_concurrent_steps,
            compute_context=compute_context,
        )

    ignore = lambda *_, **__: None  # noqa: E731

    @functools.partial(
        pl.run_scoped,
        allocs=pipeline(ignore, ignore).get_allocations(x_gmem, w_gmem),
        out_smem=plgpu.SMEM((2, slots, epi_m, epi_n), out_dtype, transforms=out_transforms),
        # column scale, bias, reciprocal output scale of this tile; two slots so the next tile's copy never
        # overwrites values the previous epilogue may still be reading
        vec_smem=plgpu.SMEM((2, 2, vec_gmem.shape[0], tile_n), jnp.float32),
        vec_barrier=plgpu.Barrier(num_barriers=4),
        collective_axes="wg",
    )
    def _scope(allocs, out_smem, vec_smem, vec_barrier):
        wg = lax.axis_index("wg")

        @plgpu.nd_loop((m_iters * n_iters,), collective_axes="sm")
        def _tiles(info):
            (lin,) = info.index
            minor = 1 if cfg.grid_minor == "n" else 0
            mi, ni = plgpu.planar_snake(lin, (m_iters, n_iters), minor, cfg.grid_tile_width)
            cta_rows = pl.ds(mi * cta_m, cta_m)
            if cfg.wg_axis == "m":
                wg_rows, wg_cols = pl.ds(mi * cta_m + wg * tile_m, tile_m), pl.ds(ni * cta_n, tile_n)
                a_rows, b_rows = pl.ds(wg * tile_m, tile_m), slice(None)
            else:
                wg_rows, wg_cols = pl.ds(mi * cta_m, tile_m), pl.ds(ni * cta_n + wg * tile_n, tile_n)
                a_rows, b_rows = slice(None), pl.ds(wg * tile_n, tile_n)

            def compute_context(run_pipeline):
                vslot = lax.rem(info.local_index, 2)
                vecs, vbar = vec_smem.at[wg, vslot], vec_barrier.at[wg * 2 + vslot]
                plgpu.copy_gmem_to_smem(vec_gmem.at[:, wg_cols], vecs, vbar)  # lands during the main loop

                @functools.partial(pl.run_scoped, acc_ref=plgpu.ACC((tile_m, tile_n), acc_dtype))
                def _acc(acc_ref):
                    run_pipeline(acc_ref)
                    epilogue_and_store(acc_ref[...], vecs, vbar, out_smem.at[wg], out_gmem.at[wg_rows, wg_cols],
                                       spec=epilogue, epi_m=epi_m, epi_n=epi_n, interpret=interpret)

            def mma(_, a_smem, b_smem, acc_ref):
                b = b_smem.at[:, b_rows] if kn else b_smem.at[b_rows].T
                plgpu.wgmma(acc_ref, a_smem.at[a_rows], b)
                plgpu.wgmma_wait(0)
                return acc_ref

            pipeline(mma, compute_context)(
                x_gmem.at[cta_rows, :],
                w_gmem.at[:, pl.ds(ni * cta_n, cta_n)] if kn else w_gmem.at[pl.ds(ni * cta_n, cta_n), :],
                allocations=allocs,
            )

    plgpu.wait_smem_to_gmem(0, wait_read_only=True)
