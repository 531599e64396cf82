"""What the default device can run: kernels raise NotImplementedError elsewhere, so dispatch falls back."""

from __future__ import annotations

import contextlib

import jax


def default_device():
    """The device computations go to: `jax.default_device(...)` where one is set, else the first device.

    Kernels are chosen at trace time for this device, so that a CPU computation on
    a GPU host (`with jax.default_device(cpu):`) gets the CPU path, not a GPU kernel.
    """
    dev = jax.config.jax_default_device
    if dev is None:
        return jax.devices()[0]
    return jax.devices(dev)[0] if isinstance(dev, str) else dev


def on_gpu() -> bool:
    return default_device().platform == "gpu"


def on_hopper() -> bool:
    """True on an sm_90 GPU (H100/H200): Mosaic GPU's `wgmma` kernels need it."""
    dev = default_device()
    return dev.platform == "gpu" and str(getattr(dev, "compute_capability", "")).startswith("9.0")


def num_sms(default: int = 4) -> int:
    """Streaming multiprocessors of the default device (`default` for the CPU interpreter)."""
    dev = default_device()
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


def mosaic_interpret_params(interpret: bool) -> dict:
    """`plgpu.kernel` keyword arguments that run a Mosaic GPU kernel in the CPU interpreter when `interpret`."""
    if not interpret:
        return {}
    from jax._src.pallas.mosaic_gpu.interpret.params import InterpretGPUParams

    return {"interpret": InterpretGPUParams()}
