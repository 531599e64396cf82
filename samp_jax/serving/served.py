"""`ServedModel`: a model under the name requests choose it by, with its input limit and its sequence buckets."""

from __future__ import annotations

from samp_jax.model import SampModel
from samp_jax.packing import MIN_WIDTH, unpackable
from samp_jax.serving import jobs


class ServedModel:
    """A model served under a name, with its input limit and its start-up compile record.

    `packed` (asked for, and the model runs packed: `samp_jax.packing.unpackable`): its batches lay sequences
    end to end in rows of `widths` tokens; `group(length)` is the sequence bucket a sequence waits in, or
    with packing the row width it packs into."""

    def __init__(self, name: str, model: SampModel, max_input_length: int | None, packing: bool = False):
        if model.tokenizer is None:
            raise ValueError(f"model {name!r} ({model.source}) has no tokenizer: it cannot serve texts")
        limit = model.config.max_seq_len if max_input_length is None else min(max_input_length,
                                                                              model.config.max_seq_len)
        self.name, self.model, self.max_input_length = name, model, limit
        tok = model.tokenizer
        self.seq_buckets = tuple(b for b in tok.seq_buckets if b < limit) + (tok.seq_bucket(limit),)
        self.compile_s = 0.0
        self.shapes = 0
        pooling = model.pooling.mode if model.task.kind == "encoder" else None
        self.packed = packing and unpackable(model.config, pooling) is None
        narrowest = tok.seq_bucket(min(MIN_WIDTH, limit))  # rows hold several sequences: at least 128 wide
        self.widths = tuple(sorted({max(b, narrowest) for b in self.seq_buckets}))

    def group(self, length: int) -> int:
        """The sequence bucket of `length` tokens, or (packed) the row width it packs into."""
        bucket = self.model.tokenizer.seq_bucket(length)  # type: ignore[union-attr]
        return next(w for w in self.widths if bucket <= w) if self.packed else bucket

    @property
    def shapes_compiled(self) -> tuple[int, ...]:
        """The sequence sizes of its compiled shapes: row widths when packed, else the sequence buckets."""
        return self.widths if self.packed else self.seq_buckets

    @property
    def primary_kind(self) -> str:
        """The output most requests need: pooled embeddings of a bi-encoder, the head of the others."""
        return jobs.EMBED if self.model.task.kind == "encoder" else jobs.HEAD
