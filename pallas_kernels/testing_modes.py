"""How op tests run their kernels: interpreted on a CPU (CI), compiled on a GPU (marked `gpu`, skipped elsewhere)."""

from __future__ import annotations

import pytest

from pallas_kernels._platform import interpret_kernels, on_gpu, on_hopper

_WHERE = "run through the device tool, see bench/RESULTS.md"


def needs_hopper() -> list:
    """Marks for tests of compiled Mosaic GPU kernels."""
    return [pytest.mark.gpu, pytest.mark.skipif(not on_hopper(), reason=f"needs an sm_90 GPU (H100/H200); {_WHERE}")]


def needs_gpu() -> list:
    """Marks for tests of compiled Triton kernels."""
    return [pytest.mark.gpu, pytest.mark.skipif(not on_gpu(), reason=f"needs an NVIDIA GPU; {_WHERE}")]


class Interpreted:
    """Mixin for an op's test class: its kernels run in Pallas interpret mode."""

    @pytest.fixture(autouse=True)
    def _interpret_kernels(self):
        with interpret_kernels():
            yield
