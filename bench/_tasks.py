"""The real tasks of the accuracy study: where their splits are and how to read them.

One table so that `finetune.py` (training) and `accuracy.py` (the sweep) agree on
files, fields and label names. English rows have a pre-trained encoder on PyPI;
the Chinese rows (the SAMP paper's own CLUE tasks) run the day a Chinese encoder
is installable (`--model /path/to/hf-folder`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

from samp_jax.decoding import split_tag
from samp_jax.evaluation import DevSet, read_conll_sentences, read_dev_set


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    kind: str  # samp-jax's task: classification | matching | ner
    train: str | None  # paths under the data folder; None: no training split shipped
    eval: str  # the split the study reports (a labelled one nobody tuned on)
    text_field: str | None = None  # "a,b" for pairs; None for NER
    label_field: str = "label"
    max_length: int = 128
    language: str = "en"
    select: str | None = None  # a labelled split held out for choices (the calibrator); None: unused train rows


TASKS = {
    t.name: t
    for t in (
        Task("sst2", "classification", "sst2/train.tsv", "sst2/dev.tsv", "sentence", "label", 64),
        # MRPC's dev split is 408 pairs (1 point = 4 pairs); its labelled test split is 1,725.
        Task("mrpc", "matching", "mrpc/train.tsv", "mrpc/test.tsv", "#1 String,#2 String", "Quality", 128,
             select="mrpc/dev.tsv"),
        Task("conll2003", "ner", "conll2003/train.txt", "conll2003/test.txt", max_length=128,
             select="conll2003/dev.txt"),
        Task("tnews", "classification", "tnews/train.json", "tnews/dev.json", "sentence", "label", 64, "zh"),
        Task("afqmc", "matching", None, "afqmc/dev.json", "sentence1,sentence2", "label", 128, "zh"),
        Task(
            "iflytek",
            "classification",
            "fewclue/iflytek/train_few_all.json",
            "fewclue/iflytek/dev_few_all.json",
            "sentence",
            "label",
            256,
            "zh",
        ),
    )
}


def task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (set --data-dir or $SAMP_DATA)")
    if path.suffix == ".json":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def read_classification(t: Task, data_dir: Path, split: str) -> tuple[list, list[str]]:
    """Texts (or text pairs) and label strings of a classification or matching split."""
    if t.text_field is None:
        raise ValueError(f"task {t.name!r} ({t.kind}) has no text field: it is read as CoNLL, not as rows")
    rows = _rows(data_dir / split)
    fields = t.text_field.split(",")
    texts = [str(r[fields[0]]) if len(fields) == 1 else tuple(str(r[f]) for f in fields) for r in rows]
    return texts, [str(r[t.label_field]) for r in rows]


def read_conll_tags(path: Path) -> list[tuple[list[str], list[str]]]:
    """CoNLL sentences as (tokens, BIO tags); CoNLL-2003's IOB1 is converted to BIO."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (set --data-dir or $SAMP_DATA)")
    sentences = read_conll_sentences(path)
    out = []
    for tokens, tags in sentences:
        bio, prev = [], None
        for tag in tags:
            prefix, etype = split_tag(tag)
            if prefix == "O":
                bio.append("O")
            elif prefix == "B" or etype != prev:
                bio.append(f"B-{etype}")
            else:
                bio.append(f"I-{etype}")
            prev = etype
        out.append((tokens, bio))
    return out


def eval_set(t: Task, data_dir: Path, limit: int | None = None) -> DevSet:
    """The reported split as samp-jax's `DevSet` (what `samp-jax tune` evaluates)."""
    return read_dev_set(data_dir / t.eval, t.kind, text_field=t.text_field, label_field=t.label_field, limit=limit)


def selection_set(t: Task, data_dir: Path, finetune_record: dict, limit: int = 1000) -> DevSet | None:
    """Labelled examples for choosing among calibrators, disjoint from the reported split and the fine-tuning data.

    The task's `select` split where it has one; otherwise the training rows the
    fine-tune did not use (bench/finetune.py trains on the first `train_examples`
    of a permutation seeded by `seed`, both in its `finetune.json`). None when
    neither exists (no training split, or all of it was trained on).
    """
    if t.select is not None:
        return read_dev_set(data_dir / t.select, t.kind, text_field=t.text_field, label_field=t.label_field,
                            limit=limit)
    if t.train is None or t.kind == "ner" or "train_examples" not in finetune_record:
        return None
    import numpy as np

    texts, labels = read_classification(t, data_dir, t.train)
    order = np.random.default_rng(finetune_record["seed"]).permutation(len(texts))
    unused = order[finetune_record["train_examples"] :][:limit]
    if len(unused) == 0:
        return None
    return DevSet(t.kind, [texts[i] for i in unused], [labels[i] for i in unused])
