from __future__ import annotations

import jax.numpy as jnp
import pytest

from pallas_kernels import matmul
from pallas_kernels._dispatch import dispatch


def test_named_implementation_that_is_absent_fails_loudly():
    absent = r"matmul: no 'triton' kernel is available here \(registered: \['mosaic', 'xla'\]\)"
    with pytest.raises(NotImplementedError, match=absent):
        matmul(jnp.ones((2, 4)), jnp.ones((4, 3)), implementation="triton")
    with pytest.raises(ValueError, match="unknown implementation='cuda'"):
        matmul(jnp.ones((2, 4)), jnp.ones((4, 3)), implementation="cuda")


def test_none_prefers_kernels_and_falls_back_on_not_implemented():
    calls = []

    def mosaic(x):
        calls.append("mosaic")
        raise NotImplementedError("odd shape")

    def xla(x):
        calls.append("xla")
        return x + 1

    assert dispatch("op", {"xla": xla, "mosaic": mosaic}, None, 1) == 2
    assert calls == ["mosaic", "xla"]
    with pytest.raises(NotImplementedError, match="no implementation accepted the input"):
        dispatch("op", {"mosaic": mosaic}, None, 1)


def test_kernels_follow_jax_default_device(monkeypatch):
    """On a GPU host, `with jax.default_device(cpu)` must pick the CPU path (a GPU kernel cannot lower there), and
    the tile choice reads the GPU's properties, or the H100's off a GPU."""
    import jax

    from pallas_kernels import _platform

    class FakeHopper:
        platform, compute_capability, core_count, shared_memory_per_block_optin = "gpu", "9.0", 114, 232448

    cpu = jax.devices("cpu")[0]
    real_devices = jax.devices
    monkeypatch.setattr(jax, "devices", lambda backend=None: [FakeHopper()] if backend is None else real_devices(backend))
    assert _platform.on_gpu() and _platform.on_hopper()
    assert _platform.device_properties() == _platform.DeviceProperties(114, 232448, hopper=True)
    with jax.default_device(cpu):
        assert not _platform.on_gpu() and not _platform.on_hopper()
        props = _platform.device_properties()
        assert (props.sm_count, props.smem_per_block, props.hopper) == (132, 232448, False)  # the H100's, for tests
    with jax.default_device("cpu"):
        assert not _platform.on_gpu()
