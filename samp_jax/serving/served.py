"""`ServedModel`: a model under the name requests choose it by, with its input limit and its sequence buckets."""

from __future__ import annotations

from samp_jax.model import SampModel
from samp_jax.serving import jobs


class ServedModel:
    """A model served under a name, with its input limit and its start-up compile record."""

    def __init__(self, name: str, model: SampModel, max_input_length: int | None):
        if model.tokenizer is None:
            raise ValueError(f"model {name!r} ({model.source}) has no tokenizer: it cannot serve texts")
        limit = model.config.max_seq_len if max_input_length is None else min(max_input_length,
                                                                              model.config.max_seq_len)
        self.name, self.model, self.max_input_length = name, model, limit
        tok = model.tokenizer
        self.seq_buckets = tuple(b for b in tok.seq_buckets if b < limit) + (tok.seq_bucket(limit),)
        self.compile_s = 0.0
        self.shapes = 0

    @property
    def primary_kind(self) -> str:
        """The output most requests need: pooled embeddings of a bi-encoder, the head of the others."""
        return jobs.EMBED if self.model.task.kind == "encoder" else jobs.HEAD
