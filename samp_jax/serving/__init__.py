"""Serving at volume: a dynamic-batching engine and the HTTP server over it (`samp-jax serve`).

    from samp_jax.serving import Engine, EngineConfig, Embed
    with Engine({"minilm": samp_jax.load(ckpt, plan="fp16")}, EngineConfig(max_batch_tokens=16384)) as engine:
        vectors = engine.submit(Embed(["a text", "another"])).result().value

The engine (`engine.py`: queue, scheduler, pipeline) needs no HTTP stack; `create_app` and `serve`
(Starlette on uvicorn) are imported on first use. docs/serving.md describes both.
"""

from typing import Any

from samp_jax.serving.config import EngineConfig
from samp_jax.serving.engine import Engine
from samp_jax.serving.errors import (
    BackendFailure,
    DeadlineExceeded,
    EmptyRequest,
    InputTooLong,
    InvalidRequest,
    Overloaded,
    ServingError,
    ShuttingDown,
    TokenizationFailed,
)
from samp_jax.serving.metrics import Metrics
from samp_jax.serving.requests import Embed, Job, Predict, Rerank, Result, Similarity, Timings
from samp_jax.serving.served import ServedModel

_HTTP = {"create_app": "samp_jax.serving.app", "ServerSettings": "samp_jax.serving.app",
         "serve": "samp_jax.serving.server"}


def __getattr__(name: str) -> Any:
    if name in _HTTP:  # the HTTP stack (starlette, uvicorn) loads only when asked for
        import importlib

        return getattr(importlib.import_module(_HTTP[name]), name)
    raise AttributeError(f"module 'samp_jax.serving' has no attribute {name!r}")


__all__ = [
    "BackendFailure", "DeadlineExceeded", "Embed", "EmptyRequest", "Engine", "EngineConfig", "InputTooLong",
    "InvalidRequest", "Job", "Metrics", "Overloaded", "Predict", "Rerank", "Result", "ServedModel", "ServingError",
    "ShuttingDown", "Similarity", "Timings", "TokenizationFailed", "create_app", "serve", "ServerSettings",
]
