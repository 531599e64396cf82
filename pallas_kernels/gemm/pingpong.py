"""The "pingpong" schedule of the Mosaic GEMM: one warpgroup's epilogue under the other's main loop.

The cooperative schedule (cooperative.py) runs each CTA tile's main loop on both compute warpgroups,
then its epilogue on both: the tensor cores idle for the whole epilogue, which on FFN1 (GELU and
requantization of a 16384 x 3072 output) costs about as much as the main loop.

Here the SM's tiles j = 0, 1, 2, ... go round the C compute warpgroups
(tile j belongs to warpgroup j % C), and their main loops take turns: warpgroup
w starts tile j's `wgmma`s once the previous one has issued and retired tile
j-1's, then runs tile j's epilogue while tile j+1 has the tensor cores
(CUTLASS's "ping-pong" kernel schedule, C = 2). A third compute warpgroup
(`cfg.consumers` = 3) suits epilogues that take longer than a main loop (FFN1's
GELU and requantization, and QKV's requantization on 256-byte K steps, whose
main loops are shorter): two of them run at once, on fewer registers each.

Split K (`cfg.splits` = P > 1): each output tile is P tiles over consecutive
K ranges, and split p writes its partial product to rows `p * M ...` of a
`[P * M, N]` output that the caller's next kernel sums (the residual
LayerNorm); split 0 adds the bias. With few rows (batch 1: M = 128) a narrow weight makes a dozen
output tiles, so a dozen SMs would stream it; split, the weight spreads over
most of them, with no reduction kernel and no atomics.

The main loops run in tile order, so the warpgroups consume one ring of
`max_concurrent_steps` shared-memory slots in the order the memory warpgroup
fills it: use u = j * k_iters + kk of tile j goes to slot u % steps. Each slot's
barriers come in C copies, one per compute warpgroup, and the memory warpgroup
signals the copy of the tile's owner: Pallas tracks a barrier's phase per
thread, so every phase of a barrier must be waited on by the one warpgroup that
waits on all of them, in order.

Barriers (one phase per use):
  full[w, s]   TMA landed in slot s for warpgroup w (two arrivals: A and B tile)
  empty[w, s]  warpgroup w's `wgmma`s have finished reading slot s
  turn[w]      warpgroup w may start its next main loop
  vec[w, v]    the tile's epilogue vectors landed (two slots, alternating)
"""

from __future__ import annotations

import functools
from typing import Any

import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

from pallas_kernels.gemm.config import GemmConfig, out_slots
from pallas_kernels.gemm.epilogue import Epilogue
from pallas_kernels.gemm.layout import accumulator_dtype, k_major_operand, swizzled, transpose_scratch, weight_kn
from pallas_kernels.gemm.store import epilogue_and_store

REGISTER_FILE = 65536  # 32-bit registers per SM on sm_90 (the only target of `wgmma`), shared by the warpgroups


def registers(consumers: int) -> tuple[int, int]:
    """Registers per thread of the TMA warpgroup (it needs few) and of each compute warpgroup (the rest, in
    steps of 8 as `setmaxnreg` takes them): 40 and 232 with two compute warpgroups, 24 and 160 with three."""
    memory = 40 if consumers == 2 else 24
    return memory, (REGISTER_FILE // 128 - memory) // consumers // 8 * 8


def pingpong_kernel(x_gmem, w_gmem, vec_gmem, out_gmem, *, cfg: GemmConfig, epilogue: Epilogue, interpret: bool,
                    grid_size: int) -> None:
    """One program (an SM) of the ping-pong GEMM over `grid_size` programs; see the module docstring."""
    m, k = x_gmem.shape
    in_dtype, out_dtype = x_gmem.dtype, out_gmem.dtype
    kn = weight_kn(in_dtype)
    n = w_gmem.shape[1] if kn else w_gmem.shape[0]
    tm, tn, tk, steps, splits = cfg.tile_m, cfg.tile_n, cfg.tile_k, cfg.max_concurrent_steps, cfg.splits
    wgs = cfg.consumers  # compute warpgroups; warpgroup `wgs` issues the TMA loads
    m_iters, n_iters, k_iters = m // tm, n // tn, k // tk // splits  # k_iters: one split's K steps
    num_tiles = m_iters * n_iters * splits
    acc_dtype = accumulator_dtype(in_dtype)
    in_transforms = swizzled(tk, in_dtype)
    epi_m, epi_n = cfg.epi_tile_m, cfg.epi_tile_n
    b_tile = (tk, tn) if kn else (tn, tk)
    b_transforms = () if interpret and kn else in_transforms  # the interpreter takes no tiling of [K, N] tiles

    scratch: dict[str, Any] = dict(
        a_smem=plgpu.SMEM((steps, tm, tk), in_dtype, transforms=in_transforms),
        b_smem=plgpu.SMEM((steps, *b_tile), in_dtype, transforms=b_transforms),
        out_smem=plgpu.SMEM((wgs, out_slots(tm, tn, epi_m, epi_n), epi_m, epi_n), out_dtype,
                            transforms=swizzled(epi_n, out_dtype)),
        vec_smem=plgpu.SMEM((wgs, 2, vec_gmem.shape[0], tn), jnp.float32),
        full=plgpu.Barrier(num_arrivals=2, num_barriers=wgs * steps),
        empty=plgpu.Barrier(num_barriers=wgs * steps),
        turn=plgpu.Barrier(num_barriers=wgs),
        vec_bar=plgpu.Barrier(num_barriers=2 * wgs),
        **transpose_scratch((wgs, tk, tn), in_dtype, kn, interpret),
    )

    @functools.partial(pl.run_scoped, collective_axes="wg", **scratch)  # type: ignore[call-arg]  # mypy: **dict
    def _scope(a_smem, b_smem, out_smem, vec_smem, full, empty, turn, vec_bar, b_t=None):
        wg = lax.axis_index("wg")
        sm = lax.axis_index("sm")
        count = lax.div(num_tiles - sm + grid_size - 1, grid_size)  # this SM's tiles: sm, sm + grid_size, ...
        minor = 1 if cfg.grid_minor == "n" else 0
        owner = lambda use: lax.rem(lax.div(use, k_iters), wgs)  # the warpgroup whose tile a slot use belongs to
        tiles_of = lambda w: lax.div(count - w + wgs - 1, wgs)  # how many of this SM's tiles warpgroup w takes
        memory_regs, compute_regs = registers(wgs)

        def tile_origin(j):
            """Tile j's first row and column, the first column of its K split, and its first output row."""
            lin = sm + j * grid_size
            split, lin = lax.div(lin, m_iters * n_iters), lax.rem(lin, m_iters * n_iters)
            mi, ni = plgpu.planar_snake(lin, (m_iters, n_iters), minor, cfg.grid_tile_width)
            return mi * tm, ni * tn, split * (k_iters * tk), split * m + mi * tm

        @pl.when(wg == wgs)
        def _memory():
            plgpu.set_max_registers(memory_regs, action="decrease")

            @pl.loop(0, count)
            def _tile(j):
                row0, col0, k0, _ = tile_origin(j)

                @pl.loop(0, k_iters)
                def _step(kk):
                    use = j * k_iters + kk
                    slot = lax.rem(use, steps)

                    @pl.when(use >= steps)
                    def _():
                        plgpu.barrier_wait(empty.at[owner(use - steps) * steps + slot])

                    ks, bar = pl.ds(k0 + kk * tk, tk), full.at[lax.rem(j, wgs) * steps + slot]
                    plgpu.copy_gmem_to_smem(x_gmem.at[pl.ds(row0, tm), ks], a_smem.at[slot], bar)
                    w_tile = w_gmem.at[ks, pl.ds(col0, tn)] if kn else w_gmem.at[pl.ds(col0, tn), ks]
                    plgpu.copy_gmem_to_smem(w_tile, b_smem.at[slot], bar)

            # wait for the last release of every slot, so each barrier phase is observed (the interpreter
            # checks it) and nothing is in flight when the kernel ends
            total = count * k_iters
            for slot in range(steps):
                @pl.when(total > slot)
                def _(slot=slot):
                    last = total - 1 - lax.rem(total - 1 - slot, steps)
                    plgpu.barrier_wait(empty.at[owner(last) * steps + slot])

        @pl.when(wg < wgs)
        def _compute():
            plgpu.set_max_registers(compute_regs, action="increase")

            @pl.when(wg == wgs - 1)
            def _():
                plgpu.barrier_arrive(turn.at[0])  # warpgroup 0 takes the first turn

            @pl.loop(0, tiles_of(wg))
            def _tile(i):
                j = wgs * i + wg
                _, col0, k0, out_row0 = tile_origin(j)
                vslot = lax.rem(i, 2)
                vecs, vbar = vec_smem.at[wg, vslot], vec_bar.at[wg * 2 + vslot]
                plgpu.copy_gmem_to_smem(vec_gmem.at[:, pl.ds(col0, tn)], vecs, vbar)  # lands during the main loop
                plgpu.barrier_wait(turn.at[wg])

                def main_loop(acc_ref):
                    def step(kk, _):
                        use = j * k_iters + kk
                        slot = lax.rem(use, steps)
                        plgpu.barrier_wait(full.at[wg * steps + slot])
                        if kn:
                            b = b_smem.at[slot]
                        else:
                            b = k_major_operand(b_smem.at[slot], None if b_t is None else b_t.at[wg], interpret)
                        plgpu.wgmma(acc_ref, a_smem.at[slot], b)
                        plgpu.wgmma_wait(1)  # the previous step's wgmma is done: its slot can be refilled

                        @pl.when(kk > 0)
                        def _():
                            plgpu.barrier_arrive(empty.at[wg * steps + lax.rem(use - 1, steps)])

                    lax.fori_loop(0, k_iters, step, None)
                    plgpu.wgmma_wait(0)
                    plgpu.barrier_arrive(empty.at[wg * steps + lax.rem(j * k_iters + k_iters - 1, steps)])
                    return acc_ref[...]

                acc = pl.run_scoped(main_loop, plgpu.ACC((tm, tn), acc_dtype))
                plgpu.barrier_arrive(turn.at[lax.rem(wg + 1, wgs)])  # the tensor cores are the next warpgroup's
                epilogue_and_store(acc, vecs, vbar, out_smem.at[wg], out_gmem.at[pl.ds(out_row0, tm), pl.ds(col0, tn)],
                                   spec=epilogue, epi_m=epi_m, epi_n=epi_n, interpret=interpret,
                                   first_split=(k0 == 0) if splits > 1 else None)

            # turn[w] has an arrival per tile of warpgroup w - 1 (turn[0] one more, the first turn) and is waited
            # on once per tile of w: observe the one left over
            arrivals = tiles_of(lax.rem(wg + wgs - 1, wgs)) + (wg == 0).astype(jnp.int32)

            @pl.when(arrivals > tiles_of(wg))
            def _():
                plgpu.barrier_wait(turn.at[wg])

    plgpu.wait_smem_to_gmem(0, wait_read_only=True)
