"""`StaticPartial`: a jit static argument that stands for a kernel and its configuration."""

from __future__ import annotations

import weakref

import jax.numpy as jnp
import pytest

from pallas_kernels._launch import StaticPartial, launch


def _scaled(x, *, factor):
    return x * factor


def test_equal_configurations_are_one_key_and_calls_bind_them():
    a, b, c = StaticPartial(_scaled, factor=2), StaticPartial(_scaled, factor=2), StaticPartial(_scaled, factor=3)
    assert a == b and hash(a) == hash(b) and a != c
    assert a.__name__ == "_scaled"
    assert float(launch(c, jnp.float32(2.0))) == 6.0
    weakref.ref(a)  # jax 0.11's Pallas tracing weak-references the kernel function


def test_unhashable_configuration_fails_at_construction():
    with pytest.raises(TypeError):
        StaticPartial(_scaled, factor=[2])
    with pytest.raises(TypeError, match="StaticPartial"):
        launch(_scaled, jnp.float32(1.0))
