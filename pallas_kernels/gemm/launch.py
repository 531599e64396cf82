"""Launching the Mosaic GEMM: row padding, the schedule's kernel, one program per SM."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.pallas import mosaic_gpu as plgpu

from pallas_kernels._launch import StaticPartial, launch
from pallas_kernels._platform import DeviceProperties, mosaic_interpret_params
from pallas_kernels.gemm.config import GemmConfig, check_shared_memory, divides, round_up
from pallas_kernels.gemm.cooperative import cooperative_kernel
from pallas_kernels.gemm.epilogue import Epilogue
from pallas_kernels.gemm.layout import weight_kn
from pallas_kernels.gemm.pingpong import pingpong_kernel

# Programs the CPU interpreter runs: a few simulated SMs, so that test-sized GEMMs put several tiles on each
# (the persistent loops, the ping-pong turns) at a cost a CPU bears. Compiled, the grid is the device's SMs.
INTERPRETED_SMS = 4


def partials_dtype(cfg: GemmConfig, out_dtype) -> jnp.dtype:
    """What a partial-sums GEMM writes: float32 partial products when K is split, else the output dtype."""
    return jnp.dtype(jnp.float32 if cfg.splits > 1 else out_dtype)


def run_gemm(x: jax.Array, w: jax.Array, vectors: jax.Array | np.ndarray, *, config: GemmConfig, epilogue: Epilogue,
             result_dtype, device: DeviceProperties, interpret: bool, partial_sums: bool = False) -> jax.Array:
    """Launches the GEMM kernel on `x [..., K]` and `w` (`[K, N]` or `[N, K]`, as `layout.weight_kn` says) with its
    `[rows, N]` epilogue vectors (`epilogue.vector_rows`).

    Returns `[..., N]` in `result_dtype`; with `partial_sums` (a linear epilogue) the `[P, ..., N]` partial
    products of `config.splits = P` K splits, float32 where P > 1. Rows are padded up to the CTA tile; a
    configuration that does not divide N and K raises NotImplementedError, one whose buffers exceed the
    device's shared memory a ValueError.
    """
    lead, k = x.shape[:-1], x.shape[-1]
    x2 = x.reshape(-1, k)
    kn = weight_kn(x.dtype)
    if interpret and not kn and config.schedule == "cooperative":
        # The interpreter runs `emit_pipeline_warp_specialized` with a transposing copy of each K-major tile
        # (layout.k_major_operand) into intermittent deadlocks (jax 0.10.2 on a 2-core CPU), so the
        # interpreted cooperative schedule streams the 8-bit weight as [K, N] tiles; the ping-pong schedule
        # interprets the K-major layout the GPU runs.
        w, kn = w.T, True
    n = w.shape[1] if kn else w.shape[0]
    m = x2.shape[0]
    result_dtype = jnp.dtype(result_dtype)
    cta_m, splits = config.cta_tile[0], config.splits
    if partial_sums and not epilogue.linear:
        raise ValueError(f"mosaic GEMM: partial sums need an epilogue without activation or requantization, got "
                         f"activation={epilogue.activation!r}, requantize={epilogue.requantize}")
    if splits > 1 and not partial_sums:
        raise ValueError(f"mosaic GEMM: splits={splits} writes partial products; call it with partial_sums=True")
    if partial_sums:
        result_dtype = partials_dtype(config, result_dtype)
    if not divides(config, n, k):
        raise NotImplementedError(f"mosaic GEMM: {config} does not divide (N, K)=({n}, {k})")
    check_shared_memory(config, result_dtype.itemsize, x.dtype.itemsize, device.smem_per_block)
    m_pad = round_up(m, cta_m)
    if m_pad != m:
        x2 = jnp.pad(x2, ((0, m_pad - m), (0, 0)))
    grid = INTERPRETED_SMS if interpret else device.sm_count
    # the cooperative kernel's nd_loop spreads tiles over the SMs itself; the ping-pong one counts them
    if config.schedule == "pingpong":
        kernel = StaticPartial(pingpong_kernel, cfg=config, epilogue=epilogue, interpret=interpret, grid_size=grid)
    else:
        kernel = StaticPartial(cooperative_kernel, cfg=config, epilogue=epilogue, kn=kn, interpret=interpret)
    out_type = jax.ShapeDtypeStruct((splits * m_pad, n), result_dtype)
    # one lowering per executable for all layers (_launch)
    out = launch(StaticPartial(_gemm_call, kernel=kernel, out_type=out_type, grid=grid,
                               num_threads=config.consumers + 1, interpret=interpret), x2, w, vectors)
    out = out.reshape(splits, m_pad, n)[:, :m].reshape(splits, *lead, n)
    return out if partial_sums else out[0]


def _gemm_call(x2, w, vectors, *, kernel, out_type, grid: int, num_threads: int, interpret: bool):
    call = plgpu.kernel(
        kernel,
        out_type=out_type,
        grid=(grid,),
        grid_names=("sm",),
        num_threads=num_threads,  # the compute warpgroups and one that issues the TMA loads
        thread_name="wg",
        compiler_params=plgpu.CompilerParams(approx_math=True),
        **mosaic_interpret_params(interpret),
    )
    return call(x2, w, vectors)
