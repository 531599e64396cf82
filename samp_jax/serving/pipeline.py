"""The engine's three stages and the threads that run them: tokenize, schedule and dispatch, collect.

  submit ── tokenize (caller thread, or a worker for large requests) ──▶ scheduler thread ──▶ collector thread
            validate, encode, ids to int32       owns the queue: batches   np.asarray (waits for the device),
            a bad request fails here, alone      by token budget and wait; decode, resolve futures
                                                 pads and dispatches

JAX dispatch is asynchronous: the scheduler's call of an executable returns at once, so while batch n runs
on the device the scheduler pads and dispatches batch n+1 (at most `pipeline_depth` batches in flight) and
the collector decodes batch n-1. Only the scheduler thread touches the queue (`BatchQueue`); the others talk
to it over its command channel: sequences added, a batch collected, a request cancelled, drain, stop.
A failure inside a stage fails the requests it concerns; the threads go on.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from samp_jax.packing import PackedBatch, pack
from samp_jax.serving.admitted import Admitted
from samp_jax.serving.config import EngineConfig
from samp_jax.serving.errors import BackendFailure, DeadlineExceeded, ServingError, ShuttingDown
from samp_jax.serving.forwards import Forwards
from samp_jax.serving.jobs import HEAD
from samp_jax.serving.metrics import Metrics
from samp_jax.serving.scheduler import Batch, BatchQueue, packed_rows, pad
from samp_jax.serving.served import ServedModel

logger = logging.getLogger("samp_jax.serving")


class _SchedulerState:
    """What only the scheduler thread reads and writes: batches in flight, draining, pending deadlines."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.draining = False
        self.done = False
        self.deadlines: list[tuple[float, int, Admitted]] = []  # a heap by deadline
        self.order = itertools.count()  # breaks ties between equal deadlines


class Pipeline:
    """The scheduler and collector threads over one `BatchQueue`, and the tokenize stage callers run.

    `active()` counts the engine's admitted, unanswered requests: a draining pipeline stops once it is 0.
    """

    def __init__(self, models: dict[str, ServedModel], forwards: Forwards, queue_: BatchQueue, config: EngineConfig,
                 metrics: Metrics, active: Callable[[], int]):
        self.models, self.forwards, self.queue, self.config, self.metrics = models, forwards, queue_, config, metrics
        self.active = active
        self._commands: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self._collect: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self._scheduler = threading.Thread(target=self._schedule, name="samp-scheduler", daemon=True)
        self._collector = threading.Thread(target=self._collect_results, name="samp-collector", daemon=True)
        self._scheduler.start()
        self._collector.start()

    @property
    def alive(self) -> bool:
        return self._scheduler.is_alive() and self._collector.is_alive()

    def discard(self, request: Admitted) -> None:
        """Drops what still waits of a cancelled request."""
        self._commands.put(("discard", request))

    def stop(self, *, drain: bool, timeout: float | None) -> None:
        """With `drain`, runs everything queued and returns once every admitted request is answered; else
        fails what has not run with `ShuttingDown`. Waits at most `timeout` seconds per thread."""
        self._commands.put(("drain",) if drain else ("stop",))
        self._scheduler.join(timeout)
        self._collector.join(timeout)

    def fail(self, request: Admitted, error: ServingError) -> None:
        request.fail(error, self.metrics)

    # ---- stage 1: tokenize ------------------------------------------------------------
    def tokenize(self, request: Admitted) -> None:
        """Stage 1, in the caller's thread or a tokenization worker: encode, or fail the request alone."""
        if request.future.done():
            return
        try:
            entries = request.tokenize()
        except ServingError as e:
            return self.fail(request, e)
        except Exception as e:
            logger.exception("tokenization failed")
            return self.fail(request, BackendFailure(f"tokenization failed: {type(e).__name__}: {e}"))
        self._commands.put(("add", request, entries))

    # ---- stage 2: the scheduler thread, owner of the queue --------------------------
    def _schedule(self) -> None:
        state = _SchedulerState()
        while not state.done:
            try:
                self._schedule_step(state)
            except Exception:  # a bug here must not strand every request: log it and keep scheduling
                logger.exception("the scheduler failed a step; it goes on")
        self._collect.put(None)

    def _schedule_step(self, state: _SchedulerState) -> None:
        """Waits for a command or a timer (a sequence's maximum wait, a deadline), applies the commands,
        expires requests, dispatches what is ready."""
        q, depth, deadlines = self.queue, self.config.pipeline_depth, state.deadlines
        while deadlines and deadlines[0][2].future.done():  # answered before their deadline
            heapq.heappop(deadlines)
        now = time.perf_counter()
        wait: float | None = None  # None: nothing to time, sleep until a command comes
        if len(q) and state.in_flight < depth:
            wait = 0.0 if state.in_flight == 0 else q.wakeup(now)
        if deadlines:
            wait = max(0.0, min(deadlines[0][0] - now, wait if wait is not None else float("inf")))
        if state.draining:
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
                        heapq.heappush(deadlines, (request.deadline, next(state.order), request))
            elif kind == "collected":
                state.in_flight -= 1
            elif kind == "discard":
                q.discard(command[1])
            elif kind == "drain":
                state.draining = True
            elif kind == "stop":
                for entry in q.pop_all():
                    self.fail(entry.request, ShuttingDown("the engine stopped before this request ran"))
                state.done = True
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
                self.fail(request, DeadlineExceeded(
                    f"the request's deadline passed {ran} ({now - request.t_submit:.3f} s after it arrived)"))
        while state.in_flight < depth:
            batch = q.next_batch(now, idle=state.in_flight == 0, flush=state.draining)
            if batch is None:
                break
            state.in_flight += self._dispatch(batch, now)
        self.metrics.queue_size.set(len(q))
        if state.draining and not len(q) and state.in_flight == 0 and self.active() == 0:
            state.done = True

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
        pad_id = self.models[batch.model].model.config.pad_token_id
        layout: PackedBatch | None = None
        try:
            if batch.packed:  # laid out here (a cancelled sequence leaves no gap), rows bucketed as queued
                buckets = self.queue.packed_buckets(batch.seq)
                layout = pack([e.ids for e in live], [e.types for e in live], width=batch.seq, pad_id=pad_id,
                              rows=lambda need: packed_rows(buckets, need))
                ids, mask, types = layout.input_ids, layout.segment_ids, layout.token_type_ids
                rows = layout.shape[0]
            else:
                rows = next(b for b in self.queue.buckets(batch.seq) if b >= len(live))
                ids, mask, types = pad(live, rows, batch.seq, pad_id)
            batch = Batch(batch.model, batch.kind, rows, batch.seq, live, packed=batch.packed)
            out = self.forwards.get(batch.model, batch.kind, rows, batch.seq, batch.packed)(ids, mask, types)
            start_copy = getattr(out, "copy_to_host_async", None)
            if start_copy is not None:  # the copy back starts when the device finishes, not when collected
                start_copy()
        except Exception as e:
            logger.exception("batch of %d sequences, width %d, of %r failed to dispatch", len(live), batch.seq,
                             batch.model)
            for entry in live:
                self.fail(entry.request, BackendFailure(f"the model failed on this request's batch: {type(e).__name__}: {e}"))
            return 0
        self._collect.put((batch, out, now, layout))
        return 1

    # ---- stage 3: the collector thread ---------------------------------------------
    def _collect_results(self) -> None:
        while (item := self._collect.get()) is not None:
            try:
                self._collect_batch(*item)
            except Exception:  # as in the scheduler: log, and go on collecting
                logger.exception("the collector failed on a batch; it goes on")

    def _collect_batch(self, batch: Batch, out: Any, t_dispatch: float, layout: PackedBatch | None) -> None:
        try:
            rows = np.asarray(out)  # waits for the device
        except Exception as e:
            logger.exception("batch [%d, %d] of %r failed on the device", batch.rows, batch.seq, batch.model)
            self._commands.put(("collected",))
            for entry in batch.entries:
                self.fail(entry.request, BackendFailure(f"the model failed on this request's batch: {e}"))
            return
        now = time.perf_counter()
        self._commands.put(("collected",))
        m = batch.model
        self.metrics.batch_size.labels(m).observe(len(batch.entries))
        self.metrics.batch_tokens.labels(m).observe(batch.padded_tokens)
        self.metrics.batch_real_tokens.labels(m).observe(batch.real_tokens)
        self.metrics.batch_duration.labels(m).observe(now - t_dispatch)
        # packed: a token head's output is [R, W, labels], cut per sequence; the others' [R, K, ...] per slot
        per_token = batch.kind == HEAD and self.models[m].model.task.kind == "token_classification"
        for row, entry in enumerate(batch.entries):
            request = entry.request
            if request.future.done():
                continue
            if layout is None:
                request.outputs[entry.index] = rows[row]
            else:  # packed: the sequence's tokens of a per-token output, else its slot's row
                request.outputs[entry.index] = (layout.tokens(rows, row) if per_token
                                                else rows[layout.row[row], layout.slot[row]])
            if request.encodings is not None:
                request.encodings[entry.index] = entry.encoding
            request.remaining -= 1
            if request.remaining == 0:
                request.finish(self.metrics)
