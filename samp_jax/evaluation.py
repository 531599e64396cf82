"""Labelled dev sets and task metrics: accuracy, binary F1 (matching), entity F1 (NER)."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samp_jax.decoding import split_tag
from samp_jax.texts import json_line_rows, read_text_file

TASK_METRICS = {"classification": "accuracy", "matching": "f1", "ner": "entity_f1"}
_DEFAULT_FIELDS = {"classification": "sentence", "matching": "sentence1,sentence2"}


@dataclasses.dataclass
class DevSet:
    """Inputs and gold labels; for NER, `labels` holds each sentence's gold spans (type, start, end)."""

    task: str
    inputs: list
    labels: list

    def __len__(self) -> int:
        return len(self.inputs)


def _check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit={limit!r}: --limit is the number of dev examples to use, an integer >= 1")


def read_dev_set(path: str | Path, task: str, *, text_field: str | None = None, label_field: str = "label",
                 limit: int | None = None) -> DevSet:
    """Reads TSV/CSV (header row) or JSONL for classification and matching, CoNLL for NER.

    `text_field` names the text column(s) ("a,b" for pairs; MRPC: "#1 String,#2 String").
    Files are UTF-8 (a byte-order mark is allowed); errors name the file, and the line where there is one.
    """
    if task not in TASK_METRICS:
        raise ValueError(f"unknown task {task!r}; known: {sorted(TASK_METRICS)}")
    _check_limit(limit)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dev set {path} not found")
    if task == "ner":
        return _read_conll(path, limit)
    fields = (text_field or _DEFAULT_FIELDS[task]).split(",")
    text = read_text_file(path, "dev set")
    if not text.strip():
        raise ValueError(f"dev set {path} is empty")
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = json_line_rows(path, text)
    else:
        delim = "\t" if path.suffix.lower() != ".csv" else ","
        rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delim, quoting=csv.QUOTE_NONE))
    rows = rows[:limit]
    if not rows:
        raise ValueError(f"{path} holds no examples")
    for n, row in enumerate(rows):
        missing = [f for f in (*fields, label_field) if f not in row]
        if missing:
            raise ValueError(f"{path} row {n} lacks field(s) {missing}; it has {sorted(row)}")
    inputs = [str(r[fields[0]]) if len(fields) == 1 else tuple(str(r[f]) for f in fields) for r in rows]
    if task == "matching" and len(fields) != 2:
        raise ValueError(f"matching needs two text fields, got {fields}")
    return DevSet(task, inputs, [str(r[label_field]) for r in rows])


def read_conll_sentences(path: Path) -> list[tuple[list[str], list[str]]]:
    """CoNLL: `token ... tag` per line, blank line between sentences, -DOCSTART- dropped -> (tokens, tags).

    The file is UTF-8; a decode error names the file and line.
    """
    path = Path(path)
    sentences: list[tuple[list[str], list[str]]] = []
    tokens: list[str] = []
    tags: list[str] = []
    for line in read_text_file(path, "dev set").splitlines() + [""]:
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if tokens:
                sentences.append((tokens, tags))
            tokens, tags = [], []
            continue
        tokens.append(parts[0])
        tags.append(parts[-1])
    return sentences


def _read_conll(path: Path, limit: int | None) -> DevSet:
    """CoNLL sentences as a DevSet.

    The text is the tokens joined by spaces; gold spans are character offsets
    into it, decoded from IOB1 or BIO tags alike.
    """
    sentences = read_conll_sentences(path)
    inputs, labels = [], []
    for tokens, tags in sentences[:limit]:
        text, offsets, pos = " ".join(tokens), [], 0
        for token in tokens:
            offsets.append((pos, pos + len(token)))
            pos += len(token) + 1
        spans, start, etype = [], None, None
        for i, tag in enumerate(tags + ["O"]):
            prefix, t = split_tag(tag)
            if start is not None and (prefix in ("O", "B", "S") or t != etype):
                spans.append((etype, offsets[start][0], offsets[i - 1][1]))
                start = None
            if prefix != "O" and start is None:
                start, etype = i, t
        inputs.append(text)
        labels.append(spans)
    if not inputs:
        raise ValueError(f"{path} holds no sentences")
    return DevSet("ner", inputs, labels)


def label_indices(gold: Sequence[str], model_labels: Sequence[str]) -> np.ndarray:
    """Gold label strings -> the model's label indices (by name, else as an integer index)."""
    index = {name: i for i, name in enumerate(model_labels)}
    out = []
    for g in gold:
        if g in index:
            out.append(index[g])
        elif g.lstrip("-").isdigit() and 0 <= int(g) < len(model_labels):
            out.append(int(g))
        else:
            raise ValueError(f"gold label {g!r} is neither one of the model's labels {list(model_labels)} "
                             "nor an index into them")
    return np.asarray(out)


def f1_binary(pred: np.ndarray, gold: np.ndarray, positive: int = 1) -> float:
    tp = int(np.sum((pred == positive) & (gold == positive)))
    fp = int(np.sum((pred == positive) & (gold != positive)))
    fn = int(np.sum((pred != positive) & (gold == positive)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def entity_f1(pred: Sequence[Sequence[tuple]], gold: Sequence[Sequence[tuple]]) -> float:
    """Exact-match entity F1 over (type, start, end) spans (CoNLL's measure)."""
    tp = sum(len(set(p) & set(g)) for p, g in zip(pred, gold))
    n_pred, n_gold = sum(len(set(p)) for p in pred), sum(len(set(g)) for g in gold)
    return 0.0 if tp == 0 else 2 * tp / (n_pred + n_gold)


# which model kinds (`TaskSpec.kind`) each dev-set task evaluates
TASK_MODELS = {
    "classification": ("sequence_classification",),
    "matching": ("sequence_classification", "encoder"),  # cross-encoder, or bi-encoder by cosine similarity
    "ner": ("token_classification",),
}
_HF_HEAD = {"classification": "*ForSequenceClassification", "matching": "*ForSequenceClassification",
            "ner": "*ForTokenClassification"}


def check_model_task(task: str, kind: str, source: object = "the model") -> None:
    """Raises ValueError, saying how to get a fitting model, unless a `kind` model can be evaluated on `task`."""
    if task not in TASK_MODELS:
        raise ValueError(f"unknown task {task!r}; known: {sorted(TASK_MODELS)}")
    if kind in TASK_MODELS[task]:
        return
    what = "a bare encoder (no task head)" if kind == "encoder" else f"a {kind!r} model"
    msg = (f"task {task!r} needs a {' or '.join(TASK_MODELS[task])} model, and {source} is {what}: fine-tune a "
           f"{_HF_HEAD[task]} checkpoint and convert it with `samp-jax convert`")
    if kind == "encoder":
        msg += "; a bare encoder is evaluated on --task matching (cosine similarity of each pair's embeddings)"
    raise ValueError(msg)


def pair_labels(gold: Sequence[str]) -> np.ndarray:
    """A bi-encoder's matching labels: "1" (the pair matches) or "0"."""
    for n, g in enumerate(gold):
        if g not in ("0", "1"):
            raise ValueError(f"dev label {n} is {g!r}: a bi-encoder's matching labels are 0 or 1 (1: the pair matches)")
    return np.asarray([int(g) for g in gold])


def best_threshold(scores: np.ndarray, gold: np.ndarray) -> float:
    """The threshold t for which `scores >= t` has the highest binary F1 against `gold` (positive class 1).

    Candidates: the midpoints between consecutive distinct scores, and one value below the lowest and
    one above the highest score. Ties go to the higher accuracy, then to the lower threshold.
    """
    s = np.asarray(scores, np.float64)
    gold = np.asarray(gold)
    u = np.unique(s)
    cands = np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2, [u[-1] + 1.0]])
    order = np.argsort(s, kind="stable")
    pos_below = np.concatenate([[0], np.cumsum(gold[order] == 1)])  # positives among the i lowest scores
    below = np.searchsorted(s[order], cands, side="left")  # scores < t: predicted negative
    n, p = len(s), int(np.sum(gold == 1))
    tp = p - pos_below[below]
    pred_pos = n - below
    f1 = np.where(tp > 0, 2 * tp / np.maximum(pred_pos + p, 1), 0.0)
    acc = (tp + (below - pos_below[below])) / n
    best = np.lexsort((cands, -acc, -f1))[0]
    return float(cands[best])


def evaluate(model, dev: DevSet, *, batch_size: int = 128, threshold: float | None = None) -> dict[str, float]:
    """Runs the model on the dev set; returns the task's metrics (the first is the headline).

    A bi-encoder (task kind "encoder") is evaluated on matching: a pair matches when the cosine
    similarity of its embeddings is >= `threshold`; with None, the F1-maximising threshold on this
    dev set (`best_threshold`). Its metrics include the threshold used.

    Large batches keep the number of distinct (batch, seq) shapes, and so of
    compilations per plan, small: compiling dominates a dev set of ~1k examples.
    """
    kind = model.task.kind
    check_model_task(dev.task, kind, model.source)
    if threshold is not None and kind != "encoder":
        raise ValueError(f"threshold={threshold!r} applies to a bi-encoder's matching, this model is {kind!r}")
    if dev.task == "ner":
        preds = model.predict(dev.inputs, batch_size=batch_size, truncation=True, progress=False)
        spans = [[(s["entity"], s["start"], s["end"]) for s in p] for p in preds]
        return {"entity_f1": entity_f1(spans, dev.labels)}
    if kind == "encoder":
        gold = pair_labels(dev.labels)
        sims = model.similarity(dev.inputs, batch_size=batch_size, truncation=True, progress=False)
        t = best_threshold(sims, gold) if threshold is None else float(threshold)
        pred = (np.asarray(sims, np.float64) >= t).astype(int)
        return {"f1": f1_binary(pred, gold), "accuracy": float(np.mean(pred == gold)), "threshold": t}
    gold = label_indices(dev.labels, model.task.labels)
    preds = model.predict(dev.inputs, batch_size=batch_size, truncation=True, progress=False)
    pred = np.asarray([model.task.labels.index(p["label"]) for p in preds])
    acc = float(np.mean(pred == gold))
    if dev.task == "matching":
        return {"f1": f1_binary(pred, gold), "accuracy": acc}
    return {"accuracy": acc}


def headline(task: str, metrics: dict[str, Any]) -> float:
    return float(metrics[TASK_METRICS[task]])
