"""`Engine`: dynamic batching of requests onto compiled executables, usable with or without HTTP.

A request flows through three stages, each overlapping the others:

  submit ── tokenize (caller thread, or a worker for large requests) ──▶ scheduler thread ──▶ collector thread
            validate, encode, ids to int32       owns the queue: batches   np.asarray (waits for the device),
            a bad request fails here, alone      by token budget and wait; decode, resolve futures
                                                 pads and dispatches

JAX dispatch is asynchronous: the scheduler's call of an executable returns at once, so while batch n runs
on the device the scheduler pads and dispatches batch n+1 (at most `pipeline_depth` batches in flight) and
the collector decodes batch n-1. Only the scheduler thread touches the queue; the others talk to it over
its command channel (added sequences, a batch collected, a request cancelled, drain, stop).

Requests are bounded (`max_concurrent_requests`: one more is refused with `Overloaded` at once), have an
optional deadline (expired ones are dropped unrun and answered `DeadlineExceeded`), and are cancelled
through their future (`future.cancel()` drops a request that has not started). Errors are per request;
a failing batch fails its requests and the engine goes on.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from typing import Any

import numpy as np

from samp_jax.model import SampModel
from samp_jax.serving import jobs
from samp_jax.serving.config import EngineConfig
from samp_jax.serving.errors import (
    BackendFailure,
    DeadlineExceeded,
    InputTooLong,
    InvalidRequest,
    Overloaded,
    ServingError,
    ShuttingDown,
    TokenizationFailed,
)
from samp_jax.serving.forwards import Forwards
from samp_jax.serving.metrics import Metrics
from samp_jax.serving.requests import Job, Result, Timings
from samp_jax.serving.scheduler import Batch, BatchQueue, Entry
from samp_jax.tokenizer import InputTooLong as TokenizerInputTooLong

logger = logging.getLogger("samp_jax.serving")

_INDEXED = re.compile(r"^input (\d+) ")


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


class _Request:
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


class Engine:
    """Serves one or more models (the first is the default) through one queue and one device pipeline.

    Args:
      models: a `SampModel`, or `{name: model}` / `[(name, model), ...]`; one checkpoint may appear under
        several plans, each its own model.
      config: limits and knobs (`EngineConfig`).
      metrics: where to record (a fresh `Metrics` by default).

    Compiles at construction (unless `config.warmup` is off): every `[rows, seq]` the budget allows for each
    model's main output; `startup_compile_s` says how long that took. Close it (`close()`, or use it as a
    context manager) to drain and stop its threads.
    """

    def __init__(self, models: SampModel | Mapping[str, SampModel] | Sequence[tuple[str, SampModel]],
                 config: EngineConfig | None = None, *, metrics: Metrics | None = None):
        self.config = config = config or EngineConfig()
        if isinstance(models, SampModel):
            models = [("default", models)]
        pairs = list(models.items()) if isinstance(models, Mapping) else list(models)
        if not pairs:
            raise ValueError("no model to serve")
        self.models: dict[str, ServedModel] = {}
        for name, model in pairs:
            if name in self.models:
                raise ValueError(f"model name {name!r} given twice; name each model once")
            self.models[name] = ServedModel(name, model, config.max_input_length)
        self.default_model = pairs[0][0]
        self.metrics = metrics or Metrics()
        self._queue = BatchQueue(config.max_batch_tokens, config.max_wait_ms / 1000.0, config.max_batch_requests)
        for served in self.models.values():  # every bucket must fit the budget before anything is compiled
            for seq in served.seq_buckets:
                try:
                    self._queue.buckets(seq)
                except ValueError as e:
                    raise ValueError(f"model {served.name!r}, max_input_length={served.max_input_length}: {e}") from None
        self.forwards = Forwards({name: s.model for name, s in self.models.items()})
        self._commands: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self._collect: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._active = 0
        self._accepting = True
        self._closed = False
        self.startup_compile_s = self.warmup() if config.warmup else 0.0
        self._tokenizers = ThreadPoolExecutor(config.tokenization_workers, thread_name_prefix="samp-tokenize")
        self._scheduler = threading.Thread(target=self._schedule, name="samp-scheduler", daemon=True)
        self._collector = threading.Thread(target=self._collect_results, name="samp-collector", daemon=True)
        self._scheduler.start()
        self._collector.start()

    # ---- start-up ---------------------------------------------------------------
    def warmup(self) -> float:
        """Compiles every `[rows, seq]` shape the budget allows for each model's main output (through JAX's
        persistent cache where it is enabled); returns the seconds it took."""
        t0 = time.perf_counter()
        for served in self.models.values():
            t = time.perf_counter()
            shapes = [(rows, seq) for seq in served.seq_buckets for rows in self._queue.buckets(seq)]
            self.forwards.compile(served.name, served.primary_kind, shapes, workers=self.config.compile_workers)
            served.compile_s, served.shapes = time.perf_counter() - t, len(shapes)
            self.metrics.startup_compile.labels(served.name).set(served.compile_s)
            self.metrics.startup_shapes.labels(served.name).set(served.shapes)
            logger.info("model %r: compiled %d shapes in %.1f s", served.name, len(shapes), served.compile_s)
        return time.perf_counter() - t0

    # ---- the caller's side -------------------------------------------------------
    def submit(self, job: Job, *, model: str | None = None, truncate: bool | None = None,
               timeout: float | None = None) -> Future[Result]:
        """Queues `job` for `model` (default: the first); returns a future of its `Result`.

        truncate: cut inputs over `max_input_length` (default: `config.auto_truncate`); otherwise they fail
          with `InputTooLong`. timeout: seconds from now after which the request is answered
          `DeadlineExceeded` (dropped unrun if it has not started).
        Raises a `ServingError` for a request refused at the door (unknown model, malformed job, too many
        inputs, `Overloaded`, `ShuttingDown`); errors found later (too long, not Unicode, a failed batch)
        arrive through the future. `future.cancel()` drops a request that has not started.
        """
        served = self.served(model)
        work = jobs.plan(job, served.model, max_items=self.config.max_client_batch_size)
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise InvalidRequest(f"timeout={timeout!r} must be a positive number of seconds", field="timeout")
        now = time.perf_counter()
        with self._lock:
            if not self._accepting:
                raise ShuttingDown("the server is shutting down: it answers the requests it holds and takes no new ones")
            if self._active >= self.config.max_concurrent_requests:
                raise Overloaded(f"{self._active} requests are in flight, the maximum "
                                 f"(max_concurrent_requests={self.config.max_concurrent_requests}); retry later")
            self._active += 1
        self.metrics.requests_in_flight.inc()
        future: Future[Result] = Future()
        request = _Request(served, work, self.config.auto_truncate if truncate is None else bool(truncate),
                           None if timeout is None else now + timeout, future, now)
        future.add_done_callback(lambda f: self._retire(request))
        chars = sum(len(t) if isinstance(t, str) else len(t[0]) + len(t[1]) for t in work.items)
        if chars <= self.config.inline_tokenization_chars:
            self._tokenize(request)
        else:
            try:
                self._tokenizers.submit(self._tokenize, request)
            except RuntimeError:  # the pool shut down between the admission check and here
                self._fail(request, ShuttingDown("the server is shutting down"))
        return future

    def served(self, name: str | None) -> ServedModel:
        """The served model called `name` (None: the default)."""
        if name is None:
            return self.models[self.default_model]
        if name not in self.models:
            raise InvalidRequest(f"model={name!r} is not served here; served: {list(self.models)}", field="model")
        return self.models[name]

    def _retire(self, request: _Request) -> None:
        with self._lock:
            self._active -= 1
        self.metrics.requests_in_flight.dec()
        if request.future.cancelled():  # the scheduler drops what still waits
            self._commands.put(("discard", request))

    def _fail(self, request: _Request, error: ServingError) -> None:
        if error.index is not None and error.field is None:
            error = error.with_field(request.work.field(error.index))
        try:
            request.future.set_exception(error)
        except InvalidStateError:  # cancelled, expired or answered meanwhile
            return
        self.metrics.failures.labels(error.error_type).inc()

    # ---- stage 1: tokenize ------------------------------------------------------------
    def _tokenize(self, request: _Request) -> None:
        if request.future.done():
            return
        served, work = request.served, request.work
        try:
            encodings = served.model.tokenizer.encode(  # type: ignore[union-attr]  # checked by ServedModel
                work.items, truncation=request.truncate, max_length=served.max_input_length)
        except TokenizerInputTooLong as e:
            return self._fail(request, InputTooLong(e.index, e.length, e.limit, how="truncate=True"))
        except ValueError as e:  # text that is not valid Unicode, named by the tokenizer front end
            m = _INDEXED.match(str(e))
            return self._fail(request, TokenizationFailed(str(e), index=int(m.group(1)) if m else None))
        except Exception as e:
            logger.exception("tokenization failed")
            return self._fail(request, BackendFailure(f"tokenization failed: {type(e).__name__}: {e}"))
        now = time.perf_counter()
        tok = served.model.tokenizer
        assert tok is not None
        entries = []
        for i, enc in enumerate(encodings):
            ids = np.asarray(enc.ids, np.int32)
            entries.append(Entry(request, i, ids, np.asarray(enc.type_ids, np.int32), served.name, work.kind,
                                 tok.seq_bucket(len(ids)), now, enc if work.keep_encodings else None))
        request.prompt_tokens = sum(e.length for e in entries)
        request.t_tokenized = now
        self._commands.put(("add", request, entries))

    # ---- stage 2: the scheduler thread, owner of the queue --------------------------
    def _schedule(self) -> None:
        q, depth = self._queue, self.config.pipeline_depth
        in_flight, draining = 0, False
        deadlines: list[tuple[float, int, _Request]] = []
        order = itertools.count()
        while True:
            now = time.perf_counter()
            wait: float | None = None
            if len(q) and in_flight < depth:
                wait = 0.0 if in_flight == 0 else q.wakeup(now)
            if deadlines:
                wait = max(0.0, min(deadlines[0][0] - now, wait if wait is not None else float("inf")))
            if draining:
                wait = min(wait if wait is not None else 0.05, 0.05)
            try:
                command: tuple | None = (self._commands.get_nowait() if wait is not None and wait <= 0
                                         else self._commands.get(timeout=wait))
            except queue.Empty:
                command = None
            while command is not None:
                kind = command[0]
                if kind == "add":
                    _, request, entries = command
                    if not request.future.done():
                        q.push(entries)
                        if request.deadline is not None:
                            heapq.heappush(deadlines, (request.deadline, next(order), request))
                elif kind == "collected":
                    in_flight -= 1
                elif kind == "discard":
                    q.discard(command[1])
                elif kind == "drain":
                    draining = True
                elif kind == "stop":
                    for entry in q.pop_all():
                        self._fail(entry.request, ShuttingDown("the engine stopped before this request ran"))
                    self._collect.put(None)
                    return
                try:
                    command = self._commands.get_nowait()
                except queue.Empty:
                    command = None
            now = time.perf_counter()
            while deadlines and deadlines[0][0] <= now:
                request = heapq.heappop(deadlines)[2]
                if not request.future.done():
                    q.discard(request)
                    ran = "after it started" if request.started else "before it ran"
                    self._fail(request, DeadlineExceeded(
                        f"the request's deadline passed {ran} ({now - request.t_submit:.3f} s after it arrived)"))
            while in_flight < depth:
                batch = q.next_batch(now, idle=in_flight == 0, flush=draining)
                if batch is None:
                    break
                in_flight += self._dispatch(batch, now)
            self.metrics.queue_size.set(len(q))
            if draining and not len(q) and in_flight == 0 and self._active == 0:
                self._collect.put(None)
                return

    def _dispatch(self, batch: Batch, now: float) -> int:
        """Pads and dispatches a batch (returns at once: JAX runs it asynchronously); 1 if dispatched."""
        live = []
        for e in batch.entries:
            request = e.request
            if request.future.done():  # cancelled or expired while it waited
                continue
            if not request.started:
                if not request.future.set_running_or_notify_cancel():
                    continue
                request.started, request.t_dispatched = True, now
            live.append(e)
        if not live:
            return 0
        rows = next(b for b in self._queue.buckets(batch.seq) if b >= len(live))
        batch = Batch(batch.model, batch.kind, rows, batch.seq, live)
        pad_id = self.models[batch.model].model.config.pad_token_id
        try:
            ids, mask, types = pad(live, rows, batch.seq, pad_id)
            out = self.forwards.get(batch.model, batch.kind, rows, batch.seq)(ids, mask, types)
        except Exception as e:
            logger.exception("batch [%d, %d] of %r failed to dispatch", rows, batch.seq, batch.model)
            for entry in live:
                self._fail(entry.request, BackendFailure(f"the model failed on this request's batch: {type(e).__name__}: {e}"))
            return 0
        self._collect.put((batch, out, now))
        return 1

    # ---- stage 3: the collector thread ---------------------------------------------
    def _collect_results(self) -> None:
        while (item := self._collect.get()) is not None:
            batch, out, t_dispatch = item
            try:
                rows = np.asarray(out)  # waits for the device
            except Exception as e:
                logger.exception("batch [%d, %d] of %r failed on the device", batch.rows, batch.seq, batch.model)
                self._commands.put(("collected",))
                for entry in batch.entries:
                    self._fail(entry.request, BackendFailure(f"the model failed on this request's batch: {e}"))
                continue
            now = time.perf_counter()
            self._commands.put(("collected",))
            m = batch.model
            self.metrics.batch_size.labels(m).observe(len(batch.entries))
            self.metrics.batch_tokens.labels(m).observe(batch.padded_tokens)
            self.metrics.batch_real_tokens.labels(m).observe(batch.real_tokens)
            self.metrics.batch_duration.labels(m).observe(now - t_dispatch)
            for row, entry in enumerate(batch.entries):
                request = entry.request
                if request.future.done():
                    continue
                request.outputs[entry.index] = rows[row]
                if request.encodings is not None:
                    request.encodings[entry.index] = entry.encoding
                request.remaining -= 1
                if request.remaining == 0:
                    self._finish(request)

    def _finish(self, request: _Request) -> None:
        try:
            value = request.work.finish(request.outputs, request.encodings)
        except ServingError as e:
            return self._fail(request, e)
        except Exception as e:
            logger.exception("decoding failed")
            return self._fail(request, BackendFailure(f"decoding failed: {type(e).__name__}: {e}"))
        now = time.perf_counter()
        timings = Timings(request.t_tokenized - request.t_submit, request.t_dispatched - request.t_tokenized,
                          now - request.t_dispatched, now - request.t_submit)
        name = request.served.name
        self.metrics.tokenization_duration.labels(name).observe(timings.tokenization)
        self.metrics.queue_duration.labels(name).observe(timings.queue)
        self.metrics.inference_duration.labels(name).observe(timings.inference)
        try:
            request.future.set_result(Result(value, name, request.prompt_tokens, timings))
        except InvalidStateError:  # expired at this very moment
            pass

    # ---- health and shutdown ----------------------------------------------------------
    @property
    def healthy(self) -> bool:
        """Accepting requests, with its scheduler and collector threads alive."""
        return self._accepting and self._scheduler.is_alive() and self._collector.is_alive()

    @property
    def active_requests(self) -> int:
        return self._active

    def close(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Stops taking requests; with `drain`, answers every admitted request first (else fails those that
        have not run with `ShuttingDown`); then stops the threads (waiting at most `timeout` seconds each)."""
        with self._lock:
            if self._closed:
                return
            self._closed, self._accepting = True, False
        self._tokenizers.shutdown(wait=True)
        self._commands.put(("drain",) if drain else ("stop",))
        self._scheduler.join(timeout)
        self._collector.join(timeout)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
