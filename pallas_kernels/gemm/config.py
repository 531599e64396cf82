"""The Mosaic GEMM's configuration: tiles, schedule, pipeline depth, K splits, and the shared memory they take.

Pure Python (no Mosaic GPU import), so tile choice and `supports` predicates run anywhere.
"""

from __future__ import annotations

import dataclasses

SCHEDULES = ("cooperative", "pingpong")


@dataclasses.dataclass(frozen=True)
class GemmConfig:
    """Tiles and schedule of the Mosaic GEMM.

    `tile_m x tile_n` is one compute warpgroup's tile. "cooperative": two warpgroups split the CTA tile along
    `wg_axis`. "pingpong": the CTA tile is the warpgroup tile, and `consumers` (2 or 3) warpgroups take
    turns at the tensor cores. Either way `max_concurrent_steps` shared-memory slots of A and B tiles feed
    the main loops. `splits` > 1 (ping-pong only) splits K over that many tiles per output tile, each
    writing its partial product.
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
    splits: int = 1
    consumers: int = 2

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"GemmConfig: schedule={self.schedule!r} is not one of {SCHEDULES}")
        if self.splits < 1 or (self.splits > 1 and self.schedule != "pingpong"):
            raise ValueError(f"GemmConfig: splits={self.splits} must be 1, or more with the ping-pong schedule")
        if self.consumers not in (2, 3) or (self.consumers != 2 and self.schedule != "pingpong"):
            raise ValueError(f"GemmConfig: consumers={self.consumers} must be 2, or 3 with the ping-pong schedule")
        if self.wg_axis not in ("m", "n") or self.grid_minor not in ("m", "n"):
            raise ValueError(f"GemmConfig: wg_axis={self.wg_axis!r} and grid_minor={self.grid_minor!r} "
                             "must be 'm' or 'n'")

    @property
    def cta_tile(self) -> tuple[int, int]:
        """The output tile one CTA (one SM's turn) computes."""
        if self.schedule == "pingpong":
            return self.tile_m, self.tile_n
        return (self.tile_m * (2 if self.wg_axis == "m" else 1), self.tile_n * (2 if self.wg_axis == "n" else 1))


def out_slots(tile_m: int, tile_n: int, epi_m: int, epi_n: int) -> int:
    """Epilogue staging buffers per warpgroup: two, unless the tile is a single epilogue piece."""
    return min(2, (tile_m * tile_n) // (epi_m * epi_n))


def smem_bytes(cfg: GemmConfig, out_itemsize: int, in_itemsize: int = 1) -> int:
    """Shared memory the kernel allocates: pipeline slots, epilogue tiles, the per-column vectors (an estimate
    within 1 KiB above what Mosaic GPU allocates)."""
    cm, cn = cfg.cta_tile
    pipeline = cfg.max_concurrent_steps * (cm + cn) * cfg.tile_k * in_itemsize
    wgs = cfg.consumers
    epi = wgs * out_slots(cfg.tile_m, cfg.tile_n, cfg.epi_tile_m, cfg.epi_tile_n) * cfg.epi_tile_m * cfg.epi_tile_n
    return pipeline + epi * out_itemsize + wgs * 2 * 3 * cfg.tile_n * 4 + 1024


def check_shared_memory(cfg: GemmConfig, out_itemsize: int, in_itemsize: int, smem_per_block: int) -> None:
    """A `ValueError` naming `cfg` where its buffers exceed a block's shared memory, before Mosaic GPU fails on it
    while compiling."""
    need = smem_bytes(cfg, out_itemsize, in_itemsize)
    if need > smem_per_block:
        raise ValueError(f"mosaic GEMM: {cfg} needs about {need} bytes of shared memory with {out_itemsize}-byte "
                         f"outputs and {in_itemsize}-byte inputs, more than a block's {smem_per_block}; take fewer "
                         "max_concurrent_steps, consumers or a smaller tile_k")


def fit_shared_memory(cfg: GemmConfig, out_itemsize: int, in_itemsize: int, smem_per_block: int) -> GemmConfig:
    """`cfg` with its pipeline cut to as many stages (at least 2) as fit in shared memory; a `ValueError`
    where two do not (`check_shared_memory`)."""
    while smem_bytes(cfg, out_itemsize, in_itemsize) > smem_per_block and cfg.max_concurrent_steps > 2:
        cfg = dataclasses.replace(cfg, max_concurrent_steps=cfg.max_concurrent_steps - 1)
    check_shared_memory(cfg, out_itemsize, in_itemsize, smem_per_block)
    return cfg


def num_tiles(cfg: GemmConfig, m: int, n: int) -> int:
    """Output tiles of an `m x n` result (`m` a multiple of the CTA tile's rows)."""
    cm, cn = cfg.cta_tile
    return (m // cm) * (n // cn)


def round_up(x: int, to: int) -> int:
    return -(-x // to) * to


def padded_tiles(cfg: GemmConfig, m: int, n: int) -> int:
    """Output tiles of an `m x n` result once its rows are padded to the CTA tile."""
    return num_tiles(cfg, round_up(m, cfg.cta_tile[0]), n)


def divides(cfg: GemmConfig, n: int, k: int) -> bool:
    """Whether `cfg`'s CTA tile divides N and its K steps (times the splits) divide K; rows are padded."""
    cn = cfg.cta_tile[1]
    return cn <= n and not n % cn and not k % (cfg.tile_k * cfg.splits)
