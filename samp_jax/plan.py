"""Precision plans: one mode per Transformer layer.

This version knows the floating-point modes; the quantized modes (`ffn_int8`,
`full_int8`, `ffn_fp8`, `full_fp8`) arrive with the quantization core and
slot into the same per-layer tuple.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax.numpy as jnp

FLOAT_MODES = {"fp32": jnp.float32, "fp16": jnp.float16, "bf16": jnp.bfloat16}
MODES = tuple(FLOAT_MODES)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Per-layer precision modes plus the embedding's output mode."""

    layers: tuple[str, ...]
    embedding: str

    def __post_init__(self) -> None:
        for i, mode in enumerate((*self.layers, self.embedding)):
            if mode not in FLOAT_MODES:
                where = f"layer {i}" if i < len(self.layers) else "embedding"
                raise ValueError(f"unknown precision mode {mode!r} for {where}; known: {MODES}")
        if len(set(self.layers) | {self.embedding}) > 1:
            raise ValueError(
                f"mixed floating-point plans are not supported yet: {self.to_string()!r}"
            )

    @classmethod
    def uniform(cls, mode: str, num_layers: int) -> "Plan":
        return cls(layers=(mode,) * num_layers, embedding=mode)

    @classmethod
    def parse(cls, plan: "str | Plan", num_layers: int) -> "Plan":
        """Accepts a Plan or a mode name applied to every layer ("fp32", "fp16", "bf16")."""
        if isinstance(plan, Plan):
            result = plan
        elif isinstance(plan, str):
            result = cls.uniform(plan.strip(), num_layers)
        else:
            raise ValueError(f"plan must be a Plan or a string, got {type(plan).__name__}: {plan!r}")
        result.validate(num_layers)
        return result

    def validate(self, num_layers: int) -> None:
        if len(self.layers) != num_layers:
            raise ValueError(f"plan has {len(self.layers)} layer modes, the model has {num_layers} layers")

    @property
    def compute_dtype(self):
        return FLOAT_MODES[self.embedding]

    def to_string(self) -> str:
        modes = set(self.layers)
        if len(modes) == 1 and self.embedding in modes:
            return self.embedding
        return ",".join(self.layers)

    @classmethod
    def from_modes(cls, modes: Sequence[str]) -> "Plan":
        return cls(layers=tuple(modes), embedding=modes[0])
