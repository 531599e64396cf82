"""Prometheus metrics of the engine and the HTTP server, one prefix (`samp_`) and the unit in each name.

Each `Metrics` has its own registry, so that several engines (tests, one process serving twice) never
collide; `/metrics` renders it. Durations are histograms; the engine records per request (tokenization,
queue, inference) and per batch (size, padded and real tokens, run time), the server per route and status.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# From 0.5 ms (a lone small request on a GPU) to a minute (a drained queue behind a slow device).
DURATION_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = tuple(float(2**i) for i in range(11))  # 1 .. 1024 sequences
TOKEN_BUCKETS = tuple(float(2**i) for i in range(5, 18))  # 32 .. 131072 tokens


class Metrics:
    """The serving metrics, registered in `registry` (a fresh one by default)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.requests = Counter("samp_requests", "HTTP requests answered, by route and status code",
                                ["route", "status"], registry=r)
        self.request_duration = Histogram("samp_request_duration_seconds", "HTTP request time, body read to response",
                                          ["route"], buckets=DURATION_BUCKETS, registry=r)
        self.tokenization_duration = Histogram(
            "samp_request_tokenization_duration_seconds", "Engine request time spent tokenizing", ["model"],
            buckets=DURATION_BUCKETS, registry=r)
        self.queue_duration = Histogram(
            "samp_request_queue_duration_seconds", "Engine request time from tokenized to its first batch dispatched",
            ["model"], buckets=DURATION_BUCKETS, registry=r)
        self.inference_duration = Histogram(
            "samp_request_inference_duration_seconds", "Engine request time from first dispatch to last result",
            ["model"], buckets=DURATION_BUCKETS, registry=r)
        self.batch_size = Histogram("samp_batch_size", "Sequences in a batch", ["model"], buckets=SIZE_BUCKETS,
                                    registry=r)
        self.batch_tokens = Histogram("samp_batch_tokens", "Padded tokens in a batch (rows x sequence bucket)",
                                      ["model"], buckets=TOKEN_BUCKETS, registry=r)
        self.batch_real_tokens = Histogram("samp_batch_real_tokens", "Tokens of the batch's sequences, padding not",
                                           ["model"], buckets=TOKEN_BUCKETS, registry=r)
        self.batch_duration = Histogram("samp_batch_inference_duration_seconds",
                                        "Batch time from dispatch to its output on the host", ["model"],
                                        buckets=DURATION_BUCKETS, registry=r)
        self.queue_size = Gauge("samp_queue_size", "Sequences waiting for a batch", registry=r)
        self.requests_in_flight = Gauge("samp_requests_in_flight", "Engine requests admitted and not yet answered",
                                        registry=r)
        self.failures = Counter("samp_request_failures", "Engine requests failed, by error type", ["error_type"],
                                registry=r)
        self.startup_compile = Gauge("samp_startup_compile_seconds", "Time spent compiling at start-up, per model",
                                     ["model"], registry=r)
        self.startup_shapes = Gauge("samp_startup_compiled_shapes", "Executables compiled at start-up, per model",
                                    ["model"], registry=r)

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
