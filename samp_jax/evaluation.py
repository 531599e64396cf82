"""Labelled dev sets and task metrics: accuracy, binary F1 (matching), entity F1 (NER)."""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samp_jax.decoding import split_tag

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


def read_dev_set(path: str | Path, task: str, *, text_field: str | None = None, label_field: str = "label",
                 limit: int | None = None) -> DevSet:
    """Reads TSV/CSV (header row) or JSONL for classification and matching, CoNLL for NER.

    `text_field` names the text column(s) ("a,b" for pairs; MRPC: "#1 String,#2 String").
    """
    if task not in TASK_METRICS:
        raise ValueError(f"unknown task {task!r}; known: {sorted(TASK_METRICS)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dev set {path} not found")
    if task == "ner":
        return _read_conll(path, limit)
    fields = (text_field or _DEFAULT_FIELDS[task]).split(",")
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        with path.open(encoding="utf-8-sig", newline="") as f:
            delim = "\t" if path.suffix.lower() != ".csv" else ","
            rows = list(csv.DictReader(f, delimiter=delim, quoting=csv.QUOTE_NONE))
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
    """CoNLL: `token ... tag` per line, blank line between sentences, -DOCSTART- dropped -> (tokens, tags)."""
    sentences, tokens, tags = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
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
        for t in tokens:
            offsets.append((pos, pos + len(t)))
            pos += len(t) + 1
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


def evaluate(model, dev: DevSet, *, batch_size: int = 128) -> dict[str, float]:
    """Runs the model on the dev set; returns the task's metrics (the first is the headline).

    Large batches keep the number of distinct (batch, seq) shapes, and so of
    compilations per plan, small: compiling dominates a dev set of ~1k examples.
    """
    kind = model.task.kind
    if dev.task == "ner":
        if kind != "token_classification":
            raise ValueError(f"task 'ner' needs a token-classification model, this one is {kind!r}")
        preds = model.predict(dev.inputs, batch_size=batch_size, truncation=True, progress=False)
        spans = [[(s["entity"], s["start"], s["end"]) for s in p] for p in preds]
        return {"entity_f1": entity_f1(spans, dev.labels)}
    if kind != "sequence_classification":
        raise ValueError(f"task {dev.task!r} needs a sequence-classification model, this one is {kind!r}")
    gold = label_indices(dev.labels, model.task.labels)
    preds = model.predict(dev.inputs, batch_size=batch_size, truncation=True, progress=False)
    pred = np.asarray([model.task.labels.index(p["label"]) for p in preds])
    acc = float(np.mean(pred == gold))
    if dev.task == "matching":
        return {"f1": f1_binary(pred, gold), "accuracy": acc}
    return {"accuracy": acc}


def headline(task: str, metrics: dict[str, Any]) -> float:
    return float(metrics[TASK_METRICS[task]])
