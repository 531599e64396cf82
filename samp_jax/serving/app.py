"""The ASGI app (Starlette): TEI's and OpenAI's routes over an `Engine`, health, info and metrics.

Per request: refuse while draining (503); read the body under the payload limit (413 by Content-Length, or
as soon as the streamed body passes it); parse the JSON (400) and check its fields (422 naming the field);
submit to the engine (429 at once when full); await the result while watching the connection, and cancel
the engine request if the client goes away before it runs. Every failure is a JSON body `{"error",
"error_type"(, "field")}` (OpenAI's `{"error": {"message", "type", "param", "code"}}` on `/v1/`), never a
traceback; nothing a request does ends the process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from samp_jax.serving import jsonio, protocol
from samp_jax.serving.engine import Engine
from samp_jax.serving.errors import (
    BackendFailure,
    InvalidRequest,
    MalformedRequest,
    PayloadTooLarge,
    ServingError,
    ShuttingDown,
)
from samp_jax.serving.requests import Result

logger = logging.getLogger("samp_jax.serving")
JSON = "application/json"


@dataclasses.dataclass
class ServerSettings:
    """HTTP-side limits.

    Attributes:
      payload_limit: the largest request body in bytes (TEI's default, 2 MB).
      request_timeout: seconds a request may take before it is answered 504 (None: no limit); a request may
        ask for less with the header `X-Request-Timeout: SECONDS`.
    """

    payload_limit: int = 2_000_000
    request_timeout: float | None = None


class _ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


class Server:
    """The routes' shared state: the engine, the settings, and whether the server is draining."""

    def __init__(self, engine: Engine, settings: ServerSettings | None = None):
        self.engine = engine
        self.settings = settings or ServerSettings()
        self.metrics = engine.metrics
        self.draining = False

    # ---- the engine routes ---------------------------------------------------------------
    async def run(self, request: Request, route: str, parse: Callable[[Any, Engine], protocol.Call]) -> Response:
        t0 = time.perf_counter()
        call: protocol.Call | None = None
        openai = route.startswith("/v1/")
        try:
            if self.draining:
                raise ShuttingDown("the server is shutting down: it answers the requests it holds and takes no new ones")
            body = await self._body(request)
            call = parse(body, self.engine)
            future = self.engine.submit(call.job, model=call.model, truncate=call.truncate,
                                        timeout=self._timeout(request))
            result = await self._wait(future, request)
            served = self.engine.served(result.model).model
            response = Response(jsonio.dumps(call.render(result, served)), media_type=JSON,
                                headers=_timing_headers(result, t0))
        except ServingError as e:
            response = _error(call.rename(e) if call is not None else e, openai)
        except _ClientGone:
            response = Response(status_code=499)  # nobody reads it; counted as nginx counts a client gone
        except Exception as e:  # a bug answers 500 and the server goes on
            logger.exception("%s failed", route)
            response = _error(BackendFailure(f"internal error: {type(e).__name__}: {e}"), openai)
        self._record(route, response.status_code, t0)
        return response

    async def tokenize(self, request: Request) -> Response:
        t0 = time.perf_counter()
        try:
            if self.draining:
                raise ShuttingDown("the server is shutting down")
            body = await self._body(request)
            tokens = await asyncio.get_running_loop().run_in_executor(None, protocol.tokenize, body, self.engine)
            response = Response(jsonio.dumps(tokens), media_type=JSON)
        except ServingError as e:
            response = _error(e, False)
        except Exception as e:
            logger.exception("/tokenize failed")
            response = _error(BackendFailure(f"internal error: {type(e).__name__}: {e}"), False)
        self._record("/tokenize", response.status_code, t0)
        return response

    async def _body(self, request: Request) -> Any:
        limit = self.settings.payload_limit
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise MalformedRequest(f"Content-Length {declared!r} is not a number", field="body")
            if int(declared) > limit:
                raise PayloadTooLarge(f"the body is {declared} bytes, more than the payload limit of {limit} bytes",
                                      field="body")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the body passed the payload limit of {limit} bytes", field="body")
            chunks.append(chunk)
        data = b"".join(chunks)
        if not data:
            raise MalformedRequest("the body is empty; send a JSON object", field="body")
        try:
            return jsonio.loads(data)
        except ValueError as e:
            raise MalformedRequest(f"the body is not valid JSON: {e}", field="body") from None

    def _timeout(self, request: Request) -> float | None:
        timeout = self.settings.request_timeout
        asked = request.headers.get("x-request-timeout")
        if asked is not None:
            try:
                seconds = float(asked)
            except ValueError:
                seconds = -1.0
            if not seconds > 0:
                raise InvalidRequest(f"X-Request-Timeout {asked!r} must be a positive number of seconds",
                                     field="X-Request-Timeout")
            timeout = seconds if timeout is None else min(timeout, seconds)
        return timeout

    async def _wait(self, future: Future[Result], request: Request) -> Result:
        """The engine's result; if the client disconnects first, cancels the engine request (dropped if it has
        not started) and raises `_ClientGone`."""
        result = asyncio.wrap_future(future)
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait((result, gone), return_when=asyncio.FIRST_COMPLETED)
            if result in done:
                return result.result()
            future.cancel()
            raise _ClientGone
        finally:
            gone.cancel()
            if not future.done():  # this handler was cancelled (a forced shutdown): drop the request too
                future.cancel()

    def _record(self, route: str, status: int, t0: float) -> None:
        self.metrics.requests.labels(route, str(status)).inc()
        self.metrics.request_duration.labels(route).observe(time.perf_counter() - t0)

    # ---- the other routes ----------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        if self.draining or not self.engine.healthy:
            why = "draining" if self.draining else "the engine stopped"
            return _error(ShuttingDown(f"unhealthy: {why}"), False)
        return Response(b"{}", media_type=JSON)

    async def info(self, request: Request) -> Response:
        return Response(jsonio.dumps(self.info_dict()), media_type=JSON)

    async def metrics_route(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    def info_dict(self) -> dict:
        """TEI's `/info` keys (model_id, model_type, limits, version) and ours: every model, its plan and task."""
        from samp_jax import __version__

        e, c = self.engine, self.engine.config
        first = e.served(None)
        models = [{"name": s.name, "source": str(s.model.source), "plan": s.model.plan.to_string(),
                   "task": s.model.task.kind, "labels": list(s.model.task.labels),
                   "max_input_length": s.max_input_length, "hidden_size": s.model.config.hidden_size,
                   "startup_compile_seconds": round(s.compile_s, 3), "compiled_shapes": s.shapes}
                  for s in e.models.values()]
        return {
            "model_id": first.name, "model_dtype": first.model.plan.dtype, "model_type": _model_type(first.model),
            "plan": first.model.plan.to_string(), "task": first.model.task.kind, "models": models,
            "max_concurrent_requests": c.max_concurrent_requests, "max_input_length": first.max_input_length,
            "max_batch_tokens": c.max_batch_tokens, "max_batch_requests": c.max_batch_requests,
            "max_client_batch_size": c.max_client_batch_size, "max_wait_ms": c.max_wait_ms,
            "auto_truncate": c.auto_truncate, "tokenization_workers": c.tokenization_workers,
            "payload_limit": self.settings.payload_limit, "request_timeout": self.settings.request_timeout,
            "startup_compile_seconds": round(e.startup_compile_s, 3), "version": __version__,
        }


def _model_type(model: Any) -> dict:
    task = model.task
    if task.kind == "encoder":
        return {"embedding": {"pooling": "mean"}}
    labels = {"id2label": {str(i): lab for i, lab in enumerate(task.labels)},
              "label2id": {lab: i for i, lab in enumerate(task.labels)}}
    return {"classifier": labels}


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _timing_headers(result: Result, t0: float) -> dict[str, str]:
    t = result.timings
    return {"x-compute-tokens": str(result.prompt_tokens), "x-total-time": f"{(time.perf_counter() - t0) * 1e3:.3f}",
            "x-tokenization-time": f"{t.tokenization * 1e3:.3f}", "x-queue-time": f"{t.queue * 1e3:.3f}",
            "x-inference-time": f"{t.inference * 1e3:.3f}", "x-model": result.model}


def _error(error: ServingError, openai: bool) -> Response:
    if openai:
        body: dict = {"error": {"message": error.message, "type": error.error_type, "param": error.field,
                                "code": error.status}}
    else:
        body = error.to_dict()
    headers = {"retry-after": "1"} if error.status in (429, 503) else None
    return Response(jsonio.dumps(body), status_code=error.status, media_type=JSON, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, wrong method) as JSON bodies too."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    body = {"error": f"{request.method} {request.url.path}: {detail}", "error_type": "validation"}
    return Response(jsonio.dumps(body), status_code=status, media_type=JSON)


def create_app(engine: Engine, settings: ServerSettings | None = None) -> Starlette:
    """The Starlette app serving `engine`; `app.state.server` is its `Server` (set `.draining` to refuse new
    requests with 503 while the ones held finish)."""
    server = Server(engine, settings)

    def engine_route(path: str, parse: Callable[[Any, Engine], protocol.Call]) -> Route:
        async def endpoint(request: Request) -> Response:
            return await server.run(request, path, parse)

        return Route(path, endpoint, methods=["POST"])

    routes = [engine_route(path, parse) for path, parse in protocol.ROUTES.items()]
    routes += [
        Route("/tokenize", server.tokenize, methods=["POST"]),
        Route("/health", server.health, methods=["GET"]),
        Route("/info", server.info, methods=["GET"]),
        Route("/metrics", server.metrics_route, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.server = server
    return app
