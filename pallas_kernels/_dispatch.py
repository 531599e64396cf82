"""`implementation=` dispatch shared by every op.

Each op keeps a registry `{name: callable}` filled by guarded imports of its
kernels. `implementation=None` tries the registered kernels fastest first and
falls back to the XLA reference; a kernel that cannot take an input raises
`NotImplementedError` and the next one is tried. Naming an implementation runs
that one or fails loudly: a caller who asked for a kernel must not silently get
another.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

Implementation = Literal["xla", "triton", "mosaic"]
# Preference order when the caller does not choose: hand-written kernels first.
IMPLEMENTATIONS: tuple[str, ...] = ("mosaic", "triton", "xla")


class _XlaOnly(threading.local):
    """Per thread, so that models traced at once in two threads keep their own kernel choice."""

    stack: list[bool]

    def __init__(self) -> None:
        self.stack = [False]


_XLA_ONLY = _XlaOnly()


@contextlib.contextmanager
def xla_only(enabled: bool = True) -> Iterator[None]:
    """Ops traced inside run their XLA reference unless a call names an implementation:
    the plain-XLA encoder, for comparisons and as a fallback."""
    _XLA_ONLY.stack.append(enabled)
    try:
        yield
    finally:
        _XLA_ONLY.stack.pop()


def dispatch(
    op_name: str,
    registry: Mapping[str, Callable[..., Any]],
    implementation: str | None,
    *args: Any,
    **kwargs: Any,
) -> Any:
    """Runs `op_name` through the chosen implementation (or the best available)."""
    if implementation is not None:
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"{op_name}: unknown {implementation=}; choose one of {IMPLEMENTATIONS} or None"
            )
        if implementation not in registry:
            raise NotImplementedError(
                f"{op_name}: no {implementation!r} kernel is available here "
                f"(registered: {sorted(registry)})"
            )
        return registry[implementation](*args, **kwargs)

    if _XLA_ONLY.stack[-1]:
        return registry["xla"](*args, **kwargs)
    errors = []
    for name in IMPLEMENTATIONS:
        fn = registry.get(name)
        if fn is None:
            continue
        try:
            return fn(*args, **kwargs)
        except NotImplementedError as e:  # this kernel cannot take the input: fall back
            errors.append(f"{name}: {e}")
    raise NotImplementedError(f"{op_name}: no implementation accepted the input: {errors}")


def one_partial(reference: Callable[..., Any]) -> Callable[..., Any]:
    """A reference GEMM as the `partial_sums=True` form of its op: its whole product as the one partial, `[1, ..., N]`."""

    def partials(*args: Any, **kwargs: Any) -> Any:
        return reference(*args, **kwargs)[None]

    return partials
