"""Quantization accuracy on real text: every mode on all layers x every calibrator.

    python bench/quant_accuracy.py [--data-dir DIR] [--calib 512] [--eval 872] [--out bench/results/quant_accuracy.json]

all-MiniLM-L6-v2 (the embedded default) is calibrated on SST-2 train sentences
and evaluated on SST-2 dev: the cosine similarity of each plan's sentence
embeddings to the fp32 model's, and for full_int8 the three treatments of the
softmax probabilities (naive symmetric int8 as in SAMP, uint8 over the whole
range, float). Prints a Markdown table; writes the raw numbers as JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if not __package__:  # `python bench/NAME.py` puts bench/ first on the path, where its module names would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow installed ones: import `bench.*` instead

import numpy as np

CALIBRATORS = [("max", None), ("percentile", 99.9), ("percentile", 99.99), ("percentile", 99.999),
               ("mse", None), ("entropy", None)]
PLANS = ["ffn_int8", "full_int8,probs:int8", "full_int8", "full_int8,probs:float", "ffn_fp8", "full_fp8"]


def main() -> None:
    from samp_jax.default_model import default_data_dir

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(default_data_dir()), help="datasets (default: $SAMP_DATA, then ../shared/data)")
    ap.add_argument("--calib", type=int, default=512, help="SST-2 train sentences for calibration")
    ap.add_argument("--eval", type=int, default=872, help="SST-2 dev sentences for evaluation")
    ap.add_argument("--out", default="bench/results/quant_accuracy.json")
    args = ap.parse_args()

    from convert import convert_hf_checkpoint
    from samp_jax.calibration import calibrate, read_texts
    from samp_jax.default_model import default_model_dir
    from samp_jax.model import SampModel

    sst2 = Path(args.data_dir) / "sst2"
    if not (sst2 / "train.tsv").is_file():
        raise SystemExit(f"SST-2 not found under {sst2}: pass --data-dir")
    calib_texts = read_texts(sst2 / "train.tsv", limit=args.calib)
    eval_texts = read_texts(sst2 / "dev.tsv", limit=args.eval)
    ckpt = convert_hf_checkpoint(default_model_dir())
    ref = SampModel(ckpt, "fp32").embed(eval_texts, batch_size=64, progress=False)
    records: list[dict[str, Any]] = []
    for method, pct in CALIBRATORS:
        t0 = time.perf_counter()
        ckpt.scales = calibrate(SampModel(ckpt, "fp32"), calib_texts, method, percentile=pct or 99.99, progress=False)
        label = ckpt.scales.method
        for plan in PLANS:
            emb = SampModel(ckpt, plan).embed(eval_texts, batch_size=64, progress=False)
            cos = np.sum(emb * ref, axis=-1)
            records.append({"calibrator": label, "plan": plan, "mean_cosine": float(cos.mean()),
                            "min_cosine": float(cos.min())})
        print(f"{label}: {time.perf_counter() - t0:.0f}s", flush=True)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    meta = {"date": datetime.date.today().isoformat(), "commit": commit, "model": "all-MiniLM-L6-v2",
            "calibration": f"SST-2 train, first {len(calib_texts)}", "evaluation": f"SST-2 dev, {len(eval_texts)}",
            "device": "cpu", "compute dtype": "fp16"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "records": records}, indent=1) + "\n")

    labels = [r["calibrator"] for r in records[:: len(PLANS)]]
    print(f"\nmean (min) cosine of sentence embeddings to fp32; {meta}\n")
    print("| plan (all layers) | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for plan in PLANS:
        cells = [next(r for r in records if r["plan"] == plan and r["calibrator"] == c) for c in labels]
        print(f"| `{plan}` | " + " | ".join(f"{r['mean_cosine']:.4f} ({r['min_cosine']:.3f})" for r in cells) + " |")


if __name__ == "__main__":
    main()
