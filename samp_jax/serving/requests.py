"""What a caller hands the engine (one job per request) and what it gets back.

A job names its inputs and what to compute from them; `Engine.submit(job, model=..., truncate=...,
timeout=...)` returns a `concurrent.futures.Future` of a `Result`. Values are what the model's own
methods return for the same inputs (`embed`, `predict`, `similarity`), so that a served answer and
a local one agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Embed:
    """Embeddings of texts pooled as the model pools (`model.pooling`): `[N, hidden]` float32, L2-normalized
    unless `normalize=False` (`model.embed(texts, normalize=...)`)."""

    texts: Sequence[str]
    normalize: bool = True


@dataclasses.dataclass(frozen=True)
class Predict:
    """`model.predict(inputs)`: texts or `(a, b)` pairs, decoded by the model's head (labels and scores,
    multi-label sets, NER spans; embeddings or cosine similarities for a bare encoder). With
    `raw_scores=True` a sequence head answers its `[labels]` logits per input instead."""

    inputs: Sequence[str] | Sequence[tuple[str, str]]
    raw_scores: bool = False


@dataclasses.dataclass(frozen=True)
class Similarity:
    """Cosine similarity of `source` with each sentence, `[N]` float32 (`model.similarity` of the pairs)."""

    source: str
    sentences: Sequence[str]


@dataclasses.dataclass(frozen=True)
class Rerank:
    """A relevance score per text for `query`, `[N]` float32 in the texts' order.

    A cross-encoder (sequence classification on `(query, text)` pairs) scores with a sigmoid of its single
    logit, or the softmax probability of label 1 of a two-label head; `raw_scores=True` gives the logit
    (of label 1) instead. A bi-encoder scores by the cosine of normalized embeddings."""

    query: str
    texts: Sequence[str]
    raw_scores: bool = False


Job = Embed | Predict | Similarity | Rerank


@dataclasses.dataclass(frozen=True)
class Timings:
    """Where a request's time went, in seconds: tokenizing, waiting in the queue (from tokenized to its
    first batch dispatched), inference (first dispatch to last result decoded) and in all."""

    tokenization: float
    queue: float
    inference: float
    total: float


@dataclasses.dataclass(frozen=True)
class Result:
    """A finished request: its value, the model that answered, the tokens it ran (special tokens
    included, padding not) and its timings."""

    value: Any
    model: str
    prompt_tokens: int
    timings: Timings
