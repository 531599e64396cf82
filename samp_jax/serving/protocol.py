"""The HTTP routes' JSON: request bodies checked field by field into engine jobs, results written back in the
shapes text-embeddings-inference (TEI) and OpenAI clients read.

Each `parse_*` takes the decoded body and returns a `Call`: the job, the model it names, its truncation, how
to write its result and how to name its fields in errors. A field of the wrong type, an empty or too long
list, or an option this server does not offer raises a `ServingError` naming the field and the limit.
Unknown keys are ignored, as TEI ignores them. Every body may name a served `"model"` (default: the first).
"""

from __future__ import annotations

import base64
import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

from samp_jax.model import SampModel
from samp_jax.serving import fields
from samp_jax.serving.engine import Engine
from samp_jax.serving.errors import EmptyRequest, InputTooLong, InvalidRequest, ServingError, TokenizationFailed
from samp_jax.serving.requests import Embed, Job, Predict, Rerank, Result, Similarity


@dataclasses.dataclass(frozen=True)
class Call:
    """A parsed request: the engine job, its options, and how its answer is written."""

    job: Job
    model: str | None
    truncate: bool | None
    render: Callable[[Result, SampModel], Any]
    fields: tuple[tuple[str, str], ...] = ()  # (job field, request field): errors name the request's

    def rename(self, error: ServingError) -> ServingError:
        """`error` naming the request's field where it names the job's (`texts[2]` -> `inputs[2]`), and the
        JSON way to ask for truncation."""
        if isinstance(error, InputTooLong):
            error = error.with_field(error.field or f"input {error.index}")
            error.message = error.message.replace("(truncate=True)", '("truncate": true)')
            error.args = (error.message,)
        if error.field is None:
            return error
        for ours, theirs in self.fields:
            if error.field == ours or error.field.startswith(ours + "["):
                return error.with_field(theirs + error.field[len(ours):])
        return error


# ---- routes -------------------------------------------------------------------------------------------
def parse_embed(body: Any, engine: Engine) -> Call:
    """TEI `POST /embed`: `{"inputs": str | [str], "normalize": true, "truncate": bool}` -> `[[float]]`."""
    body = fields.object_(body)
    texts = fields.strings(body.get("inputs"), "inputs", engine.config.max_client_batch_size)
    normalize = fields.boolean(body, "normalize", True)
    fields.no_dimensions(body)
    return Call(Embed(texts, normalize=bool(normalize)), fields.model(body), fields.truncation(body),
                lambda r, _: r.value, (("texts", "inputs"),))


def parse_openai_embeddings(body: Any, engine: Engine) -> Call:
    """OpenAI `POST /v1/embeddings`: `{"input": str | [str], "model": str, "encoding_format": "float" |
    "base64"}` -> `{"object": "list", "data": [{"object": "embedding", "embedding", "index"}], "model",
    "usage"}`. With one model served any model name is answered by it (as TEI does); with several the name
    chooses."""
    body = fields.object_(body)
    texts = fields.strings(body.get("input"), "input", engine.config.max_client_batch_size)
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise InvalidRequest(f"encoding_format={fmt!r}: choose 'float' or 'base64'", field="encoding_format")
    fields.no_dimensions(body)
    model = fields.model(body)
    if model is not None and model not in engine.models and len(engine.models) == 1:
        model = None

    def render(result: Result, _: SampModel) -> dict:
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") if fmt == "base64" else v}
                for i, v in enumerate(result.value)]
        usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
        return {"object": "list", "data": data, "model": result.model, "usage": usage}

    return Call(Embed(texts, normalize=True), model, None, render, (("texts", "input"),))


def parse_similarity(body: Any, engine: Engine) -> Call:
    """TEI `POST /similarity`: `{"inputs": {"source_sentence": str, "sentences": [str]}, "parameters":
    {"truncate": bool}}` -> `[float]`, the cosine of the source with each sentence."""
    body = fields.object_(body)
    inputs = body.get("inputs")
    if not isinstance(inputs, dict):
        raise InvalidRequest(f"inputs is a JSON {fields.kind(inputs)}; expected an object with source_sentence and "
                             "sentences", field="inputs")
    source = fields.string(inputs.get("source_sentence"), "inputs.source_sentence")
    sentences = fields.strings(inputs.get("sentences"), "inputs.sentences", engine.config.max_client_batch_size, extra=1)
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidRequest(f"parameters is a JSON {fields.kind(params)}; expected an object", field="parameters")
    truncate = fields.truncation(params, "parameters.")
    return Call(Similarity(source, sentences), fields.model(body), truncate, lambda r, _: r.value,
                (("source", "inputs.source_sentence"), ("sentences", "inputs.sentences")))


def parse_rerank(body: Any, engine: Engine) -> Call:
    """TEI `POST /rerank`: `{"query": str, "texts": [str], "return_text": bool, "raw_scores": bool,
    "truncate": bool}` -> `[{"index", "score"(, "text")}]`, highest score first."""
    body = fields.object_(body)
    query = fields.string(body.get("query"), "query")
    if isinstance(body.get("texts"), str):
        raise InvalidRequest("texts is a JSON string; expected an array of strings", field="texts")
    texts = fields.strings(body.get("texts"), "texts", engine.config.max_client_batch_size)
    return_text = fields.boolean(body, "return_text", False)
    raw = bool(fields.boolean(body, "raw_scores", False))

    def render(result: Result, _: SampModel) -> list[dict]:
        order = sorted(range(len(texts)), key=lambda i: -float(result.value[i]))
        return [{"index": i, "text": texts[i], "score": float(result.value[i])} if return_text
                else {"index": i, "score": float(result.value[i])} for i in order]

    return Call(Rerank(query, texts, raw_scores=raw), fields.model(body), fields.truncation(body), render)


def parse_predict(body: Any, engine: Engine) -> Call:
    """TEI `POST /predict`: `{"inputs": str | [a, b] | [[a], [a, b], ...], "raw_scores": bool, "truncate":
    bool}`. One input (a text or a pair) answers its predictions, a batch a list of them: for classification
    `[{"label", "score"}]` over every label, highest first (softmax; sigmoid for a single-output head; logits
    with raw_scores); multi-label the same with sigmoid scores and `"predicted"` (over its threshold); NER the
    entity spans `[{"entity", "start", "end", "text", "score"}]`."""
    body = fields.object_(body)
    inputs, single = _predict_inputs(body.get("inputs"), engine.config.max_client_batch_size)
    raw = bool(fields.boolean(body, "raw_scores", False))
    model = fields.model(body)
    task = engine.served(model).model.task
    if task.kind == "encoder":
        raise InvalidRequest("this model is a bi-encoder: it has no head to predict with; use /embed, /similarity "
                             "or /rerank", field="model")

    def render(result: Result, m: SampModel) -> Any:
        out = [_prediction(v, m, raw) for v in result.value]
        return out[0] if single else out

    return Call(Predict(inputs, raw_scores=raw), model, fields.truncation(body), render)


def _predict_inputs(value: Any, limit: int) -> tuple[list, bool]:
    """TEI's PredictInput: a string or a pair `[a, b]` is one input; a list of `[a]` / `[a, b]` a batch."""
    if isinstance(value, str):
        return [value], True
    if not isinstance(value, list):
        raise InvalidRequest(f"inputs is a JSON {fields.kind(value)}; expected a string, a pair [a, b] or a batch "
                             "[[a], [a, b], ...]", field="inputs")
    if not value:
        raise EmptyRequest("inputs is empty", field="inputs")
    if isinstance(value[0], str):
        if len(value) > 2 or not all(isinstance(v, str) for v in value):
            raise InvalidRequest(f"inputs is an array of {len(value)} values: one input is a string or a pair "
                                 "[a, b] of strings; a batch is [[a], [b, c], ...]", field="inputs")
        return [value[0] if len(value) == 1 else (value[0], value[1])], True
    if len(value) > limit:
        raise InvalidRequest(f"inputs holds {len(value)} inputs, more than max_client_batch_size={limit}", field="inputs")
    items: list = []
    for i, v in enumerate(value):
        if not (isinstance(v, list) and len(v) in (1, 2) and all(isinstance(t, str) for t in v)):
            raise InvalidRequest(f"inputs[{i}] is {v!r:.60}; each input of a batch is [text] or [text_a, text_b]",
                                 field=f"inputs[{i}]")
        items.append(v[0] if len(v) == 1 else (v[0], v[1]))
    if len({isinstance(t, tuple) for t in items}) > 1:
        first = next(i for i, t in enumerate(items) if isinstance(t, tuple) != isinstance(items[0], tuple))
        raise InvalidRequest(f"inputs[{first}] is a {'pair' if isinstance(items[first], tuple) else 'single text'} "
                             "after inputs of the other kind; send texts and pairs in separate requests",
                             field=f"inputs[{first}]")
    return items, False


def _prediction(value: Any, model: SampModel, raw: bool) -> Any:
    """One input's predictions in TEI's shape (or NER spans as `model.predict` gives them)."""
    task = model.task
    if task.kind == "token_classification":
        return value
    labels = task.labels
    if raw:
        scored = [(lab, float(x)) for lab, x in zip(labels, value)]
    elif "labels" in value:  # multi-label
        chosen = set(value["labels"])
        ranked = sorted(value["scores"].items(), key=lambda kv: -kv[1])
        return [{"label": lab, "score": s, "predicted": lab in chosen} for lab, s in ranked]
    elif "scores" not in value:  # a single output: a sigmoid, as TEI reads a one-label head
        scored = [(labels[0], 1.0 / (1.0 + math.exp(-value["score"])))]
    else:
        scored = list(value["scores"].items())
    return [{"label": lab, "score": s} for lab, s in sorted(scored, key=lambda kv: -kv[1])]


def tokenize(body: Any, engine: Engine) -> list[list[dict]]:
    """TEI `POST /tokenize`: `{"inputs": str | [str], "add_special_tokens": true}` -> per input its tokens
    `{"id", "text", "special", "start", "stop"}` (character offsets; null for special tokens)."""
    body = fields.object_(body)
    texts = fields.strings(body.get("inputs"), "inputs", engine.config.max_client_batch_size)
    specials = bool(fields.boolean(body, "add_special_tokens", True))
    if body.get("prompt_name") is not None:
        raise InvalidRequest("prompt_name: prompts are not supported by this server", field="prompt_name")
    tok = engine.served(fields.model(body)).model.tokenizer
    assert tok is not None  # served models have one
    try:
        encodings = tok.tokenizer.encode_batch(texts, add_special_tokens=specials)
    except TypeError:  # a text that is not valid Unicode: the front end's check names it
        try:
            tok.encode(texts, truncation=True)
        except ValueError as e:
            m = re.match(r"input (\d+) ", str(e))
            raise TokenizationFailed(str(e), index=int(m.group(1)) if m else None).with_field(
                f"inputs[{m.group(1)}]" if m else "inputs") from None
        raise
    out = []
    for text, enc in zip(texts, encodings):
        tokens = []
        for tid, (start, stop), special, token in zip(enc.ids, enc.offsets, enc.special_tokens_mask, enc.tokens):
            if special:
                tokens.append({"id": tid, "text": token, "special": True, "start": None, "stop": None})
            else:
                tokens.append({"id": tid, "text": text[start:stop], "special": False, "start": start, "stop": stop})
        out.append(tokens)
    return out


def parse_root(body: Any, engine: Engine) -> Call:
    """TEI's root route, by the body's shape: `{"query", "texts"}` reranks, `{"inputs": {"source_sentence",
    ...}}` is a similarity, anything else the default model's main route (`/embed` for a bi-encoder,
    `/predict` for a head). TEI picks one of these per deployment; the shapes tell them apart."""
    if isinstance(body, dict) and "query" in body and "texts" in body:
        return parse_rerank(body, engine)
    if isinstance(body, dict) and isinstance(body.get("inputs"), dict):
        return parse_similarity(body, engine)
    model = engine.served(fields.model(body) if isinstance(body, dict) else None).model
    return (parse_embed if model.task.kind == "encoder" else parse_predict)(body, engine)


ROUTES: dict[str, Callable[[Any, Engine], Call]] = {
    "/embed": parse_embed,
    "/v1/embeddings": parse_openai_embeddings,
    "/similarity": parse_similarity,
    "/rerank": parse_rerank,
    "/predict": parse_predict,
    "/": parse_root,
}

