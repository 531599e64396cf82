"""Running the app under uvicorn, and draining it on SIGTERM or SIGINT.

On the signal the server first refuses new requests (503, `/health` too, so a load balancer stops sending),
then uvicorn stops accepting connections and waits for the requests it holds (at most `drain_timeout`
seconds), then the engine answers whatever it still holds and stops; the process exits 0. uvicorn would
re-raise the signal after its graceful shutdown, ending the process by the signal; a drained shutdown is a
normal exit, so the signal is not re-raised.
"""

from __future__ import annotations

import logging
import math
import signal
import socket
from collections.abc import Callable, Sequence
from types import FrameType

import uvicorn

from samp_jax.serving.app import Server, ServerSettings, create_app
from samp_jax.serving.engine import Engine

logger = logging.getLogger("samp_jax.serving")


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: Server):
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.state.draining = True
        super().handle_exit(sig, frame)
        captured = getattr(self, "_captured_signals", None)  # uvicorn re-raises these after its shutdown
        if isinstance(captured, list) and sig in (signal.SIGTERM, signal.SIGINT):
            captured.remove(sig)


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` (port 0: a free one, read back with `getsockname()`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))  # uvicorn listens once it serves: until then a client is refused, not left waiting
    sock.set_inheritable(True)
    return sock


def serve(engine: Engine, *, host: str = "127.0.0.1", port: int = 8080, settings: ServerSettings | None = None,
          drain_timeout: float = 30.0, access_log: bool = False, log_level: str = "warning",
          on_listen: Callable[[str], None] | None = print, sockets: Sequence[socket.socket] | None = None) -> int:
    """Serves `engine` over HTTP until SIGTERM/SIGINT, then drains: answers what it holds and closes the
    engine. Calls `on_listen(url)` once the socket listens; returns the exit status (0)."""
    app = create_app(engine, settings)
    socks = list(sockets) if sockets else [bind(host, port)]
    bound_host, bound_port = socks[0].getsockname()[:2]
    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="off",
                            timeout_graceful_shutdown=math.ceil(drain_timeout), timeout_keep_alive=30)
    server = _DrainingServer(config, app.state.server)
    if on_listen is not None:
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        on_listen(f"http://{shown}:{bound_port}")
    try:
        server.run(sockets=socks)
    finally:
        app.state.server.draining = True
        engine.close(drain=True, timeout=drain_timeout)
        for s in socks:
            s.close()
    return 0
