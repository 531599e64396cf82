"""The compiled forward passes the engine runs, one per (model, output kind, rows, sequence bucket).

The engine keeps its own references, so the model's bounded executable cache never evicts a shape the
engine serves. `pooled` (pooled hidden states before normalization, for `normalize=False`) is the
model's `hidden` executable followed by a small jitted pooling on the device (`samp_jax.pooling.pool` in the
model's mode): the `embed` executable's arithmetic without its last division.

A model spread over several devices (`SampModel(..., devices=n)`) runs `[rows, seq]` batches in its
executable for `rows` rounded up to a multiple of n (each device takes an equal block of rows; the
extra rows are masked padding, and answers read only their own rows).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from samp_jax.model import SampModel
from samp_jax.packing import max_per_row, slot_pool
from samp_jax.pooling import pool as pool_hidden
from samp_jax.serving.jobs import POOLED

Forward = Callable[[Any, Any, Any], jax.Array]


class _Pooled:
    """The hidden-state executable, then the compiled pooling, both dispatched asynchronously."""

    def __init__(self, hidden: Forward, pool: Callable[[jax.Array, Any], jax.Array]):
        self.hidden, self.pool = hidden, pool

    def __call__(self, ids: Any, mask: Any, types: Any) -> jax.Array:
        return self.pool(self.hidden(ids, mask, types), mask)


class _PaddedRows:
    """A forward compiled for `rows` rows, called with fewer: masked padding rows are appended."""

    def __init__(self, forward: Forward, rows: int, pad_id: int):
        self.forward, self.rows, self.pad_id = forward, rows, pad_id

    def __call__(self, ids: Any, mask: Any, types: Any) -> jax.Array:
        pad = ((0, self.rows - np.shape(ids)[0]), (0, 0))
        return self.forward(np.pad(ids, pad, constant_values=self.pad_id), np.pad(mask, pad), np.pad(types, pad))


class Forwards:
    """Compiled forwards by `(model name, kind, rows, seq, packed)`, compiled on first use or ahead of time.

    A packed forward (`samp_jax.packing`) takes `(ids, segment ids, types)` of packed rows; its sequence outputs
    are per slot, `[rows, K, ...]`."""

    def __init__(self, models: Mapping[str, SampModel]):
        self.models = dict(models)
        self._forwards: dict[tuple[str, str, int, int, bool], Forward] = {}

    def __len__(self) -> int:
        return len(self._forwards)

    def get(self, model: str, kind: str, rows: int, seq: int, packed: bool = False) -> Forward:
        """The forward for `[rows, seq]` inputs; compiled now if it was not (a request that needs a shape
        start-up skipped waits for that compile)."""
        key = (model, kind, rows, seq, packed)
        forward = self._forwards.get(key)
        if forward is None:
            forward = self._forwards[key] = self._build(*key)
        return forward

    def compile(self, model: str, kind: str, shapes: Iterable[tuple[int, int]], *, workers: int | None = None,
                packed: bool = False) -> None:
        """Compiles `kind` at each `(rows, seq)`, several at once (XLA compiles outside the GIL)."""
        shapes = list(shapes)
        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max(1, min(workers, len(shapes)))) as pool:
            for _ in pool.map(lambda shape: self.get(model, kind, shape[0], shape[1], packed=packed), shapes):
                pass

    def _build(self, model: str, kind: str, rows: int, seq: int, packed: bool) -> Forward:
        m = self.models[model]
        full = rows if m.parallel is None else m.parallel.rows(rows)
        forward: Forward
        if kind != POOLED:
            forward = m.compiled(kind, full, seq, packed=packed)
        else:
            hidden = m.compiled("hidden", full, seq, packed=packed)
            split = {} if m.parallel is None else {"sharding": m.parallel.split}  # where the hidden states are
            mode = m.pooling.mode
            pooling = (functools.partial(slot_pool, per_row=max_per_row(seq), mode=mode) if packed
                       else functools.partial(pool_hidden, mode=mode))
            pool = jax.jit(pooling).lower(
                jax.ShapeDtypeStruct((full, seq, m.config.hidden_size), jnp.float32, **split),
                jax.ShapeDtypeStruct((full, seq), jnp.int32, **split)).compile()
            forward = _Pooled(hidden, pool)
        return forward if full == rows else _PaddedRows(forward, full, m.config.pad_token_id)
