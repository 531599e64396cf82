"""`EngineConfig`: the engine's limits and knobs, checked when made."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """Limits and knobs of an `Engine` (the defaults are text-embeddings-inference's where it has one).

    Attributes:
      max_batch_tokens: the token budget of a batch, counted as padded tokens (rows x sequence bucket); it
        bounds the compiled shapes. Must hold one sequence of `max_input_length`.
      max_batch_requests: at most this many sequences in a batch (None: the budget alone decides).
      max_concurrent_requests: requests admitted and not yet answered; one more is refused at once
        (`Overloaded`, HTTP 429): the queue never grows without bound.
      max_client_batch_size: inputs one request may carry.
      max_wait_ms: how long a sequence waits for company while the device is busy; when the device is idle a
        batch goes at once.
      max_input_length: tokens an input may have, special tokens included (None: the model's position
        table); longer inputs are truncated when truncation is asked for, refused otherwise.
      auto_truncate: truncate inputs over the limit when a request does not say.
      tokenization_workers: threads that tokenize large requests (small ones are tokenized by the caller).
      inline_tokenization_chars: requests of at most this many characters are tokenized in the caller's
        thread, saving a thread hop on the latency of small requests.
      pipeline_depth: batches dispatched to the device and not yet collected (2: one runs while the next
        waits behind it, so the device never waits for the host).
      warmup: compile every shape the budget allows at start-up, so that no request waits for a compile.
      compile_workers: threads compiling at start-up (None: up to 8, the cores).
      packing: lay each batch's sequences end to end in rows (`samp_jax.packing`) instead of padding each to
        its bucket, for the models that run packed; the others pad as before.
    """

    max_batch_tokens: int = 16384
    max_batch_requests: int | None = None
    max_concurrent_requests: int = 512
    max_client_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_input_length: int | None = None
    auto_truncate: bool = False
    tokenization_workers: int = 2
    inline_tokenization_chars: int = 2048
    pipeline_depth: int = 2
    warmup: bool = True
    compile_workers: int | None = None
    packing: bool = False

    def __post_init__(self) -> None:
        positive = {"max_batch_tokens": self.max_batch_tokens, "max_concurrent_requests": self.max_concurrent_requests,
                    "max_client_batch_size": self.max_client_batch_size,
                    "tokenization_workers": self.tokenization_workers, "pipeline_depth": self.pipeline_depth}
        for opt in ("max_batch_requests", "max_input_length", "compile_workers"):
            if getattr(self, opt) is not None:
                positive[opt] = getattr(self, opt)
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        for name, number in (("max_wait_ms", self.max_wait_ms),
                             ("inline_tokenization_chars", self.inline_tokenization_chars)):
            if not isinstance(number, (int, float)) or isinstance(number, bool) or not number >= 0:
                raise ValueError(f"{name}={number!r} must be a number >= 0")
