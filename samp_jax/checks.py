"""Checks of single config values shared by the families' settings: each names the key and the value."""

from __future__ import annotations

from typing import Any

from pallas_kernels import ACTIVATIONS


def flag(name: str, value: Any) -> bool:
    """`value` if it is a bool; else ValueError naming `name` and the value."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} must be true or false")
    return value


def activation(name: str, value: Any) -> str:
    """`value` if it names an activation the kernels have; else ValueError naming `name`, the value and the known ones."""
    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise ValueError(f"unsupported {name}={value!r}; known: {sorted(ACTIVATIONS)}")
    return value
