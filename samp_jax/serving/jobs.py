"""A job, for one model: which sequences to run, through which compiled output, and how their rows become the
job's value.

Every value is computed by the model's own code on the rows its batch produced: `model.decode` for heads,
the same float32 products and sums as `model.similarity` for cosines. A served answer therefore equals
`model.predict`/`embed`/`similarity` on the same inputs whenever the rows do; rows computed in another batch
shape differ only by float reduction order (docs/serving.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from tokenizers import Encoding

from samp_jax.model import SampModel
from samp_jax.serving.errors import EmptyRequest, InvalidRequest
from samp_jax.serving.requests import Embed, Job, Predict, Rerank, Similarity

# The compiled outputs a batch runs: the normalized pooled embedding, the head's output, and the mean-pooled
# hidden state before normalization (the "hidden" executable, pooled on the device).
EMBED, HEAD, POOLED = "embed", "head", "pooled"

Finish = Callable[[list[np.ndarray], list[Encoding] | None], Any]


@dataclasses.dataclass(frozen=True)
class Work:
    """What the engine runs for one job: `items` (texts or pairs) through the `kind` output, then
    `finish(rows, encodings)` on their output rows in `items`' order (`encodings` kept only where
    `keep_encodings`: NER reads word ids and offsets). `field(i)` names the job's field that item `i`
    came from, for errors (`texts[3]`, `source`)."""

    kind: str
    items: list
    finish: Finish
    field: Callable[[int], str]
    keep_encodings: bool = False


def _texts(values: Any, what: str) -> list[str]:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)):
        raise InvalidRequest(f"{what} is {type(values).__name__}; expected a string or a list of strings", field=what)
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise InvalidRequest(f"{what}[{i}] is {type(v).__name__} {v!r:.40}; expected a string", field=f"{what}[{i}]")
    if not values:
        raise EmptyRequest(f"{what} is empty", field=what)
    return list(values)


def _check_count(n: int, limit: int, what: str) -> None:
    if n > limit:
        raise InvalidRequest(f"{what} holds {n} inputs, more than max_client_batch_size={limit}", field=what)


def _cosines(rows: list[np.ndarray], n: int) -> np.ndarray:
    """Cosine of row i with row n + i for normalized rows: `model.similarity`'s float32 products and sums."""
    emb = np.stack(rows)
    return np.sum(emb[:n] * emb[n:], axis=-1)


def _stack(rows: list[np.ndarray], _: list[Encoding] | None) -> np.ndarray:
    return np.stack(rows)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def plan(job: Job, model: SampModel, *, max_items: int) -> Work:
    """The work for `job` on `model`; a job the model cannot answer, or malformed inputs, raise a
    `ServingError` naming the field."""
    if isinstance(job, Embed):
        texts = _texts(job.texts, "texts")
        _check_count(len(texts), max_items, "texts")
        return Work(EMBED if job.normalize else POOLED, texts, _stack, lambda i: f"texts[{i}]")
    if isinstance(job, Similarity):
        if not isinstance(job.source, str):
            raise InvalidRequest(f"source is {type(job.source).__name__}; expected a string", field="source")
        sentences = _texts(job.sentences, "sentences")
        _check_count(len(sentences) + 1, max_items, "sentences")  # the source is one more input, as TEI counts
        n = len(sentences)
        return Work(EMBED, [job.source] + sentences, lambda rows, _: _cosines([rows[0]] * n + rows[1:], n),
                    lambda i: "source" if i == 0 else f"sentences[{i - 1}]")
    if isinstance(job, Rerank):
        return _rerank(job, model, max_items)
    if isinstance(job, Predict):
        return _predict(job, model, max_items)
    raise InvalidRequest(f"unknown job {type(job).__name__}; expected Embed, Predict, Similarity or Rerank")


def _predict(job: Predict, model: SampModel, max_items: int) -> Work:
    items, is_pair = _inputs(job.inputs)
    _check_count(len(items), max_items, "inputs")
    kind = model.task.kind
    field: Callable[[int], str] = lambda i: f"inputs[{i}]"
    if kind == "encoder":  # model.predict: embeddings of texts, cosine similarities of pairs
        if not is_pair:
            return Work(EMBED, items, _stack, field)
        n = len(items)
        return Work(EMBED, [a for a, _ in items] + [b for _, b in items], lambda rows, _: _cosines(rows, n),
                    lambda i: f"inputs[{i % n}][{i // n}]")
    if kind == "token_classification":
        if is_pair:
            raise InvalidRequest("this model tags the tokens of single texts, not pairs", field="inputs")
        return Work(HEAD, items, lambda rows, encs: [model.decode(r, e, t) for r, e, t in zip(rows, encs or [], items)],
                    field, keep_encodings=True)
    if job.raw_scores:
        return Work(HEAD, items, lambda rows, _: [np.array(r) for r in rows], field)
    return Work(HEAD, items, lambda rows, _: [model.decode(r, None, t) for r, t in zip(rows, items)], field)


def _inputs(inputs: Any) -> tuple[list, bool]:
    """Texts or `(a, b)` pairs, all of one kind (what `model.predict` takes)."""
    if isinstance(inputs, str):
        return [inputs], False
    if not isinstance(inputs, (list, tuple)):
        raise InvalidRequest(f"inputs is {type(inputs).__name__}; expected a string, a list of strings or of pairs",
                             field="inputs")
    if not inputs:
        raise EmptyRequest("inputs is empty", field="inputs")
    is_pair = isinstance(inputs[0], (list, tuple))
    for i, item in enumerate(inputs):
        if is_pair:
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(t, str) for t in item)):
                raise InvalidRequest(f"inputs[{i}] is {item!r:.60}; with pairs every input is two strings",
                                     field=f"inputs[{i}]")
        elif not isinstance(item, str):
            raise InvalidRequest(f"inputs[{i}] is {type(item).__name__} {item!r:.40}; expected a string "
                                 "(all inputs texts, or all pairs)", field=f"inputs[{i}]")
    return ([tuple(p) for p in inputs] if is_pair else list(inputs)), is_pair


def _rerank(job: Rerank, model: SampModel, max_items: int) -> Work:
    if not isinstance(job.query, str):
        raise InvalidRequest(f"query is {type(job.query).__name__}; expected a string", field="query")
    texts = _texts(job.texts, "texts")
    _check_count(len(texts), max_items, "texts")
    kind, labels = model.task.kind, model.task.labels
    n = len(texts)
    if kind == "encoder":  # a bi-encoder ranks by cosine of normalized embeddings
        return Work(EMBED, [job.query] + texts, lambda rows, _: _cosines([rows[0]] * n + rows[1:], n),
                    lambda i: "query" if i == 0 else f"texts[{i - 1}]")
    if kind != "sequence_classification" or len(labels) > 2:
        raise InvalidRequest(
            f"this model is a {kind} model with {len(labels)} labels; rerank needs a cross-encoder "
            "(sequence classification with 1 or 2 labels) or a bi-encoder", field="model")
    raw = job.raw_scores

    def score(row: np.ndarray) -> float:
        decoded = model.decode_sequence(row)
        if len(labels) == 1:  # a relevance logit: sigmoid, as TEI scores a single-label reranker
            return float(decoded["score"]) if raw else _sigmoid(decoded["score"])
        return float(row[1]) if raw else float(decoded["scores"][labels[1]])  # label 1: "relevant" / "paraphrase"

    return Work(HEAD, [(job.query, t) for t in texts],
                lambda rows, _: np.asarray([score(r) for r in rows], np.float32), lambda i: f"texts[{i}]")
