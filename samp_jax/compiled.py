"""`CompiledForward`: a plan's forward pass compiled for one output kind and shape, with its parameters.

What benchmarks, the tuner and profilers run: `forward(ids, mask, types)` is one call of
the executable on the parameters it was built for; `executable` and `args(...)` hand the
raw executable and its argument tuple to tools that take them (e.g. jax's Mosaic GPU
profiler, `profiler.measure(forward.executable)(*forward.args(ids, mask, types))`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

OUTPUT_KINDS = ("head", "hidden", "embed")  # the task head's output, the last hidden state, pooled embeddings


@dataclasses.dataclass(frozen=True, eq=False)
class CompiledForward:
    """One compiled forward pass and the parameters it runs on.

    Attributes:
      kind: "head" (the head's float32 output), "hidden" (the last hidden state) or "embed".
      shape: the `(batch, seq)` of the ids it takes.
      executable: `executable(params, ids, mask, types)`; a `jax.stages.Compiled` for a served
        model, a function of separately compiled pieces for `LayerwiseModel`.
      params: the plan's built parameter tree.
    """

    kind: str
    shape: tuple[int, int]
    executable: Callable[..., jax.Array]
    params: Any

    def __call__(self, input_ids, attention_mask, token_type_ids) -> jax.Array:
        """Runs it on `[batch, seq]` int32 ids, mask and token types of exactly `shape` (no checks, no padding)."""
        return self.executable(self.params, input_ids, attention_mask, token_type_ids)

    def args(self, input_ids, attention_mask, token_type_ids) -> tuple:
        """The executable's arguments for these inputs: `(params, ids, mask, types)`."""
        return (self.params, input_ids, attention_mask, token_type_ids)
