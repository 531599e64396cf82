"""`mosaic.supports`: whether the Mosaic 8-bit GEMM takes an input here, on `jax.ShapeDtypeStruct` inputs."""

from __future__ import annotations

import dataclasses
from typing import cast

import jax
import jax.numpy as jnp

from pallas_kernels._platform import H100
from pallas_kernels.quantized_matmul.base import PackedWeight
from pallas_kernels.quantized_matmul.mosaic import supports


def _packed(k: int, n: int, requantize: bool) -> PackedWeight:
    """A packed int8 weight's shapes and dtypes, no values."""
    codes, vectors = jax.ShapeDtypeStruct((n, k), jnp.int8), jax.ShapeDtypeStruct((3, n), jnp.float32)
    return PackedWeight(cast(jax.Array, codes), cast(jax.Array, vectors), "int8", requantize=requantize)


def test_declines_what_it_cannot_run():
    x = jax.ShapeDtypeStruct((40, 768), jnp.int8)
    assert supports(x, _packed(768, 3072, True), activation="gelu", device=H100, interpret=False)
    assert not supports(x, _packed(768, 3072, True), activation="relu", device=H100, interpret=False)
    assert not supports(jax.ShapeDtypeStruct((40, 100), jnp.int8), _packed(100, 64, False), device=H100,
                        interpret=False)
    off_hopper = dataclasses.replace(H100, hopper=False)
    assert not supports(x, _packed(768, 768, False), device=off_hopper, interpret=False)
    assert supports(x, _packed(768, 768, False), device=off_hopper, interpret=True)
    # 8-bit GEMMs keep the kernel however few their tiles: XLA would run the epilogue as separate kernels
    assert supports(jax.ShapeDtypeStruct((64, 3072), jnp.int8), _packed(3072, 768, False), device=H100,
                    interpret=False)
