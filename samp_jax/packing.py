"""Packed batches: several sequences to a row, so GEMMs and LayerNorms run on real tokens, not padding.

A padded batch computes `B x bucket` tokens for however few are real (a fifth to two fifths of them on SST-2,
MRPC and CoNLL in arrival order: issue 27's table). A packed batch lays the sequences end to end in rows of
`width` tokens (first fit, longest first), each row's sequences numbered 1, 2, ... in `segment_ids` (0: the
row's padded tail). Inside the encoder:

- positions restart at each sequence (`segment_positions`), so BERT's absolute positions and MPNet's and
  RoBERTa's padding-offset ones are what each sequence would have alone; MPNet's relative buckets depend only
  on offsets within a sequence, so the row's `[W, W]` table serves every pair that attends;
- attention takes the segment ids as its key mask (`pallas_kernels.flash.reference.allowed_keys`): a token
  attends to its own sequence only, in the float and the 8-bit kernels alike;
- sequence outputs (heads, pooled embeddings) come per slot, `[R, K, ...]` for at most `max_per_row` = K
  sequences a row (`first_tokens`, `slot_pool`); token outputs stay `[R, W, ...]` and are cut per sequence
  on the host (`PackedBatch.tokens`).

Executables are keyed by `(rows, width)`, both bucketed, so packed batches reuse a few of them as padded ones do.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from samp_jax.bertlike import PADDING_OFFSET_POSITIONS
from samp_jax.config import EncoderConfig

MIN_WIDTH = 128  # narrower rows hold too few sequences to pack well
PACKABLE_TYPES = ("bert", "mpnet", "roberta", "xlm-roberta", "electra", "distilbert")
PACKABLE_POOLING = ("cls", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")


def unpackable(config: EncoderConfig, pooling_mode: str | None = None) -> str | None:
    """Why this model cannot run packed (None: it can). DeBERTa-v2's disentangled bias and ModernBERT's
    rotary/local attention read absolute row positions; max pooling would need a `[R, K, W, H]` mask."""
    if config.model_type not in PACKABLE_TYPES:
        return f"model_type={config.model_type!r} runs padded only (packed: {', '.join(PACKABLE_TYPES)})"
    if pooling_mode is not None and pooling_mode not in PACKABLE_POOLING:
        return f"pooling mode={pooling_mode!r} runs padded only (packed: {', '.join(PACKABLE_POOLING)})"
    return None


def max_per_row(width: int) -> int:
    """Sequences one row may hold: a BERT sequence is at least [CLS] [SEP], two tokens; a quarter of the width
    bounds the slot outputs while leaving room for rows of short texts."""
    return max(1, width // 4)


@dataclasses.dataclass(frozen=True)
class PackedBatch:
    """Sequences laid end to end in `[R, W]` rows.

    Attributes:
      input_ids, segment_ids, token_type_ids: `[R, W]` int32; segment ids 1..K per row, 0 on padding.
      row, slot, start, length: `[N]` int32, where each input sequence went (its segment id is `slot + 1`).
      max_per_row: K, the slot outputs' second axis.
    """

    input_ids: np.ndarray
    segment_ids: np.ndarray
    token_type_ids: np.ndarray
    row: np.ndarray
    slot: np.ndarray
    start: np.ndarray
    length: np.ndarray
    max_per_row: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.input_ids.shape

    @property
    def num_sequences(self) -> int:
        return len(self.row)

    @property
    def fill(self) -> float:
        """Real tokens over computed tokens."""
        return float(self.length.sum()) / self.input_ids.size

    def sequences(self, out) -> np.ndarray:
        """Per-slot outputs `[R, K, ...]` -> `[N, ...]` in input order."""
        return np.asarray(out)[self.row, self.slot]

    def tokens(self, out, i: int) -> np.ndarray:
        """Sequence `i`'s rows of a per-token output `[R, W, ...]`: `[length_i, ...]`."""
        s = int(self.start[i])
        return np.asarray(out)[self.row[i], s : s + int(self.length[i])]


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where each sequence goes: its row, slot (left to right in the row) and first column; `rows` used."""

    row: np.ndarray
    slot: np.ndarray
    start: np.ndarray
    rows: int


def place(lengths: Sequence[int] | np.ndarray, width: int, per_row: int | None = None) -> Placement:
    """First fit, longest first: each sequence into the first row with room for it and a free slot (at most
    `per_row`, default `max_per_row(width)`); slots numbered left to right along each row."""
    k = per_row or max_per_row(width)
    n = np.asarray(lengths, np.int64).reshape(-1)
    if n.size and (n.min() < 1 or n.max() > width):
        bad = int(np.argmax((n < 1) | (n > width)))
        raise ValueError(f"pack: sequence {bad} has {n[bad]} tokens; each needs 1..width={width}")
    # Python lists, not arrays: a batch has a few hundred sequences and tens of rows, where one numpy call per
    # sequence costs more than the scan. Only open rows are scanned: a row closes when it has no free slot or
    # less room than the shortest sequence (longest first: no later one fits it). Same placement as scanning
    # every row, 0.2 ms against 1.0 ms (numpy, every row) for 256 sequences in rows of 64.
    lens = n.tolist()
    rows_of, starts_of = [0] * n.size, [0] * n.size
    room: list[int] = []  # tokens left in each row
    count: list[int] = []  # sequences in each row
    open_rows: list[int] = []  # rows that may take another sequence, in row order
    shortest = min(lens, default=0)
    for i in np.argsort(-n, kind="stable").tolist():
        need = lens[i]
        at = 0  # the first open row with room
        while at < len(open_rows) and room[open_rows[at]] < need:
            at += 1
        if at == len(open_rows):
            open_rows.append(len(room))
            room.append(width)
            count.append(0)
        r = open_rows[at]
        rows_of[i], starts_of[i] = r, width - room[r]
        room[r] -= need
        count[r] += 1
        if count[r] == k or room[r] < shortest:
            del open_rows[at]
    row, start, rows = np.array(rows_of, np.int32), np.array(starts_of, np.int32), len(room)
    slot = np.zeros(n.size, np.int32)
    order = np.lexsort((start, row))  # by row, then by column
    first_of_row = np.searchsorted(row[order], row[order])
    slot[order] = np.arange(n.size) - first_of_row
    return Placement(row, slot, start, rows)


def pack(ids: Sequence[Sequence[int] | np.ndarray], types: Sequence[Sequence[int] | np.ndarray] | None = None, *,
         width: int, pad_id: int = 0, rows: int | Callable[[int], int] | None = None,
         per_row: int | None = None) -> PackedBatch:
    """Packs sequences of token ids (and token types) into rows of `width` (`place`).

    `rows`: the row count to pad to (at least the rows the sequences need), or a function of the rows they
    need giving it (a bucket: one placement serves both); `per_row`: at most this many sequences a row
    (default `max_per_row(width)`).
    """
    k = per_row or max_per_row(width)
    lengths = np.array([len(x) for x in ids], np.int32)
    if types is not None and [len(t) for t in types] != lengths.tolist():
        raise ValueError("pack: token types must match the ids sequence for sequence")
    at = place(lengths, width, k)
    need = max(at.rows, 1)
    total = need if rows is None else rows(need) if callable(rows) else rows
    if total < need:
        raise ValueError(f"pack: {len(ids)} sequences need {need} rows of {width}, more than rows={rows}")
    input_ids = np.full((total, width), pad_id, np.int32)
    segment_ids = np.zeros((total, width), np.int32)
    token_type_ids = np.zeros((total, width), np.int32)
    if len(ids):  # every token's (row, column) at once
        r = np.repeat(at.row, lengths)
        c = np.repeat(at.start, lengths) + np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        input_ids[r, c] = _joined(ids, int(lengths.sum()))
        segment_ids[r, c] = np.repeat(at.slot + 1, lengths)
        if types is not None:
            token_type_ids[r, c] = _joined(types, int(lengths.sum()))
    return PackedBatch(input_ids, segment_ids, token_type_ids, at.row, at.slot, at.start, lengths, k)


def _joined(seqs: Sequence[Sequence[int] | np.ndarray], total: int) -> np.ndarray:
    """The sequences end to end, int32: lists through one iterator (a tenth of the cost of an array each)."""
    if seqs and isinstance(seqs[0], np.ndarray):
        return np.concatenate([np.asarray(x, np.int32).reshape(-1) for x in seqs])
    return np.fromiter(itertools.chain.from_iterable(seqs), np.int32, total)


# ---- in the graph ---------------------------------------------------------------------------------------
def segment_starts(segment_ids: jax.Array) -> jax.Array:
    """`[R, W]`: the column where each token's segment begins (padding tails count as one segment)."""
    w = segment_ids.shape[1]
    col = jnp.arange(w, dtype=jnp.int32)[None, :]
    first = jnp.concatenate([jnp.ones_like(segment_ids[:, :1], bool), segment_ids[:, 1:] != segment_ids[:, :-1]], 1)
    return jax.lax.cummax(jnp.where(first, col, 0), axis=1)


def segment_positions(cfg: EncoderConfig, segment_ids: jax.Array) -> jax.Array:
    """Position ids of packed tokens: what `positions.position_ids_for` gives each sequence alone (BERT: 0, 1,
    ...; MPNet, RoBERTa, XLM-R: pad + 1, pad + 2, ...; padding: 0, or pad)."""
    index = jnp.arange(segment_ids.shape[1], dtype=jnp.int32)[None, :] - segment_starts(segment_ids)
    real = (segment_ids != 0).astype(jnp.int32)
    if cfg.model_type == "mpnet" or cfg.model_type in PADDING_OFFSET_POSITIONS:
        return (index + 1) * real + cfg.pad_token_id
    return index * real


def slot_masks(segment_ids: jax.Array, per_row: int) -> jax.Array:
    """`[R, K, W]` float32: 1 where the token belongs to slot k (segment k + 1)."""
    slots = jnp.arange(1, per_row + 1, dtype=segment_ids.dtype)
    return (segment_ids[:, None, :] == slots[None, :, None]).astype(jnp.float32)


def first_tokens(hidden: jax.Array, segment_ids: jax.Array, per_row: int) -> jax.Array:
    """Each slot's first token `[R, K, H]` (an empty slot's: row column 0)."""
    first = jnp.argmax(slot_masks(segment_ids, per_row), axis=-1)
    return jnp.take_along_axis(hidden, first[..., None], axis=1)


def slot_pool(hidden: jax.Array, segment_ids: jax.Array, per_row: int, mode: str) -> jax.Array:
    """`pooling.pool` of each slot's tokens, `[R, K, H]` float32 (an empty slot's: finite, meaningless)."""
    h = hidden.astype(jnp.float32)
    m = slot_masks(segment_ids, per_row)
    if mode == "cls":
        return first_tokens(h, segment_ids, per_row)
    if mode in ("mean", "mean_sqrt_len_tokens"):
        summed = jnp.einsum("rkw,rwh->rkh", m, h, precision=jax.lax.Precision.HIGHEST)
        count = jnp.maximum(jnp.sum(m, axis=-1), 1e-9)[..., None]
        return summed / (count if mode == "mean" else jnp.sqrt(count))
    if mode == "weightedmean":
        index = jnp.arange(segment_ids.shape[1], dtype=jnp.float32)[None, :] - segment_starts(segment_ids)
        w = m * (index + 1)[:, None, :]
        summed = jnp.einsum("rkw,rwh->rkh", w, h, precision=jax.lax.Precision.HIGHEST)
        return summed / jnp.maximum(jnp.sum(w, axis=-1), 1e-9)[..., None]
    if mode == "lasttoken":
        last = jnp.maximum(hidden.shape[1] - 1 - jnp.argmax(m[..., ::-1], axis=-1), 0)
        return jnp.take_along_axis(h, last[..., None], axis=1)
    raise ValueError(f"pooling mode={mode!r} does not run packed (packed: {', '.join(PACKABLE_POOLING)})")
