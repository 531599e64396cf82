"""The Mosaic GEMM's tile choice: one function of the problem and the device's properties.

The rule (measured on the H100; gemm/README.md and bench/RESULTS.md, GEMM tables):
  * Many rows (the first tuned tile leaves no more than half the SMs idle): the ping-pong 128 x 128 tile
    where K is short (K <= 1024; the epilogue and each tile's pipeline fill are a large part of the
    time), else the cooperative 128 x 256 CTA tile, smaller tiles for shapes it does not divide. With an
    activation in a ping-pong epilogue (FFN1's GELU), three compute warpgroups take turns; with 8-bit in
    and out (the full_* plans' QKV and FFN1), three of them on 256-byte K steps where three stages fit.
  * Few rows: the GEMM streams its weight through few SMs, so the candidate of least `_few_rows_cost`
    (tile rounds per SM times the rows of A and B a tile reads; ties go to the few-rows ping-pong tiles).
  * Partial sums allowed (the consumer sums them, as the residual LayerNorm does): a ping-pong few-rows
    tile splits K (`_split_k`) so that its tiles cover most SMs; the parts are float32.
  * Float GEMMs whose tiles (times splits) cover less than a quarter of the SMs: XLA's GEMM (cuBLAS,
    which splits K itself) is faster on the device (`TileChoice.xla_faster`).
K tiles are one 128-byte swizzle row (128 8-bit or 64 16-bit values) unless said otherwise; every choice
is cut to the pipeline depth that fits the block's shared memory.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from pallas_kernels._platform import DeviceProperties
from pallas_kernels.gemm.config import GemmConfig, fit_shared_memory, num_tiles, padded_tiles, round_up, smem_bytes

PINGPONG_SHORT_K = GemmConfig(max_concurrent_steps=6, schedule="pingpong")
CANDIDATES = (
    GemmConfig(),
    GemmConfig(tile_m=64, tile_n=128, wg_axis="m"),
    GemmConfig(tile_m=64, tile_n=64, wg_axis="m"),
)
# Few rows: at batch 1 x 128 (M = 128), 128 x 256 tiles put an N = 768 weight on 3 SMs. Ping-pong tiles of
# 64 rows (one warpgroup's `wgmma` height) or 64 columns spread it wider.
FEW_ROWS_CANDIDATES = (
    GemmConfig(tile_m=128, tile_n=64, max_concurrent_steps=8, schedule="pingpong"),
    GemmConfig(tile_m=64, tile_n=128, max_concurrent_steps=8, schedule="pingpong"),
    GemmConfig(tile_m=64, tile_n=64, max_concurrent_steps=8, schedule="pingpong"),
)
SHORT_K = 1024  # K up to this takes the ping-pong schedule on many rows
MAX_SPLITS = 8
ROW_QUANTUM = 64  # rows are padded to a multiple of this (one warpgroup's `wgmma` height) before choosing


@dataclasses.dataclass(frozen=True)
class GemmProblem:
    """One GEMM as the tile choice sees it: `[m, k] @ [k, n]`, operand and result dtypes, the epilogue's
    activation, and whether the caller sums partial products (so K may be split)."""

    m: int
    n: int
    k: int
    in_dtype: DTypeLike
    out_dtype: DTypeLike
    activation: str | None = None
    partial_sums: bool = False


@dataclasses.dataclass(frozen=True)
class TileChoice:
    """The configuration to launch, and whether XLA's GEMM is faster than it on the device (float GEMMs
    on too few tiles; the interpreter runs the kernel regardless)."""

    config: GemmConfig
    xla_faster: bool = False


def choose_tiles(problem: GemmProblem, device: DeviceProperties) -> TileChoice | None:
    """The GEMM's configuration on `device` (module docstring); None where no tile divides N and K."""
    m, n, k = round_up(problem.m, ROW_QUANTUM), problem.n, problem.k
    in_dtype = np.dtype(problem.in_dtype)
    in_bytes, out_bytes = in_dtype.itemsize, np.dtype(problem.out_dtype).itemsize
    sms, smem = device.sm_count, device.smem_per_block
    tile_k = 128 // in_bytes
    fits = lambda c: not (m % c.cta_tile[0] or n % c.cta_tile[1] or k % tile_k)  # noqa: E731
    large = [dataclasses.replace(c, tile_k=tile_k) for c in ((PINGPONG_SHORT_K,) if k <= SHORT_K else ()) + CANDIDATES
             if fits(c)]
    few = [dataclasses.replace(c, tile_k=tile_k) for c in FEW_ROWS_CANDIDATES if fits(c)]
    if not large + few:
        return None
    cfg = (large + few)[0]
    if num_tiles(cfg, m, n) < sms // 2:
        cfg = min(few + large, key=lambda c: _few_rows_cost(c, m, n, sms))
    elif cfg.schedule == "pingpong":
        if problem.activation is not None:
            cfg = dataclasses.replace(cfg, consumers=3)
        # 8-bit in and out: three warpgroups on K steps of two swizzle rows (half the barrier round trips and
        # twice the `wgmma`s in flight a step), where three stages of them fit
        wide = dataclasses.replace(cfg, consumers=3, tile_k=2 * tile_k, max_concurrent_steps=3)
        if in_bytes == out_bytes == 1 and not k % wide.tile_k and smem_bytes(wide, 1) <= smem:
            cfg = wide
    cfg = fit_shared_memory(cfg, out_bytes, in_bytes, smem)
    if problem.partial_sums:
        split = _split_k(cfg, m, n, k, sms)
        if split.splits > 1:
            cfg = fit_shared_memory(split, 4, in_bytes, smem)  # float32 partial products
    float_gemm = jnp.issubdtype(in_dtype, jnp.floating) and in_bytes == 2
    return TileChoice(cfg, xla_faster=float_gemm and padded_tiles(cfg, problem.m, n) * cfg.splits < sms // 4)


def _few_rows_cost(cfg: GemmConfig, m: int, n: int, sms: int) -> int:
    """Where a GEMM streams its weight: tile rounds per SM times the rows of A and B a tile reads."""
    cm, cn = cfg.cta_tile
    return -(-num_tiles(cfg, m, n) // sms) * (cm + cn)


def _split_k(cfg: GemmConfig, m: int, n: int, k: int, sms: int) -> GemmConfig:
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
