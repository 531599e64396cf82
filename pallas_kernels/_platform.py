"""What the default device can run, and the properties kernels choose their tiles by.

Kernels raise NotImplementedError where they cannot run, so dispatch falls back to XLA.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import jax


def default_device() -> Any:
    """The device computations go to: `jax.default_device(...)` where one is set, else the first device.

    Kernels are chosen at trace time for this device, so that a CPU computation on
    a GPU host (`with jax.default_device(cpu):`) gets the CPU path, not a GPU kernel.
    """
    dev = jax.config.jax_default_device  # type: ignore[attr-defined]  # a flag jax defines at run time
    if dev is None:
        return jax.devices()[0]
    return jax.devices(dev)[0] if isinstance(dev, str) else dev


def on_gpu() -> bool:
    return default_device().platform == "gpu"


def on_hopper() -> bool:
    """True on an sm_90 GPU (H100/H200): Mosaic GPU's `wgmma` kernels need it."""
    dev = default_device()
    return dev.platform == "gpu" and str(getattr(dev, "compute_capability", "")).startswith("9.0")


@dataclasses.dataclass(frozen=True)
class DeviceProperties:
    """What a kernel's tile choice reads from the device.

    Attributes:
      sm_count: streaming multiprocessors (a persistent kernel launches one program per SM).
      smem_per_block: bytes of shared memory one block may allocate (the opt-in limit).
      hopper: whether Mosaic GPU's `wgmma` kernels compile here (sm_90).
    """

    sm_count: int
    smem_per_block: int
    hopper: bool = False


# The H100 SXM's properties: 132 SMs, 227 KiB of shared memory a block may opt in to (CUDA's
# cudaDevAttrMaxSharedMemoryPerBlockOptin, what Mosaic GPU checks kernels against).
H100 = DeviceProperties(sm_count=132, smem_per_block=232448, hopper=True)


def device_properties() -> DeviceProperties:
    """The default device's properties, read from it.

    Off a GPU (the CPU, where kernels run in the interpreter) the SM count and shared memory are the
    H100's, so that interpreted kernels make the tile choice the H100 makes; `hopper` stays False there.
    A GPU that does not report a property takes the H100's value for it.
    """
    dev = default_device()
    if dev.platform != "gpu":
        return dataclasses.replace(H100, hopper=False)
    return DeviceProperties(
        sm_count=getattr(dev, "core_count", None) or H100.sm_count,
        smem_per_block=getattr(dev, "shared_memory_per_block_optin", None) or H100.smem_per_block,
        hopper=on_hopper(),
    )


def num_sms(default: int = 4) -> int:
    """Streaming multiprocessors of the default device (`default` off a GPU); `device_properties().sm_count`
    gives the H100's count off a GPU instead."""
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
