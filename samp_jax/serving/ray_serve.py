"""`samp-jax serve` as a Ray Serve deployment: the same engine and HTTP routes in every replica.

Each replica loads the models, builds its own `Engine` (dynamic batching, one device pipeline) and the
Starlette app `samp-jax serve` runs, and hands every request Ray Serve routes to it to that app unchanged,
so the routes, bodies, errors and metrics are those of docs/serving.md. A replica takes one GPU where the
Ray cluster has GPUs; Ray Serve's autoscaling adds replicas (one per GPU) as the queue grows:

    import ray
    from ray import serve
    from samp_jax.serving.ray_serve import deployment

    ray.init()
    serve.run(deployment([("minilm", "ckpt/", "full_int8")],
                         autoscaling_config={"min_replicas": 1, "max_replicas": 8,
                                             "target_ongoing_requests": 64}),
              route_prefix="/")

`serve run` takes a config file whose application's `import_path` is `samp_jax.serving.ray_serve:app_builder`
(docs/serving.md has one). Needs `pip install "samp-jax[ray]"`.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from samp_jax.api import load
from samp_jax.serving.app import create_app
from samp_jax.serving.config import EngineConfig
from samp_jax.serving.engine import Engine

ModelSpec = tuple[str, str, str | None]  # (name, checkpoint or Hugging Face folder, plan or None)


class SampReplica:
    """One Ray Serve replica: the models, their engine and the HTTP app (called with Starlette requests)."""

    def __init__(self, models: Sequence[ModelSpec], engine_config: Mapping[str, Any] | None = None,
                 kernels: str = "auto"):
        loaded = [(name, load(path, plan=plan, kernels=kernels)) for name, path, plan in models]
        self.engine = Engine(loaded, EngineConfig(**dict(engine_config or {})))
        self.app = create_app(self.engine)

    async def __call__(self, request: Any) -> Any:
        """Runs the request through the app as an ASGI call and returns its response."""
        from starlette.responses import Response

        messages: list[MutableMapping[str, Any]] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            messages.append(message)

        await self.app(request.scope, request.receive, send)
        start = next(m for m in messages if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", [])
                   if k.lower() != b"content-length"}
        return Response(body, status_code=start["status"], headers=headers)

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close(drain=False)


def deployment(models: Sequence[ModelSpec], *, engine_config: Mapping[str, Any] | None = None,
               kernels: str = "auto", num_gpus: float | None = None, num_cpus: float | None = None,
               num_replicas: int | None = None, autoscaling_config: Mapping[str, Any] | None = None) -> Any:
    """A Ray Serve application serving `models` (`(name, path, plan)` each, the first the default).

    `num_gpus` per replica: 1 where the Ray cluster has GPUs, else 0 (default). `num_replicas` or
    `autoscaling_config` as Ray Serve takes them (default: one replica). Returns the bound application for
    `serve.run`.
    """
    try:
        import ray
        from ray import serve
    except ImportError:
        raise ValueError('Ray Serve needs Ray: pip install "samp-jax[ray]"') from None
    if not models:
        raise ValueError("no model to serve: pass (name, checkpoint, plan) tuples")
    for spec in models:
        if not (isinstance(spec, tuple) and len(spec) == 3):
            raise ValueError(f"model spec {spec!r}: expected (name, checkpoint path, plan or None)")
    if num_gpus is None:
        num_gpus = 1 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) >= 1 else 0
    actor_options: dict[str, Any] = {"num_gpus": num_gpus}
    if num_cpus is not None:
        actor_options["num_cpus"] = num_cpus
    options: dict[str, Any] = {"name": "samp-jax", "ray_actor_options": actor_options}
    if autoscaling_config is not None:
        options["autoscaling_config"] = dict(autoscaling_config)
    elif num_replicas is not None:
        options["num_replicas"] = num_replicas
    replica = serve.deployment(**options)(SampReplica)
    return replica.bind([tuple(m) for m in models], dict(engine_config or {}), kernels)


def app_builder(args: Mapping[str, Any]) -> Any:
    """The application `serve run` builds from a config file's `args` (docs/serving.md has one):
    `models` (a list of `{name, path, plan}`), `engine` (EngineConfig fields), `kernels`, `num_gpus`."""
    specs = args.get("models")
    if not isinstance(specs, list) or not specs:
        raise ValueError(f"args.models={specs!r}: a non-empty list of {{name, path, plan}}")
    models = []
    for i, m in enumerate(specs):
        if not isinstance(m, Mapping) or "path" not in m:
            raise ValueError(f"args.models[{i}]={m!r}: an object with a path (and a name, a plan)")
        models.append((str(m.get("name", f"model{i}")), str(m["path"]), m.get("plan")))
    return deployment(models, engine_config=args.get("engine"), kernels=args.get("kernels", "auto"),
                      num_gpus=args.get("num_gpus"))
