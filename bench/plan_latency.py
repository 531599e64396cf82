"""GPU latency of every plan the accuracy study sweeps: each mode family on 0..L layers (GPU machine).

    python bench/plan_latency.py --arch minilm [--batch 32] [--seq 128] [--out bench/results/plan_latency_minilm.json]

Latency depends on how many layers run in each mode, not on the weights or on
which layers they are, so a random model of the fine-tuned encoder's shape
stands in (a sequence-classification head, as served). Each plan runs with the
Pallas kernels (`kernels="auto"`), timed as in bench/latency.py (host clock
around one call, median of 30). `bench/accuracy.py --latency-json` reads the
records, keyed by the plan's mode counts.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

if not __package__:  # `python bench/NAME.py` puts bench/ first on the path, where its module names would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow installed ones: import `bench.*` instead

from bench._timing import commit, device_name, today, wall_ms, write_records
from bench.accuracy import FAMILY_ORDER, modes_key
from bench.latency import random_ids

ARCHS = {  # the PyPI encoders' shapes (bench/_models.py)
    "minilm": ("BertForSequenceClassification", dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                                                    intermediate_size=1536)),
    "mpnet": ("MPNetForSequenceClassification", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                                    intermediate_size=3072)),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), default="minilm")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--cache", help="persistent compilation cache folder")
    ap.add_argument("--counts", help="quantized-layer counts to time, e.g. 6,12 (default 1..L; "
                    "bench/accuracy.py interpolates the others: latency is linear in the count)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    out = args.out or Path(__file__).parent / "results" / f"plan_latency_{args.arch}.json"

    import jax
    import torch
    import transformers

    from convert import convert_hf_checkpoint
    from samp_jax.calibration import calibrate_batches
    from samp_jax.model import SampModel
    from samp_jax.plan import Plan

    if args.cache:
        jax.config.update("jax_compilation_cache_dir", args.cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    arch, shape = ARCHS[args.arch]
    torch.manual_seed(0)
    cfg_cls = transformers.MPNetConfig if args.arch == "mpnet" else transformers.BertConfig
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        getattr(transformers, arch)(cfg_cls(num_labels=2, **shape)).eval().save_pretrained(tmp)
        ckpt = convert_hf_checkpoint(Path(tmp))
        fp32 = SampModel(ckpt, "fp32", kernels="xla")
        ckpt = dataclasses.replace(ckpt, scales=calibrate_batches(fp32, [random_ids(8, 128, 1)], progress=False))
        n = shape["num_hidden_layers"]
        ids, mask, types = random_ids(args.batch, args.seq)
        counts = [int(c) for c in args.counts.split(",")] if args.counts else range(1, n + 1)
        bad = [c for c in counts if not 1 <= c <= n]
        if bad:
            raise SystemExit(f"--counts {bad}: a {args.arch} model has 1..{n} layers to quantize")
        plans = [("fp16", 0)] + [(f, k) for f in FAMILY_ORDER for k in counts]
        print(f"device: {device_name()}, commit {commit()}, {today()}, {len(plans)} plans", flush=True)
        for family, k in plans:
            layers = [family] * k + ["fp16"] * (n - k)
            try:
                model = SampModel(ckpt, Plan(tuple(layers)), kernels="auto")
                forward = model.compiled("head", args.batch, args.seq)
                ms = wall_ms(lambda forward=forward: forward(ids, mask, types))
            except Exception as e:  # recorded and reported; the other plans still run
                print(f"  {family} {k}/{n} FAILED: {type(e).__name__}: {str(e)[:300]}", flush=True)
                continue
            records.append(dict(implementation="samp-jax kernels", arch=args.arch, plan=Plan(tuple(layers)).to_string(),
                                modes=modes_key(layers), batch=args.batch, seq=args.seq, median_ms=round(ms, 4),
                                device=device_name(), date=today(), commit=commit()))
            print(f"  {family:<10} {k:>2}/{n}  {ms:8.3f} ms", flush=True)
            write_records(records, out)


if __name__ == "__main__":
    main()
