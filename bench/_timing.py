"""Timing and record helpers shared by the GPU benchmarks (bench/kernels.py, bench/latency.py).

JAX work is timed by CUPTI device time (jax's Mosaic GPU profiler: the sum of
the kernels one call launches, no host dispatch), PyTorch work by CUDA events;
both as the median of many runs after warm-up. On a CPU (smoke runs) a host
clock around `block_until_ready` stands in.
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

import jax


def device_name() -> str:
    dev = jax.devices()[0]
    return f"{dev.device_kind} ({dev.platform}), jax {jax.__version__}"


def commit() -> str:
    if os.environ.get("SAMP_COMMIT"):
        return os.environ["SAMP_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def today() -> str:
    return datetime.date.today().isoformat()


def time_jax(fn, *args, iterations: int = 30) -> float:
    """Median milliseconds of `fn(*args)` (a jitted function), device time on a GPU."""
    out = fn(*args)
    jax.block_until_ready(out)
    if jax.devices()[0].platform == "gpu":
        from jax.experimental.mosaic.gpu import profiler

        _, times = profiler.measure(fn, iterations=iterations)(*args)
        return float(statistics.median(times))
    times = []
    for _ in range(max(3, iterations // 5)):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(times))


def time_torch(fn, iterations: int = 50, warmup: int = 5) -> float:
    """Median milliseconds of `fn()` on the current CUDA stream, by CUDA events."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iterations):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return float(statistics.median(times))


def write_records(records: list[dict], path: Path) -> None:
    """The records as indented JSON, written atomically (a reader never sees half a file)."""
    from samp_jax.fileio import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(records, indent=1) + "\n")


def wall_ms(fn, iterations: int = 30) -> float:
    """Median ms of one `fn()` and its `block_until_ready`, host clock: launch gaps count, as in serving."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(times))


def pipelined_ms(fn, calls: int = 20, repeats: int = 5) -> float:
    """Milliseconds per call with `calls` calls queued back to back, as a server streams batches: the host's
    launch and synchronization latency overlaps the device work, which `wall_ms` exposes once per call."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready([fn() for _ in range(calls)])
        times.append((time.perf_counter() - t0) * 1e3 / calls)
    return float(statistics.median(times))
