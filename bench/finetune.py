"""Fine-tunes a real pre-trained encoder on a real task (PyTorch + transformers), deterministically.

    python bench/finetune.py --model minilm --task sst2 [--train-limit N] [--epochs E] [--out DIR]

Models: `minilm` (all-MiniLM-L6-v2), `mpnet` (all-mpnet-base-v2) or a Hugging
Face folder. Tasks (bench/_tasks.py): sst2 (classification), mrpc (matching),
conll2003 (NER), and the Chinese tnews / iflytek for when a Chinese encoder is
installed. The result is a Hugging Face folder (`*ForSequenceClassification` or
`*ForTokenClassification` + tokenizer) that `samp-jax convert` takes, cached
under $SAMP_JAX_HOME/finetuned/<model>-<task> and never committed. The FP32
(PyTorch) metric on the task's reported split is written beside it as
`finetune.json`. Same seed, same data, same result (deterministic torch ops,
single-threaded data order).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

if not __package__:  # `python bench/NAME.py` puts bench/ first on the path, where its module names would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow installed ones: import `bench.*` instead

import numpy as np

from bench._models import MODELS, model_dir
from bench._tasks import TASKS, eval_set, read_classification, read_conll_tags, task

# Defaults per model size: the small model wants a larger step (as in the MiniLM paper's GLUE runs).
LEARNING_RATES = {"minilm": 1e-4, "mpnet": 3e-5}


def finetuned_dir(model: str, task_name: str) -> Path:
    from samp_jax.default_model import cache_dir

    return cache_dir() / "finetuned" / f"{Path(model).name}-{task_name}"


def _label_names(labels: list[str]) -> list[str]:
    names = sorted(set(labels))
    return sorted(names, key=int) if all(n.lstrip("-").isdigit() for n in names) else names


def encode_texts(tok, xs: list, max_length: int, **kw):
    """Padded, truncated PyTorch batch of texts or (text, text) pairs."""
    pair = isinstance(xs[0], tuple)
    return tok([a for a, _ in xs] if pair else xs, [b for _, b in xs] if pair else None, padding=True,
               truncation=True, max_length=max_length, return_tensors="pt", **kw)


def _ner_batch(tok, sentences, label_ids, max_length):
    """Tokenizes the space-joined text (as samp-jax does at inference) and labels each word's first sub-token.

    samp-jax tags a *pre-tokenizer* word by its first sub-token; a CoNLL token such
    as "U.S." is several such words, so its later words continue the entity (I-X).
    """
    texts, starts = [], []
    for tokens, _ in sentences:
        texts.append(" ".join(tokens))
        pos, st = 0, []
        for t in tokens:
            st.append(pos)
            pos += len(t) + 1
        starts.append(st)
    enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_offsets_mapping=True, return_tensors="pt")
    labels = np.full(enc["input_ids"].shape, -100, np.int64)
    for b, (_, tags) in enumerate(sentences):
        seen_words, seen_tokens = set(), set()
        for t, w in enumerate(enc.word_ids(b)):
            if w is None or w in seen_words:
                continue
            seen_words.add(w)
            char = int(enc["offset_mapping"][b, t, 0])
            k = int(np.searchsorted(starts[b], char, side="right")) - 1  # the CoNLL token holding this word
            tag = tags[k]
            if k in seen_tokens and tag.startswith("B-"):
                tag = "I-" + tag[2:]
            seen_tokens.add(k)
            labels[b, t] = label_ids[tag]
    enc.pop("offset_mapping")
    import torch

    return enc, torch.tensor(labels)


def main() -> None:
    from samp_jax.default_model import default_data_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm", help=f"one of {MODELS} or a Hugging Face folder")
    ap.add_argument("--task", choices=sorted(TASKS), default="sst2")
    ap.add_argument("--data-dir", default=str(default_data_dir()), help="datasets (default: $SAMP_DATA, then ../shared/data)")
    ap.add_argument("--train-limit", type=int, default=20000, help="first N of the seeded shuffle of the train split")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, help="default: 1e-4 for minilm, 3e-5 otherwise")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--device", default="auto", help="torch device: auto (cuda if present), cpu, cuda")
    ap.add_argument("--out", help="output folder (default: $SAMP_JAX_HOME/finetuned/<model>-<task>)")
    args = ap.parse_args()

    # cuBLAS is deterministic only with a fixed workspace; must be set before CUDA starts.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    t = task(args.task)
    if t.train is None:
        raise SystemExit(f"task {t.name!r} ships no training split in {args.data_dir}; evaluate a model fine-tuned elsewhere")
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(args.data_dir)
    src = model_dir(args.model)
    out = Path(args.out) if args.out else finetuned_dir(args.model, t.name)
    lr = args.lr or LEARNING_RATES.get(args.model, 3e-5)
    tok = AutoTokenizer.from_pretrained(src)

    train: list[tuple[Any, Any]]  # (tokens, tags) for NER, (text or pair, label) otherwise
    if t.kind == "ner":
        train = read_conll_tags(data / t.train)
        names = sorted({tag for _, tags in train for tag in tags}, key=lambda s: (s != "O", s[2:], s))
    else:
        tx, ty = read_classification(t, data, t.train)
        train = list(zip(tx, ty))
        names = _label_names(ty)
    ids = {n: i for i, n in enumerate(names)}
    auto = AutoModelForTokenClassification if t.kind == "ner" else AutoModelForSequenceClassification
    # fp32 whatever the stored dtype: transformers 5 would keep an fp16 checkpoint in fp16, where AdamW's
    # updates underflow and training diverges (measured: an fp16 copy of all-mpnet-base-v2 gave NaN).
    model = auto.from_pretrained(src, num_labels=len(names), id2label=dict(enumerate(names)), label2id=ids,
                                 dtype=torch.float32)
    model.to(device)

    def batch(items):
        if t.kind == "ner":
            return _ner_batch(tok, items, ids, t.max_length)
        enc = encode_texts(tok, [x for x, _ in items], t.max_length)
        return enc, torch.tensor([ids[y] for _, y in items])

    order = np.random.default_rng(args.seed).permutation(len(train))[: args.train_limit]
    train = [train[i] for i in order]
    steps = max(1, int(len(train) * args.epochs) // args.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, int(0.06 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, 1 - s / steps))
    model.train()
    t0 = time.time()
    for step in tqdm(range(steps), desc=f"fine-tune {Path(args.model).name} on {t.name}"):
        lo = (step * args.batch_size) % len(train)
        enc, labels = batch(train[lo : lo + args.batch_size])
        loss = model(**enc.to(device), labels=labels.to(device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
    train_s = time.time() - t0

    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    metrics = evaluate_torch(out, t, data, device)
    record = {
        "model": args.model,
        "task": t.name,
        "split": t.eval,
        "metrics": metrics,
        "train_examples": len(train),
        "epochs": args.epochs,
        "steps": steps,
        "batch_size": args.batch_size,
        "lr": lr,
        "seed": args.seed,
        "train_seconds": round(train_s, 1),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "init": str(src),
    }
    (out / "finetune.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record))


def evaluate_torch(folder: Path, t, data: Path, device="cpu") -> dict[str, float]:
    """The FP32 PyTorch metric on the reported split, scored by samp-jax's own metric code on the same spans."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    from samp_jax.decoding import decode_entities
    from samp_jax.evaluation import entity_f1, f1_binary, label_indices

    dev = eval_set(t, data)
    tok = AutoTokenizer.from_pretrained(folder)
    auto = AutoModelForTokenClassification if t.kind == "ner" else AutoModelForSequenceClassification
    model = auto.from_pretrained(folder, dtype=torch.float32).eval().to(device)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    preds = []
    with torch.no_grad():
        for lo in range(0, len(dev), 64):
            xs = dev.inputs[lo : lo + 64]
            enc = encode_texts(tok, xs, t.max_length, return_offsets_mapping=t.kind == "ner")
            offsets = enc.pop("offset_mapping", None)
            logits = model(**enc.to(device)).logits.float().cpu()
            if t.kind != "ner":
                preds.extend(logits.argmax(-1).tolist())
                continue
            probs = logits.softmax(-1).numpy()
            for b, text in enumerate(xs):
                first: dict[int, int] = {}
                spans: dict[int, tuple[int, int]] = {}
                for k, w in enumerate(enc.word_ids(b)):
                    if w is None:
                        continue
                    first.setdefault(w, k)
                    s, e = (int(v) for v in offsets[b, k])
                    lo_, hi_ = spans.get(w, (s, e))
                    spans[w] = (min(lo_, s), max(hi_, e))
                words = sorted(first)
                tags = [names[int(np.argmax(probs[b, first[w]]))] for w in words]
                scores = [float(np.max(probs[b, first[w]])) for w in words]
                found = decode_entities(tags, [spans[w] for w in words], scores, text)
                preds.append([(s.entity, s.start, s.end) for s in found])
    if t.kind == "ner":
        return {"entity_f1": entity_f1(preds, dev.labels)}
    gold = label_indices(dev.labels, names)
    pred = np.asarray(preds)
    acc = float(np.mean(pred == gold))
    return {"f1": f1_binary(pred, gold), "accuracy": acc} if t.kind == "matching" else {"accuracy": acc}


if __name__ == "__main__":
    main()
