"""`Engine`: dynamic batching of requests onto compiled executables, usable with or without HTTP.

Requests are admitted at the door (`submit`): a known model, a well-formed job, at most
`max_concurrent_requests` held at once (one more is refused with `Overloaded` at once, so the queue never
grows without bound). Then they flow through the pipeline (`pipeline.py`): tokenized (a bad request fails
there, alone), queued and batched by one scheduler thread (`scheduler.py`: token budget, maximum wait,
grouping by length), dispatched to the device while the previous batch runs, collected and decoded by the
model's own code (`jobs.py`). A request may carry a deadline (expired ones are dropped unrun and answered
`DeadlineExceeded`) and is cancelled through its future (`future.cancel()` drops one that has not started).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from samp_jax.model import SampModel
from samp_jax.serving import jobs
from samp_jax.serving.admitted import Admitted
from samp_jax.serving.config import EngineConfig
from samp_jax.serving.errors import InvalidRequest, Overloaded, ShuttingDown
from samp_jax.serving.forwards import Forwards
from samp_jax.serving.metrics import Metrics
from samp_jax.serving.pipeline import Pipeline
from samp_jax.serving.requests import Job, Result
from samp_jax.serving.scheduler import BatchQueue
from samp_jax.serving.served import ServedModel

logger = logging.getLogger("samp_jax.serving")


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
            self.models[name] = ServedModel(name, model, config.max_input_length, config.packing)
        self.default_model = pairs[0][0]
        self.metrics = metrics or Metrics()
        packed = frozenset(name for name, served in self.models.items() if served.packed)
        self._queue = BatchQueue(config.max_batch_tokens, config.max_wait_ms / 1000.0, config.max_batch_requests,
                                 packed)
        for served in self.models.values():  # every bucket must fit the budget before anything is compiled
            for seq in served.shapes_compiled:
                try:
                    self._queue.packed_buckets(seq) if served.packed else self._queue.buckets(seq)
                except ValueError as e:
                    raise ValueError(f"model {served.name!r}, max_input_length={served.max_input_length}: {e}") from None
        self.forwards = Forwards({name: s.model for name, s in self.models.items()})
        self._lock = threading.Lock()
        self._active = 0
        self._accepting = True
        self._closed = False
        self.startup_compile_s = self.warmup() if config.warmup else 0.0
        self._tokenizers = ThreadPoolExecutor(config.tokenization_workers, thread_name_prefix="samp-tokenize")
        self._pipeline = Pipeline(self.models, self.forwards, self._queue, config, self.metrics, lambda: self._active)

    # ---- start-up ---------------------------------------------------------------
    def warmup(self) -> float:
        """Compiles every `[rows, seq]` shape the budget allows for each model's main output (through JAX's
        persistent cache where it is enabled); returns the seconds it took."""
        t0 = time.perf_counter()
        for served in self.models.values():
            t = time.perf_counter()
            rows_of = self._queue.packed_buckets if served.packed else self._queue.buckets
            shapes = [(rows, seq) for seq in served.shapes_compiled for rows in rows_of(seq)]
            self.forwards.compile(served.name, served.primary_kind, shapes, workers=self.config.compile_workers,
                                  packed=served.packed)
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
        request = Admitted(served, work, self.config.auto_truncate if truncate is None else bool(truncate),
                           None if timeout is None else now + timeout, future, now)
        future.add_done_callback(lambda f: self._retire(request))
        chars = sum(len(t) if isinstance(t, str) else len(t[0]) + len(t[1]) for t in work.items)
        if chars <= self.config.inline_tokenization_chars:
            self._pipeline.tokenize(request)
        else:
            try:
                self._tokenizers.submit(self._pipeline.tokenize, request)
            except RuntimeError:  # the pool shut down between the admission check and here
                self._pipeline.fail(request, ShuttingDown("the server is shutting down"))
        return future

    def served(self, name: str | None) -> ServedModel:
        """The served model called `name` (None: the default)."""
        if name is None:
            return self.models[self.default_model]
        if name not in self.models:
            raise InvalidRequest(f"model={name!r} is not served here; served: {list(self.models)}", field="model")
        return self.models[name]

    def _retire(self, request: Admitted) -> None:
        with self._lock:
            self._active -= 1
        self.metrics.requests_in_flight.dec()
        if request.future.cancelled():  # the scheduler drops what still waits
            self._pipeline.discard(request)

    # ---- health and shutdown ----------------------------------------------------------
    @property
    def healthy(self) -> bool:
        """Accepting requests, with its scheduler and collector threads alive."""
        return self._accepting and self._pipeline.alive

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
        self._pipeline.stop(drain=drain, timeout=timeout)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
