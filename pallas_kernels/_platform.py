"""What the default device can run: kernels raise NotImplementedError elsewhere, so dispatch falls back."""

from __future__ import annotations

import contextlib

import jax


def on_gpu() -> bool:
    return jax.devices()[0].platform == "gpu"


def on_hopper() -> bool:
    """True on an sm_90 GPU (H100/H200): Mosaic GPU's `wgmma` kernels need it."""
    dev = jax.devices()[0]
    return dev.platform == "gpu" and str(getattr(dev, "compute_capability", "")).startswith("9.0")


def num_sms(default: int = 4) -> int:
    """Streaming multiprocessors of the default device (`default` for the CPU interpreter)."""
    dev = jax.devices()[0]
    if dev.platform != "gpu":
        return default
    return getattr(dev, "core_count", None) or default


_INTERPRET = [False]


@contextlib.contextmanager
def interpret_kernels():
    """Within this block the Pallas kernels run in interpret mode (on a CPU): how CI tests them."""
    _INTERPRET.append(True)
    try:
        yield
    finally:
        _INTERPRET.pop()


def interpreting() -> bool:
    return _INTERPRET[-1]
