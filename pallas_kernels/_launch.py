"""Kernel launches traced and lowered once per executable, however many layers call them.

An encoder calls the same kernels at the same shapes in every layer. A Pallas
launch lowers to its custom call in Python, and lowered once per layer that is
most of a `full_int8` BERT-base compile on the H100 (jax's compile-time events,
bench/RESULTS.md). `launch` runs each kernel inside a nested `jax.jit` keyed by
its static configuration: jax traces it once per shape and configuration and
lowers it once per module (`cached_primitive_lowerings`), and every layer calls
that one function.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
from jax.typing import ArrayLike


class StaticPartial:
    """`functools.partial` that hashes and compares by its function and keyword values (a jit static argument).

    Every bound value must be hashable: shapes, dtypes, strings, numbers, frozen configs, other StaticPartials.
    """

    __slots__ = ("fn", "kwargs", "_key", "__weakref__")  # jax 0.11's Pallas tracing weak-references the kernel

    def __init__(self, fn: Callable[..., Any], /, **kwargs: Any):
        self.fn, self.kwargs = fn, kwargs
        self._key = (fn, tuple(sorted(kwargs.items())))
        hash(self._key)  # fail here, naming nothing unhashable later inside jit

    @property
    def __name__(self) -> str:  # Pallas names kernels and their debug info after the function
        return getattr(self.fn, "__name__", type(self.fn).__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **self.kwargs, **kwargs)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StaticPartial) and self._key == other._key

    def __repr__(self) -> str:
        kw = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"StaticPartial({self.__name__}, {kw})"


@functools.partial(jax.jit, static_argnums=0)
def _launch(launcher: StaticPartial, *arrays: ArrayLike) -> Any:
    return launcher(*arrays)


def launch(launcher: StaticPartial, *arrays: ArrayLike) -> Any:
    """`launcher(*arrays)`, traced and lowered once for each distinct (launcher, argument shapes and dtypes)."""
    if not isinstance(launcher, StaticPartial):
        raise TypeError(f"launch: launcher is a {type(launcher).__name__}, expected a StaticPartial")
    return _launch(launcher, *arrays)
