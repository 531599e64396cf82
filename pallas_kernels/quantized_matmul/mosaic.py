"""Mosaic GPU (Hopper `wgmma`) 8-bit GEMM with the epilogue fused.

    out = epilogue(x_q @ w_q)      (base.epilogue: column scale, bias, activation,
                                    cast or requantize)

Both schedules are persistent, warp-specialized kernels: one CTA per SM walks
the (M/tile, N/tile) output tiles in a planar snake, a memory warpgroup streams
`[tile_m, tile_k]` activation and `[tile_n, tile_k]` weight tiles into shared
memory with TMA, and two (ping-pong: two or three) compute warpgroups issue `wgmma` with an int32 (int8)
or float32 (fp8) accumulator in registers, then run the epilogue on it
(mosaic_epilogue.py). The same kernels run the float GEMM on fp16/bf16
operands (matmul/mosaic.py: float32 accumulator, `[K, N]` weight tiles, an
epilogue of bias and activation alone); `run_gemm` launches either.

  * "cooperative" (this file): the two compute warpgroups split one CTA tile
    and run its main loop, then its epilogue, together. While they run the
    epilogue the tensor cores idle, and on FFN1 (GELU, a 16384 x 3072 output)
    the epilogue costs as much as the main loop.
  * "pingpong" (mosaic_pingpong.py): each compute warpgroup owns whole tiles,
    taking turns, so one runs its epilogue while the other's main loop has the
    tensor cores (FFN1, whose epilogue outlasts a main loop: three warpgroups).

8-bit `wgmma` takes B K-major only, so the weight arrives packed
(`base.pack_weight`: `[N, K]` codes and the `[3, N]` epilogue vectors, built
once per plan) and is handed over as a transposed view of its shared-memory
tile. The kernels are compiled with approximate math: the epilogue's GELU and
requantization are instruction-bound on wide outputs, and `exp2`/`tanh` become
single `ex2.approx`/`tanh.approx` instructions (relative error ~2^-22 and 2^-11;
`tanh` only where the output is requantized: base.gelu_scaled, in float32 to
fp8 and on float16 pairs to int8).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import mosaic_gpu as plgpu

from pallas_kernels._launch import StaticPartial, launch
from pallas_kernels._platform import interpreting, mosaic_interpret_params, num_sms, on_hopper
from pallas_kernels.quantized_matmul.base import (
    KERNEL_ACTIVATIONS,
    PackedWeight,
    pack_weight,
    packed_result_dtype,
)
from pallas_kernels.quantized_matmul.mosaic_epilogue import (
    accumulator_dtype,
    epilogue_and_store,
    out_slots,
    swizzled,
    weight_kn,
)
from pallas_kernels.quantized_matmul.mosaic_pingpong import pingpong_kernel

SCHEDULES = ("cooperative", "pingpong")


@dataclasses.dataclass(frozen=True)
class MosaicGemmConfig:
    """Tiles and schedule of the 8-bit GEMM.

    `tile_m x tile_n` is one compute warpgroup's tile. "cooperative": `wg_axis` says whether the two warpgroups
    split the CTA tile along M or N. "pingpong": the CTA tile is the warpgroup tile. Either way
    `max_concurrent_steps` shared-memory slots of A and B tiles feed the main loops.
    """

    tile_m: int = 128
    tile_n: int = 128
    tile_k: int = 128
    max_concurrent_steps: int = 4
    epi_tile_m: int = 64
    epi_tile_n: int = 64
    wg_axis: str = "n"
    grid_minor: str = "n"
    grid_tile_width: int = 4
    schedule: str = "cooperative"
    splits: int = 1  # K split over this many tiles per output tile, partial products out (ping-pong only)
    consumers: int = 2  # compute warpgroups taking turns at the tensor cores (ping-pong only)

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"MosaicGemmConfig: schedule={self.schedule!r} is not one of {SCHEDULES}")
        if self.splits < 1 or (self.splits > 1 and self.schedule != "pingpong"):
            raise ValueError(f"MosaicGemmConfig: splits={self.splits} must be 1, or more with the ping-pong schedule")
        if self.consumers not in (2, 3) or (self.consumers != 2 and self.schedule != "pingpong"):
            raise ValueError(f"MosaicGemmConfig: consumers={self.consumers} must be 2, or 3 with the ping-pong schedule")
        if self.wg_axis not in ("m", "n") or self.grid_minor not in ("m", "n"):
            raise ValueError(f"MosaicGemmConfig: wg_axis={self.wg_axis!r} and grid_minor={self.grid_minor!r} "
                             "must be 'm' or 'n'")

    @property
    def cta_tile(self) -> tuple[int, int]:
        if self.schedule == "pingpong":
            return self.tile_m, self.tile_n
        return (self.tile_m * (2 if self.wg_axis == "m" else 1), self.tile_n * (2 if self.wg_axis == "n" else 1))


DEFAULT_CONFIG = MosaicGemmConfig()


SMEM_BYTES = 232448  # H100 shared memory per block (the limit Mosaic GPU reports)


def smem_bytes(cfg: MosaicGemmConfig, out_itemsize: int, in_itemsize: int = 1) -> int:
    """Shared memory the kernel allocates: pipeline slots, epilogue tiles, the per-column vectors."""
    cm, cn = cfg.cta_tile
    pipeline = cfg.max_concurrent_steps * (cm + cn) * cfg.tile_k * in_itemsize
    wgs = cfg.consumers
    epi = wgs * out_slots(cfg.tile_m, cfg.tile_n, cfg.epi_tile_m, cfg.epi_tile_n) * cfg.epi_tile_m * cfg.epi_tile_n
    return pipeline + epi * out_itemsize + wgs * 2 * 3 * cfg.tile_n * 4 + 1024


def fit_shared_memory(cfg: MosaicGemmConfig, out_itemsize: int, in_itemsize: int = 1) -> MosaicGemmConfig:
    """`cfg` with its pipeline cut to as many stages (at least 2) as fit in shared memory; a `ValueError`
    where two do not (`check_shared_memory`)."""
    while smem_bytes(cfg, out_itemsize, in_itemsize) > SMEM_BYTES and cfg.max_concurrent_steps > 2:
        cfg = dataclasses.replace(cfg, max_concurrent_steps=cfg.max_concurrent_steps - 1)
    check_shared_memory(cfg, out_itemsize, in_itemsize)
    return cfg


def check_shared_memory(cfg: MosaicGemmConfig, out_itemsize: int, in_itemsize: int = 1) -> None:
    """A `ValueError` naming `cfg` where its buffers exceed an SM's shared memory (`smem_bytes`, an estimate
    within 1 KiB above what Mosaic GPU allocates), before Mosaic GPU fails on it while compiling."""
    need = smem_bytes(cfg, out_itemsize, in_itemsize)
    if need > SMEM_BYTES:
        raise ValueError(f"mosaic GEMM: {cfg} needs about {need} bytes of shared memory with {out_itemsize}-byte "
                         f"outputs and {in_itemsize}-byte inputs, more than an SM's {SMEM_BYTES}; take fewer "
                         "max_concurrent_steps, consumers or a smaller tile_k")


def num_tiles(cfg: MosaicGemmConfig, m: int, n: int) -> int:
    cm, cn = cfg.cta_tile
    return (m // cm) * (n // cn)


def few_rows_cost(cfg: MosaicGemmConfig, m: int, n: int, sms: int) -> int:
    """Where a GEMM streams its weight: tile rounds per SM times the rows of A and B a tile reads."""
    cm, cn = cfg.cta_tile
    return -(-num_tiles(cfg, m, n) // sms) * (cm + cn)


MAX_SPLITS = 8


def split_k(cfg: MosaicGemmConfig, m: int, n: int, k: int, sms: int = 132) -> MosaicGemmConfig:
    """`cfg` (a ping-pong few-rows tile) with K split where its output tiles leave most SMs idle.

    The split count is the largest divisor of the K steps (at most `MAX_SPLITS`) that keeps every tile of
    the split GEMM on an SM of its own: each split streams `1/P` of the weight, and P partial products of
    `m x n` float32 leave for the next kernel to sum.
    """
    tiles, k_steps = num_tiles(cfg, m, n), k // cfg.tile_k
    if cfg.schedule != "pingpong" or tiles >= sms // 2:
        return cfg
    splits = max(p for p in range(1, MAX_SPLITS + 1) if k_steps % p == 0 and tiles * p <= sms)
    return dataclasses.replace(cfg, splits=splits)


def pick_config(m: int, n: int, k: int, out_itemsize: int = 2, in_itemsize: int = 1,
                sms: int = 132, *, activation: str | None = None) -> MosaicGemmConfig:
    """The tuned configuration for a GEMM, cut to what fits in shared memory.

    The ping-pong tile where K is short (K <= 1024), else the first tuned large tile that divides the problem,
    while it gives at least half the SMs a tile (about 4096 rows and up); with an activation in the epilogue
    (FFN1's GELU), three compute warpgroups take turns there, and with 8-bit input and output (the full_*
    plans' QKV and FFN1) three of them on 256-byte K steps. With fewer rows the GEMM streams its
    weight through few SMs, so the candidate of least `few_rows_cost` (ties: the few-rows ping-pong tiles
    first). K tiles are otherwise one 128-byte swizzle row (128 8-bit or 64 16-bit values).
    """
    pingpong = k <= 1024
    large = ((PINGPONG_SHORT_K,) if pingpong else ()) + CANDIDATES
    tile_k = 128 // in_itemsize
    fits = lambda cfg: not (m % cfg.cta_tile[0] or n % cfg.cta_tile[1] or k % tile_k)
    large = [dataclasses.replace(cfg, tile_k=tile_k) for cfg in large if fits(cfg)]
    few = [dataclasses.replace(cfg, tile_k=tile_k) for cfg in FEW_ROWS_CANDIDATES if fits(cfg)]
    if not large + few:
        raise NotImplementedError(f"mosaic GEMM: no tile configuration divides (M, N, K)=({m}, {n}, {k})")
    cfg = (large + few)[0]
    if num_tiles(cfg, m, n) < sms // 2:
        cfg = min(few + large, key=lambda c: few_rows_cost(c, m, n, sms))
    elif cfg.schedule == "pingpong":
        if activation is not None:
            cfg = dataclasses.replace(cfg, consumers=3)
        # 8-bit in and out: three warpgroups on K steps of two swizzle rows (half the barrier round trips and
        # twice the `wgmma`s in flight a step), where three stages of them fit
        wide = dataclasses.replace(cfg, consumers=3, tile_k=2 * tile_k, max_concurrent_steps=3)
        if in_itemsize == out_itemsize == 1 and not k % wide.tile_k and smem_bytes(wide, 1) <= SMEM_BYTES:
            cfg = wide
    return fit_shared_memory(cfg, out_itemsize, in_itemsize)


# H100 sweeps (bench/kernels.py --sweep, 2026-11-23 at 8cb36ed, ms at 128 x 128 tokens):
#   QKV 16384 x 768 x 2304: ping-pong 128 x 128 (6 stages) 0.0471 to int8, 0.0533 to bf16 (5 stages, what
#     fits), where the cooperative 128 x 256 CTA tile takes 0.0545 and 0.0632;
#   FFN1 16384 x 768 x 3072 + GELU: to bf16 ping-pong 0.0984 against 0.1039-0.1082 cooperative; to int8 a
#     tie (cooperative 0.1020, ping-pong 0.1009-0.1116) until the requantizing epilogue took its GELU from
#     tanh (base.gelu_tanh_fit): then ping-pong 0.0786 against 0.0862 (fp8: 0.0776 against 0.0827; 2026-11-23
#     at 40bd55c, bench/RESULTS.md eighth pass);
#   FFN2 16384 x 3072 x 768: the cooperative 128 x 256 tile (0.0523 int8, 0.0539 bf16) ties or beats
#     ping-pong (0.0523, 0.0575).
#   attention-out 16384 x 768 x 768 to fp16 (2026-11-23 at dccd0cb): ping-pong 128 x 128, 5 stages, 0.0200 int8
#     and 0.0331 fp16 against the cooperative 128 x 256 tile's 0.0222 and 0.0339; FFN2 stays cooperative
#     (int8 0.0537 against 0.0543-0.0629 ping-pong, fp16 0.1065 against 0.1086-0.1254).
#   FFN1 with three compute warpgroups (2026-11-24 at 1ce68f1 + the consumers option): int8 -> int8 0.0709
#     against 0.0764 with two, fp8 0.0730 against 0.0797, int8 -> fp16 0.0907 against 0.0949; QKV (0.0461
#     against 0.0454) and attention-out (0.0205 against 0.0200) have short epilogues and kept two there.
#   256-byte K steps (tile_k 256, three stages) with three compute warpgroups (2026-11-24 at 477cea7, two runs):
#     int8 -> int8 FFN1 0.0631 against 0.0653 on 128-byte steps, fp8 0.0696 against 0.0738; QKV int8 0.0451
#     against 0.0458 (two warpgroups), fp8 0.0471 against 0.0475; attention-out to fp16 fits only two such
#     stages: 0.0236 against 0.0197.
# So ping-pong where K is short (the epilogue and each tile's pipeline fill are a large part of the time), the
# cooperative 128 x 256 CTA tile elsewhere, smaller tiles for shapes it does not divide.
PINGPONG_SHORT_K = MosaicGemmConfig(max_concurrent_steps=6, schedule="pingpong")
CANDIDATES = (
    DEFAULT_CONFIG,
    MosaicGemmConfig(tile_m=64, tile_n=128, wg_axis="m"),
    MosaicGemmConfig(tile_m=64, tile_n=64, wg_axis="m"),
)
# Few rows: at batch 1 x 128 (M = 128), 128 x 256 tiles put an N = 768 weight on 3 SMs. Ping-pong tiles of
# 64 rows (one warpgroup's `wgmma` height) or 64 columns spread it wider. H100 sweep (kernels.py --sections
# gemm-rows --sweep, 2026-11-23 at 27ee646, fp16 / int8 us): M = 128, 64 x 64 everywhere (FFN1 4.8 / 3.8
# against 6.1 / 5.2 for the next); M = 1024, 128 x 64 or 64 x 128 on FFN2 (12.2 / 7.1 against 19.4 / 10.3
# for 64 x 64, two rounds of tiles) and attention-out; from 4096 rows the large tiles above.
FEW_ROWS_CANDIDATES = (
    MosaicGemmConfig(tile_m=128, tile_n=64, max_concurrent_steps=8, schedule="pingpong"),
    MosaicGemmConfig(tile_m=64, tile_n=128, max_concurrent_steps=8, schedule="pingpong"),
    MosaicGemmConfig(tile_m=64, tile_n=64, max_concurrent_steps=8, schedule="pingpong"),
)


def _cooperative_kernel(x_gmem, w_gmem, vec_gmem, out_gmem, *, cfg, interpret, **epi):
    m, k = x_gmem.shape
    in_dtype, out_dtype = x_gmem.dtype, out_gmem.dtype
    kn = weight_kn(in_dtype, interpret)
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

    ignore = lambda *_, **__: None

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
                                       epi_m=epi_m, epi_n=epi_n, interpret=interpret, **epi)

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


def quantized_matmul_mosaic(
    x_q: jax.Array,
    x_scale: jax.Array,
    w_q: jax.Array,
    w_scale: jax.Array,
    bias: jax.Array | None = None,
    *,
    qtype: str,
    activation: str | None = None,
    out_dtype=jnp.float32,
    out_scale: jax.Array | None = None,
    out_qtype: str | None = None,
    config: MosaicGemmConfig | None = None,
    interpret: bool = False,
) -> jax.Array:
    """`quantized_matmul_reference`, as one Mosaic GPU kernel (Hopper only; `interpret` simulates it on a CPU).

    Packs the weight on every call; serving packs it once and calls
    `quantized_matmul_mosaic_packed`.
    """
    packed = pack_weight(w_q, w_scale, bias, x_scale=x_scale, out_scale=out_scale, qtype=qtype)
    return quantized_matmul_mosaic_packed(x_q, packed, activation=activation, out_dtype=out_dtype,
                                          out_qtype=out_qtype, config=config, interpret=interpret)


def quantized_matmul_mosaic_packed(
    x_q: jax.Array,
    packed: PackedWeight,
    *,
    activation: str | None = None,
    out_dtype=jnp.float32,
    out_qtype: str | None = None,
    config: MosaicGemmConfig | None = None,
    fp8_cast: bool = True,
    partial_sums: bool = False,
    interpret: bool = False,
) -> jax.Array:
    """`quantized_matmul_packed_reference`, as one Mosaic GPU kernel.

    `fp8_cast`: an fp8 output is requantized by the hardware's saturating round-to-nearest-even cast
    (`False`: the reference's integer-bit form; both give the same codes, which the GPU test checks).
    `partial_sums` (a weight packed without an output scale, no activation): `[P, ..., N]` scaled partial
    products (the bias in the first), K split over P (`split_k`) where few rows would leave SMs idle, else
    P = 1 in `out_dtype`.
    """
    interpret = interpret or interpreting()
    if not interpret and not on_hopper():
        raise NotImplementedError("mosaic 8-bit GEMM runs on a Hopper GPU (or with interpret=True)")
    if activation is not None and activation not in KERNEL_ACTIVATIONS:
        raise NotImplementedError(f"mosaic 8-bit GEMM: no in-kernel {activation=}")
    w = packed.w_t.T if weight_kn(x_q.dtype, interpret) else packed.w_t
    return run_gemm(x_q, w, packed.vectors, result_dtype=packed_result_dtype(packed, out_dtype, out_qtype),
                    config=config, interpret=interpret, partial_sums=partial_sums, activation=activation,
                    out_qtype=out_qtype or packed.qtype, has_bias=packed.has_bias, quantize_out=packed.requantize,
                    fp8_cast=fp8_cast)


def default_config(m: int, n: int, k: int, result_dtype, in_dtype, *, partial_sums: bool = False,
                   activation: str | None = None) -> MosaicGemmConfig:
    """`pick_config` for `m` rows (padded to 64) on this device's SMs; with `partial_sums`, K split
    (`split_k`) where few rows leave SMs idle, its partials in float32."""
    m, sms = _round_up(m, 64), num_sms()
    cfg = pick_config(m, n, k, jnp.dtype(result_dtype).itemsize, jnp.dtype(in_dtype).itemsize, sms,
                      activation=activation)
    if not partial_sums:
        return cfg
    split = split_k(cfg, m, n, k, sms)
    return split if split.splits == 1 else fit_shared_memory(split, 4, jnp.dtype(in_dtype).itemsize)


def partials_dtype(cfg: MosaicGemmConfig, out_dtype):
    """What a partial-sums GEMM writes: float32 partial products when K is split, else the output dtype."""
    return jnp.dtype(jnp.float32 if cfg.splits > 1 else out_dtype)


def padded_tiles(cfg: MosaicGemmConfig, m: int, n: int) -> int:
    """Output tiles of an `m x n` result once its rows are padded to the CTA tile."""
    return num_tiles(cfg, _round_up(m, cfg.cta_tile[0]), n)


def run_gemm(x: jax.Array, w: jax.Array, vectors: jax.Array, *, result_dtype, config: MosaicGemmConfig | None,
             interpret: bool, partial_sums: bool = False, **epi) -> jax.Array:
    """Launches the GEMM kernel on `x [..., K]` and `w` (`[K, N]` or `[N, K]`, as `weight_kn` says) with its
    `[rows, N]` epilogue vectors (`mosaic_epilogue.vector_rows`); `epi` configures the epilogue.

    Returns `[..., N]`; with `partial_sums` (a linear epilogue: no bias, activation or requantization) the
    `[P, ..., N]` partial products of `config.splits = P` K splits, float32 where P > 1.
    """
    lead, k = x.shape[:-1], x.shape[-1]
    x2 = x.reshape(-1, k)
    n = w.shape[1] if weight_kn(x.dtype, interpret) else w.shape[0]
    m = x2.shape[0]
    result_dtype = jnp.dtype(result_dtype)
    # rows are padded up to the CTA tile (batch 1 x seq 32 has 32); N and K must divide
    cfg = config or default_config(m, n, k, result_dtype, x.dtype, partial_sums=partial_sums,
                                   activation=epi.get("activation"))
    cta_m, splits = cfg.cta_tile[0], cfg.splits
    if partial_sums and (epi.get("activation") or epi.get("quantize_out")):
        raise ValueError(f"mosaic GEMM: partial sums need an epilogue without activation or requantization, got "
                         f"activation={epi.get('activation')!r}, quantize_out={epi.get('quantize_out')}")
    if splits > 1 and not partial_sums:
        raise ValueError(f"mosaic GEMM: splits={splits} writes partial products; call it with partial_sums=True")
    if partial_sums:
        result_dtype = partials_dtype(cfg, result_dtype)
    if cfg.cta_tile[1] > n or n % cfg.cta_tile[1] or k % (cfg.tile_k * splits):
        raise NotImplementedError(f"mosaic GEMM: {cfg} does not divide (N, K)=({n}, {k})")
    check_shared_memory(cfg, result_dtype.itemsize, x.dtype.itemsize)
    m_pad = _round_up(m, cta_m)
    if m_pad != m:
        x2 = jnp.pad(x2, ((0, m_pad - m), (0, 0)))
    grid = num_sms()
    # the cooperative kernel's nd_loop spreads tiles over the SMs itself; the ping-pong one counts them
    pingpong = cfg.schedule == "pingpong"
    kernel = StaticPartial(pingpong_kernel if pingpong else _cooperative_kernel, cfg=cfg, interpret=interpret,
                           **epi, **(dict(grid_size=grid) if pingpong else {}))
    # one lowering per executable for all layers (_launch)
    out = launch(StaticPartial(_gemm_call, kernel=kernel, out_type=jax.ShapeDtypeStruct((splits * m_pad, n), result_dtype),
                               grid=grid, num_threads=cfg.consumers + 1, interpret=interpret), x2, w, vectors)
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


def _round_up(x: int, to: int) -> int:
    return -(-x // to) * to
