"""`Admitted`: a request the engine took in, from its tokenization to its answer.

Tokenization turns it into one `Entry` per input (a bad input fails this request alone, before it meets
any other); the collector fills its output rows; the last one decodes them (`jobs.Work.finish`) and answers
the future. The scheduler and an expiring deadline may answer it first: whoever answers first wins, the
others find the future done.
"""

from __future__ import annotations

import logging
import re
import time
from concurrent.futures import Future, InvalidStateError
from typing import Any

import numpy as np

from samp_jax.serving import jobs
from samp_jax.serving.errors import BackendFailure, InputTooLong, ServingError, TokenizationFailed
from samp_jax.serving.metrics import Metrics
from samp_jax.serving.requests import Result, Timings
from samp_jax.serving.scheduler import Entry
from samp_jax.serving.served import ServedModel
from samp_jax.tokenizer import InputTooLong as TokenizerInputTooLong

logger = logging.getLogger("samp_jax.serving")

_INDEXED = re.compile(r"^input (\d+) ")  # the tokenizer front end names an input by its position


class Admitted:
    """An admitted request's state. Tokenization writes it before it reaches the scheduler; after that the
    scheduler marks it started and the collector alone fills its outputs."""

    __slots__ = ("served", "work", "truncate", "deadline", "future", "outputs", "encodings", "remaining",
                 "prompt_tokens", "t_submit", "t_tokenized", "t_dispatched", "started")

    def __init__(self, served: ServedModel, work: jobs.Work, truncate: bool, deadline: float | None,
                 future: Future, now: float):
        self.served, self.work, self.truncate, self.deadline, self.future = served, work, truncate, deadline, future
        n = len(work.items)
        self.outputs: list[Any] = [None] * n
        self.encodings: list[Any] | None = [None] * n if work.keep_encodings else None
        self.remaining = n
        self.prompt_tokens = 0
        self.t_submit = now
        self.t_tokenized = now
        self.t_dispatched = now
        self.started = False

    def tokenize(self) -> list[Entry]:
        """One `Entry` per input; an input too long (truncation off) or not valid Unicode raises a
        `ServingError` naming it."""
        served, work = self.served, self.work
        tok = served.model.tokenizer
        assert tok is not None  # ServedModel refuses a model without one
        try:
            encodings = tok.encode(work.items, truncation=self.truncate, max_length=served.max_input_length,
                                   offsets=work.keep_encodings)  # offsets and word ids: only NER decodes them
        except TokenizerInputTooLong as e:
            raise InputTooLong(e.index, e.length, e.limit, how="truncate=True") from None
        except ValueError as e:  # text that is not valid Unicode
            m = _INDEXED.match(str(e))
            raise TokenizationFailed(str(e), index=int(m.group(1)) if m else None) from None
        now = time.perf_counter()
        entries = []
        for i, enc in enumerate(encodings):
            ids = np.asarray(enc.ids, np.int32)
            entries.append(Entry(self, i, ids, np.asarray(enc.type_ids, np.int32), served.name, work.kind,
                                 served.group(len(ids)), now, enc if work.keep_encodings else None))
        self.prompt_tokens = sum(e.length for e in entries)
        self.t_tokenized = now
        return entries

    def fail(self, error: ServingError, metrics: Metrics) -> None:
        """Answers with `error` (naming the job's field), unless answered already."""
        if error.index is not None and error.field is None:
            error = error.with_field(self.work.field(error.index))
        try:
            self.future.set_exception(error)
        except InvalidStateError:  # cancelled, expired or answered meanwhile
            return
        metrics.failures.labels(error.error_type).inc()

    def finish(self, metrics: Metrics) -> None:
        """All rows are in: decodes them into the job's value and answers, with the request's timings."""
        try:
            value = self.work.finish(self.outputs, self.encodings)
        except ServingError as e:
            return self.fail(e, metrics)
        except Exception as e:
            logger.exception("decoding failed")
            return self.fail(BackendFailure(f"decoding failed: {type(e).__name__}: {e}"), metrics)
        now = time.perf_counter()
        timings = Timings(self.t_tokenized - self.t_submit, self.t_dispatched - self.t_tokenized,
                          now - self.t_dispatched, now - self.t_submit)
        name = self.served.name
        metrics.tokenization_duration.labels(name).observe(timings.tokenization)
        metrics.queue_duration.labels(name).observe(timings.queue)
        metrics.inference_duration.labels(name).observe(timings.inference)
        try:
            self.future.set_result(Result(value, name, self.prompt_tokens, timings))
        except InvalidStateError:  # expired at this very moment
            pass
