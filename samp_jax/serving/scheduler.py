"""Batch formation: pending sequences grouped by length, batches cut by a token budget and a maximum wait.

`BatchQueue` is plain data with no lock: the engine's scheduler thread is its one owner (commands reach that
thread over a channel), as text-embeddings-inference keeps its queue in one task.

The rules:
- Sequences wait in groups keyed by (model, output kind, sequence bucket), in arrival order. A batch takes
  one group's sequences (so padding stays within the bucket) and pads them to `[rows, seq]`, `rows` a power
  of two: the compiled shapes. Its padded tokens `rows * seq` never exceed `max_batch_tokens`.
- A group is ready when it fills a batch, when its oldest sequence has waited `max_wait`, or at once when
  the device is idle (nothing to wait behind) or the engine drains. Among ready groups the one whose oldest
  sequence arrived first goes: a full group can overtake older sequences only while they are younger than
  `max_wait`, so the age of a sequence caps how far it is reordered and nothing starves.
- Rows the power-of-two padding leaves empty take the oldest sequences of shorter buckets of the same model
  and kind: they ride in padding that runs anyway.
- A packed model's (`samp_jax.packing`) groups are keyed by row width instead (every sequence of up to 128
  tokens in the 128-wide group): a batch takes the group's sequences in arrival order while their tokens fit
  `max rows x width`, laid end to end in rows (`packed_row_buckets`); it is full once its sequences hold
  `PACKED_FULL` of that.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from samp_jax.packing import place

GroupKey = tuple[str, str, int]  # (model name, output kind, sequence bucket or packed row width)
PACKED_FULL = 0.9  # a packed group is full at this share of its largest batch's tokens (rows end in gaps)
PACKED_ROW_STEP = 16  # packed row counts: powers of two up to this, then its multiples


@dataclasses.dataclass(eq=False)
class Entry:
    """One sequence waiting to run: its token ids and types (int32), its bucket and arrival time, and the
    request and position its output row goes back to."""

    request: Any
    index: int
    ids: np.ndarray
    types: np.ndarray
    model: str
    kind: str
    seq: int
    arrived: float
    encoding: Any = None  # kept for NER decoding only

    @property
    def length(self) -> int:
        return len(self.ids)


@dataclasses.dataclass(eq=False)
class Batch:
    """Sequences of one model and kind, padded together to `[rows, seq]` (`packed`: laid end to end in `rows`
    rows of `seq` tokens)."""

    model: str
    kind: str
    rows: int
    seq: int
    entries: list[Entry]
    packed: bool = False

    @property
    def padded_tokens(self) -> int:
        return self.rows * self.seq

    @property
    def real_tokens(self) -> int:
        return sum(e.length for e in self.entries)


def row_buckets(max_batch_tokens: int, seq: int, max_batch_requests: int | None = None) -> tuple[int, ...]:
    """The batch sizes compiled for sequence bucket `seq`: powers of two with `rows * seq <= max_batch_tokens`
    (and `rows <= max_batch_requests` when set)."""
    if seq > max_batch_tokens:
        raise ValueError(f"sequence bucket {seq} exceeds max_batch_tokens={max_batch_tokens}: "
                         "raise max_batch_tokens or lower max_input_length")
    cap = max_batch_tokens // seq
    if max_batch_requests is not None:
        cap = min(cap, max_batch_requests)
    rows, out = 1, []
    while rows <= cap:
        out.append(rows)
        rows *= 2
    return tuple(out)


def packed_row_buckets(max_batch_tokens: int, width: int) -> tuple[int, ...]:
    """The row counts compiled for packed rows of `width`: powers of two up to `PACKED_ROW_STEP`, then its
    multiples, with `rows * width <= max_batch_tokens`."""
    cap = max_batch_tokens // width
    if cap < 1:
        raise ValueError(f"packed rows of {width} exceed max_batch_tokens={max_batch_tokens}: "
                         "raise max_batch_tokens or lower max_input_length")
    out = [r for r in (1, 2, 4, 8) if r < PACKED_ROW_STEP and r <= cap]
    out += list(range(PACKED_ROW_STEP, cap + 1, PACKED_ROW_STEP))
    return tuple(out)


class BatchQueue:
    """Pending sequences and the choice of the next batch. One owner; no locking.

    `packed`: the models whose batches are packed (their entries' `seq` is the row width)."""

    def __init__(self, max_batch_tokens: int, max_wait: float, max_batch_requests: int | None = None,
                 packed: frozenset[str] = frozenset()):
        if max_batch_tokens <= 0:
            raise ValueError(f"max_batch_tokens={max_batch_tokens} must be positive")
        if max_wait < 0:
            raise ValueError(f"max_wait={max_wait} must be >= 0 seconds")
        self.max_batch_tokens = max_batch_tokens
        self.max_wait = max_wait
        self.max_batch_requests = max_batch_requests
        self.packed = packed
        self._packed_rows: dict[int, tuple[int, ...]] = {}
        self._groups: dict[GroupKey, deque[Entry]] = {}
        self._rows: dict[int, tuple[int, ...]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def buckets(self, seq: int) -> tuple[int, ...]:
        rows = self._rows.get(seq)
        if rows is None:
            rows = self._rows[seq] = row_buckets(self.max_batch_tokens, seq, self.max_batch_requests)
        return rows

    def packed_buckets(self, width: int) -> tuple[int, ...]:
        rows = self._packed_rows.get(width)
        if rows is None:
            rows = self._packed_rows[width] = packed_row_buckets(self.max_batch_tokens, width)
        return rows

    def _full(self, key: GroupKey, group: deque[Entry]) -> bool:
        if key[0] in self.packed:
            return sum(e.length for e in group) >= PACKED_FULL * self.packed_buckets(key[2])[-1] * key[2]
        return len(group) >= self.buckets(key[2])[-1]

    def push(self, entries: list[Entry]) -> None:
        for e in entries:
            # refuses a bucket over the budget before it waits
            self.packed_buckets(e.seq) if e.model in self.packed else self.buckets(e.seq)
            self._groups.setdefault((e.model, e.kind, e.seq), deque()).append(e)
        self._size += len(entries)

    def discard(self, request: Any) -> int:
        """Drops every waiting sequence of `request` (cancelled, expired); returns how many."""
        dropped = 0
        for key in list(self._groups):
            group = self._groups[key]
            kept = deque(e for e in group if e.request is not request)
            dropped += len(group) - len(kept)
            if kept:
                self._groups[key] = kept
            else:
                del self._groups[key]
        self._size -= dropped
        return dropped

    def wakeup(self, now: float) -> float | None:
        """Seconds until the oldest waiting sequence reaches `max_wait` (0 if one has), None if none waits."""
        if not self._groups:
            return None
        oldest = min(g[0].arrived for g in self._groups.values())
        return max(0.0, oldest + self.max_wait - now)

    def next_batch(self, now: float, *, idle: bool, flush: bool = False) -> Batch | None:
        """The batch to run now, taken out of the queue, or None if no group is ready.

        idle: nothing runs on the device, so waiting for company would only waste it.
        flush: the engine is draining; every group is ready.
        """
        best: GroupKey | None = None
        for key, group in self._groups.items():
            ready = flush or idle or self._full(key, group) or now - group[0].arrived >= self.max_wait
            if ready and (best is None or group[0].arrived < self._groups[best][0].arrived):
                best = key
        if best is None:
            return None
        model, kind, seq = best
        if model in self.packed:
            return self._packed_batch(best)
        buckets = self.buckets(seq)
        taken = self._take(best, buckets[-1])
        rows = next(b for b in buckets if b >= len(taken))
        if len(taken) < rows:  # fill the padding rows with shorter sequences of the same model and kind
            shorter = sorted((k for k in self._groups if k[:2] == (model, kind) and k[2] < seq),
                             key=lambda k: self._groups[k][0].arrived)
            for key in shorter:
                taken += self._take(key, rows - len(taken))
                if len(taken) == rows:
                    break
        return Batch(model, kind, rows, seq, taken)

    def pop_all(self) -> list[Entry]:
        """Takes every waiting sequence out (the engine stopping without a drain fails their requests)."""
        out = [e for group in self._groups.values() for e in group]
        self._groups.clear()
        self._size = 0
        return out

    def _packed_batch(self, key: GroupKey) -> Batch:
        """The group's oldest sequences that fit its largest packed batch, in as few rows as `place` lays them."""
        model, kind, width = key
        buckets = self.packed_buckets(width)
        group, tokens, n = self._groups[key], 0, 0
        capacity = buckets[-1] * width
        limit = len(group) if self.max_batch_requests is None else min(len(group), self.max_batch_requests)
        while n < limit and tokens + group[n].length <= capacity:
            tokens += group[n].length
            n += 1
        lengths = [e.length for e in itertools.islice(group, max(n, 1))]
        while (need := place(lengths, width).rows) > buckets[-1] and len(lengths) > 1:
            lengths.pop()  # rows end in gaps: give back the newest until the rest fit
        taken = self._take(key, len(lengths))
        return Batch(model, kind, packed_rows(buckets, need), width, taken, packed=True)

    def _take(self, key: GroupKey, n: int) -> list[Entry]:
        group = self._groups[key]
        out = [group.popleft() for _ in range(min(n, len(group)))]
        if not group:
            del self._groups[key]
        self._size -= len(out)
        return out


def pad(entries: Sequence[Entry], rows: int, seq: int, pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`[rows, seq]` int32 ids, mask and token types of `entries`, laid out as `TokenizerFrontEnd.pad` lays
    them (ids padded with `pad_id`, mask and types 0 past each sequence; rows past the entries all padding)."""
    ids = np.full((rows, seq), pad_id, np.int32)
    mask = np.zeros((rows, seq), np.int32)
    types = np.zeros((rows, seq), np.int32)
    lengths = np.fromiter((e.length for e in entries), np.int64, len(entries))
    r = np.repeat(np.arange(len(entries)), lengths)
    c = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    ids[r, c] = np.concatenate([e.ids for e in entries])
    mask[r, c] = 1
    types[r, c] = np.concatenate([e.types for e in entries])
    return ids, mask, types


def packed_rows(buckets: Sequence[int], rows: int) -> int:
    """The smallest of the packed row `buckets` that holds `rows` rows."""
    return next(b for b in buckets if b >= rows)
