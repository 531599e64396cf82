"""Float-model parity: samp-jax vs Hugging Face PyTorch BertModel on real sentences.

    python bench/float_parity.py [--data-dir DIR] [--n 64] [--batch 16]

Runs all-MiniLM-L6-v2 (the embedded default) in fp32, bf16 and fp16 plans on SST-2 dev
sentences and prints max-abs and relative errors of the last hidden state (real tokens and
all positions) and the cosine similarity of sentence embeddings, against HF fp32.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from pathlib import Path

if not __package__:  # `python bench/NAME.py` puts bench/ first on the path, where its module names would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow installed ones: import `bench.*` instead

import numpy as np


@dataclasses.dataclass
class _Diff:
    """One plan's differences from Hugging Face, accumulated over the batches."""

    max_real: float = 0.0  # max |difference| over real tokens
    max_all: float = 0.0  # ... and over every position, padding included
    num: float = 0.0  # sum of squared differences over real tokens
    den: float = 0.0  # sum of squared reference values over real tokens
    cos: list[float] = dataclasses.field(default_factory=list)  # cosine of each sentence's embeddings


def main() -> None:
    from samp_jax.default_model import default_data_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(default_data_dir()), help="datasets (default: $SAMP_DATA, then ../shared/data)")
    ap.add_argument("--n", type=int, default=64, help="sentences from SST-2 dev")
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()

    import torch
    from transformers import AutoTokenizer, BertModel

    import samp_jax
    from samp_jax.default_model import default_model_dir

    path = Path(args.data_dir) / "sst2" / "dev.tsv"
    if not path.is_file():
        raise SystemExit(f"{path} not found: pass --data-dir (SST-2 dev is needed)")
    with path.open(encoding="utf-8") as f:
        sentences = [r["sentence"] for r in csv.DictReader(f, delimiter="\t")][: args.n]
    folder = default_model_dir()
    tok = AutoTokenizer.from_pretrained(folder)
    hf = BertModel.from_pretrained(folder, attn_implementation="eager").eval()
    models = {plan: samp_jax.load(folder, plan=plan) for plan in ("fp32", "bf16", "fp16")}
    stats = {plan: _Diff() for plan in models}
    for i in range(0, len(sentences), args.batch):
        b = tok(sentences[i : i + args.batch], padding=True, return_tensors="pt")
        with torch.no_grad():
            ref = hf(**b).last_hidden_state.numpy().astype(np.float64)
        mask = b["attention_mask"].numpy().astype(bool)
        pooled_ref = (ref * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        for plan, model in models.items():
            out = np.asarray(model(*(b[k].numpy() for k in ("input_ids", "attention_mask", "token_type_ids"))), np.float64)
            d = out - ref
            s = stats[plan]
            s.max_real = max(s.max_real, float(np.abs(d[mask]).max()))
            s.max_all = max(s.max_all, float(np.abs(d).max()))
            s.num += float((d[mask] ** 2).sum())
            s.den += float((ref[mask] ** 2).sum())
            pooled = (out * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
            cos = (pooled * pooled_ref).sum(-1) / np.linalg.norm(pooled, axis=-1) / np.linalg.norm(pooled_ref, axis=-1)
            s.cos.extend(cos.tolist())
    print(f"all-MiniLM-L6-v2 vs HF BertModel fp32, {len(sentences)} SST-2 dev sentences, batches of {args.batch}")
    print("| plan | max-abs (real tokens) | max-abs (all positions) | rel. Frobenius | min cosine of embeddings |")
    print("|---|---|---|---|---|")
    for plan, s in stats.items():
        print(f"| {plan} | {s.max_real:.2e} | {s.max_all:.2e} | {np.sqrt(s.num / s.den):.2e} | {min(s.cos):.6f} |")


if __name__ == "__main__":
    main()
