"""Packed against padded-bucketed batches: real tokens per second on real length distributions (issue 27).

    python -m bench.packing [--plans fp16,full_int8] [--sets sst2,mrpc,conll,uniform] [--tokens 16384]
                            [--data-dir DIR] [--tokenizer FOLDER] [--lengths FILE] [--out DIR] [--tiny]
    python -m bench.packing --write-lengths FILE          # the token counts alone (CPU), for a GPU run without data

The load: the token counts of SST-2 dev sentences, MRPC test pairs and CoNLL-2003 test sentences under the
all-MiniLM-L6-v2 tokenizer (BERT's uncased vocabulary), in file order (what a server sees), cut into batches of
consecutive sequences up to `--tokens` real tokens each; and `uniform`, 128 sequences of 128 tokens (packing
has nothing to remove there: it should cost nothing). Ids are random (speed does not depend on them).

Per batch, two layouts of the same sequences run the model's compiled `embed` forward (pooled per sequence):
- padded: calls of 128 sequences (the largest batch bucket), each padded to the sequence bucket of its longest
  (`SampModel`'s direct-call buckets, what `embed`/`predict` and the serving engine pad to);
- packed: one call, `SampModel.pack` (rows of 128 or the longest's bucket, first fit; rows a multiple of 16).
A random BERT-base (12 layers, hidden 768) converted with samp-jax's converter, calibrated on random ids, the
kernels on (`kernels="auto"`). Every executable is compiled and the inputs put on the device before timing; a
pass runs every batch of a set back to back and waits once; passes alternate padded and packed, `--passes`
each, and the median pass gives tokens/s = the set's real tokens / its time. `fill` is real tokens over
computed tokens. Records (command, commit, device, date) go to DIR/packing.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # `python bench/NAME.py` puts bench/ first on the path, where its module names would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow installed ones: import `bench.*` instead

import numpy as np

from bench._timing import commit, device_name, today, write_records
from samp_jax.fileio import atomic_write_text

SETS = ("sst2", "mrpc", "conll", "uniform")
PADDED_ROWS = 128  # sequences a padded call: the largest batch bucket (issue 27's fill table pads batches of 128)
TARGET = {"sst2": 1.5, "mrpc": 1.5, "conll": 1.5, "uniform": 0.97}  # packed / padded tokens per second


def data_dir_default() -> Path:
    import os

    return Path(os.environ.get("SAMP_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def token_lengths(data_dir: Path, tokenizer_dir: Path | None) -> dict[str, list[int]]:
    """Token counts per set, in file order, special tokens included, no truncation."""
    from tokenizers import Tokenizer

    from bench._tasks import read_classification, read_conll_tags, task
    from samp_jax.default_model import default_model_dir

    tok = Tokenizer.from_file(str((tokenizer_dir or default_model_dir()) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    sst2, _ = read_classification(task("sst2"), data_dir, "sst2/dev.tsv")
    mrpc, _ = read_classification(task("mrpc"), data_dir, "mrpc/test.tsv")
    conll = [words for words, _ in read_conll_tags(data_dir / "conll2003" / "test.txt")]
    return {
        "sst2": [len(e.ids) for e in tok.encode_batch(sst2)],
        "mrpc": [len(e.ids) for e in tok.encode_batch([tuple(p) for p in mrpc])],
        "conll": [len(e.ids) for e in tok.encode_batch(conll, is_pretokenized=True)],
    }


def batches(lengths: list[int], budget: int, cap: int) -> list[list[int]]:
    """Consecutive sequences (each cut to `cap` tokens) up to `budget` real tokens a batch."""
    out: list[list[int]] = [[]]
    for n in lengths:
        n = min(n, cap)
        if out[-1] and sum(out[-1]) + n > budget:
            out.append([])
        out[-1].append(n)
    return out


def padded(model, ids: list[list[int]]) -> tuple[np.ndarray, ...]:
    """(ids, mask, types) in the model's direct-call buckets (batch padding rows hold one token)."""
    rows, seq = model._bucket_shape(len(ids), max(len(x) for x in ids))
    pid = np.zeros((rows, seq), np.int32)
    mask = np.zeros_like(pid)
    mask[len(ids):, 0] = 1
    for i, x in enumerate(ids):
        pid[i, : len(x)], mask[i, : len(x)] = x, 1
    return pid, mask, np.zeros_like(pid)


def layouts(model, batch_lengths: list[int], rng: np.random.Generator) -> tuple[list[tuple], list[tuple]]:
    """One batch's calls, padded (128 sequences a call, the largest batch bucket, each padded to its own
    longest's bucket) and packed (one call)."""
    ids = [rng.integers(1000, 30000, n).tolist() for n in batch_lengths]
    packed = model.pack(ids)
    return ([padded(model, ids[i : i + PADDED_ROWS]) for i in range(0, len(ids), PADDED_ROWS)],
            [(packed.input_ids, packed.segment_ids, packed.token_type_ids)])


def run_set(model, name: str, lengths: list[int], budget: int, passes: int) -> dict:
    import jax

    rng = np.random.default_rng(0)
    work = [layouts(model, b, rng) for b in batches(lengths, budget, model.config.max_seq_len)]
    calls: dict[str, list] = {"padded": [], "packed": []}
    for pad_calls, pack_calls in work:
        for layout, arg_list, is_packed in (("padded", pad_calls, False), ("packed", pack_calls, True)):
            for args in arg_list:
                fn = model.compiled("embed", *args[0].shape, packed=is_packed)
                dev = jax.device_put(args)
                jax.block_until_ready(fn(*dev))  # compiled and warm
                calls[layout].append((fn, dev))
    times: dict[str, list[float]] = {"padded": [], "packed": []}
    for p in range(passes):
        for layout in (("padded", "packed") if p % 2 == 0 else ("packed", "padded")):
            t0 = time.perf_counter()
            jax.block_until_ready([fn(*dev) for fn, dev in calls[layout]])
            times[layout].append(time.perf_counter() - t0)
    real = sum(min(n, model.config.max_seq_len) for n in lengths)
    rec = {"set": name, "sequences": len(lengths), "real_tokens": real, "batches": len(work),
           "mean_tokens": float(np.mean(lengths)), "max_tokens": int(max(lengths))}
    for layout in ("padded", "packed"):
        computed = sum(dev[0].size for _, dev in calls[layout])
        sec = statistics.median(times[layout])
        rec[layout] = {"ms": sec * 1e3, "tokens_per_s": real / sec, "fill": real / computed,
                       "shapes": sorted({tuple(int(d) for d in c[1][0].shape) for c in calls[layout]})}
    rec["speedup"] = rec["packed"]["tokens_per_s"] / rec["padded"]["tokens_per_s"]
    rec["target"] = TARGET[name]
    return rec


def build(plans: list[str], tiny: bool) -> dict:
    import torch
    import transformers

    from bench.mesh import random_ids
    from convert import convert_hf_checkpoint
    from samp_jax.calibration import calibrate_batches
    from samp_jax.model import SampModel

    folder = Path(tempfile.mkdtemp()) / "bert"
    torch.manual_seed(0)
    cfg = (transformers.BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
           if tiny else transformers.BertConfig())
    transformers.BertModel(cfg).eval().save_pretrained(folder)
    ckpt = convert_hf_checkpoint(folder)
    scales = calibrate_batches(SampModel(ckpt, "fp32", kernels="xla"), [random_ids(8, 32, s) for s in range(2)],
                               progress=False)
    ckpt = dataclasses.replace(ckpt, scales=scales)
    return {plan: SampModel(ckpt, plan, kernels="auto") for plan in plans}


def breakdown(model, plan: str, rows: int = 128, seq: int = 128, top: int = 10) -> None:
    """Device time of the padded and the packed embed programs on uniform full-length rows, split by kernel
    family (CUPTI), to show where the packed program's extra time goes."""
    from jax.experimental.mosaic.gpu import profiler

    from bench.latency import kernel_family

    ids = [np.random.default_rng(0).integers(1000, 30000, seq).tolist() for _ in range(rows)]
    packed = model.pack(ids)
    families: dict[str, dict[str, float]] = {}
    totals = {}
    for layout, args, is_packed in (("padded", padded(model, ids), False),
                                    ("packed", (packed.input_ids, packed.segment_ids, packed.token_type_ids), True)):
        forward = model.compiled("embed", *args[0].shape, packed=is_packed)
        _, kernels = profiler.measure(forward.executable, aggregate=False, iterations=5)(*forward.args(*args))
        totals[layout] = sum(ms for _, ms in kernels[-1])
        for name, ms in kernels[-1]:
            fam = families.setdefault(kernel_family(name), {})
            fam[layout] = fam.get(layout, 0.0) + ms
    print(f"breakdown {plan} uniform {rows}x{seq}: device padded {totals['padded']:.3f} ms, packed {totals['packed']:.3f} ms")
    diff = sorted(families.items(), key=lambda kv: -abs(kv[1].get("packed", 0) - kv[1].get("padded", 0)))
    for fam, t in diff[:top]:
        print(f"    {t.get('padded', 0):8.3f} {t.get('packed', 0):8.3f} ms  {fam}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--plans", default="fp16,full_int8")
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--tokens", type=int, default=16384, help="real tokens a batch (about)")
    ap.add_argument("--passes", type=int, default=7)
    ap.add_argument("--data-dir", type=Path, default=None, help="datasets (default: $SAMP_DATA, then ../shared/data)")
    ap.add_argument("--tokenizer", type=Path, help="a folder with tokenizer.json (default: the embedded MiniLM)")
    ap.add_argument("--lengths", type=Path, help="token counts written by --write-lengths (no data needed)")
    ap.add_argument("--write-lengths", type=Path, metavar="FILE", help="only count the tokens and write them")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--tiny", action="store_true", help="CPU check: a 2-layer, 128-wide BERT, 2 passes")
    ap.add_argument("--breakdown", action="store_true", help="GPU: only split uniform 128x128 device time by kernel")
    args = ap.parse_args()
    sets = args.sets.split(",")
    if unknown := [s for s in sets if s not in SETS]:
        raise SystemExit(f"--sets: unknown {unknown}; known: {SETS}")
    if args.lengths is not None:
        lengths = json.loads(args.lengths.read_text())
    elif any(s != "uniform" for s in sets):
        lengths = token_lengths(args.data_dir or data_dir_default(), args.tokenizer)
    else:
        lengths = {}
    if args.write_lengths is not None:
        atomic_write_text(args.write_lengths, json.dumps(lengths))
        print(f"wrote {args.write_lengths}: " + ", ".join(f"{k} {len(v)}" for k, v in lengths.items()))
        return
    lengths["uniform"] = [128] * 128
    models = build(args.plans.split(","), args.tiny)
    if args.breakdown:
        for plan, model in models.items():
            breakdown(model, plan)
        return
    records = []
    cmd = " ".join(sys.argv)
    print(f"{'plan':<11}{'set':<9}{'padded tok/s':>14}{'fill':>6}{'packed tok/s':>14}{'fill':>6}{'speedup':>9}{'target':>8}")
    for plan, model in models.items():
        for name in sets:
            rec = run_set(model, name, lengths[name], args.tokens, 2 if args.tiny else args.passes)
            rec.update(plan=plan, command=cmd, commit=commit(), device=device_name(), date=today(),
                       model="random BERT-base" if not args.tiny else "random 2-layer BERT, hidden 128")
            records.append(rec)
            pad, pk = rec["padded"], rec["packed"]
            print(f"{plan:<11}{name:<9}{pad['tokens_per_s']:>14,.0f}{pad['fill']:>6.2f}{pk['tokens_per_s']:>14,.0f}"
                  f"{pk['fill']:>6.2f}{rec['speedup']:>8.2f}x{rec['target']:>7.2f}x", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    write_records(records, args.out / "packing.json")


if __name__ == "__main__":
    main()
