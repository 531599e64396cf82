"""The BERT-base encoder in every plan against the plain-XLA bf16 encoder and PyTorch FP16 (GPU machine).

    python bench/latency.py [--batches 1,8,32,128] [--seqs 32,128,512] [--plans ...] [--compile-shapes 1x128,32x128]
                            [--out DIR] [--cache DIR] [--run LABEL]

A random BERT-base (`transformers.BertModel`, 12 layers, hidden 768) is
converted with samp-jax's own converter, calibrated on random ids (speed does
not depend on the scales' values) and compiled once per (plan, batch, seq).
Each samp-jax plan runs with the Pallas kernels ("kernels=auto"); the baseline
is the same encoder on the plain XLA path in bf16 ("kernels=xla"). PyTorch
runs Hugging Face's `BertModel` in fp16 with SDPA, eager and under
`torch.compile`. Latency is the median of the host clock around one call and
`block_until_ready` (PyTorch: CUDA events), so launch gaps count as they do in
serving; the ids are on the device before the clock starts, for both. Before
timing, each plan's kernel output is compared with its own XLA path on the GPU
at 8 x 128. Records go to DIR/latency.json; each samp-jax record also says how
long its executable took to build (`compile_s`; a `--cache` hit loads it).

The whole grid builds 72 executables (about 5 s each on the H100, since each
kernel is compiled once per executable) and runs `torch.compile` at each
shape in `--compile-shapes`: about 9 minutes, more than one 10-minute device
call holds with the start-up. Split it by `--seqs` over calls on one warm
machine with the same `--cache` and `--run` (session 8: `--seqs 128`, then
`--seqs 32,512 --no-check`), merge the records, and draw them with
`bench/plot_latency.py --run LABEL`.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # `python bench/NAME.py` puts bench/ first on the path, where its module names would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow installed ones: import `bench.*` instead

import jax
import numpy as np

from bench._timing import commit, device_name, pipelined_ms, time_torch, today, wall_ms, write_records

PLANS = ["fp16", "ffn_int8", "full_int8", "ffn_fp8", "full_fp8"]
RECORDS: list[dict] = []
RUN: list[str] = []  # --run: the label that ties records of one run split over several device calls


def record(implementation: str, plan: str, batch: int, seq: int, ms: float, **extra) -> None:
    RECORDS.append(
        dict(
            implementation=implementation,
            mode=plan,
            batch=batch,
            seq=seq,
            median_ms=round(ms, 4),
            device=device_name(),
            date=today(),
            commit=commit(),
            **({"run": RUN[0]} if RUN else {}),
            **extra,
        )
    )
    built = f"  (built in {extra['compile_s']} s)" if "compile_s" in extra else ""
    print(f"  {implementation:<26} {plan:<10} {batch:>4} x {seq:<4} {ms:9.3f} ms{built}", flush=True)


def random_ids(batch: int, seq: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 30000, (batch, seq)).astype(np.int32)
    return ids, np.ones_like(ids), np.zeros_like(ids)


def build_models(folder: Path, plans: list[str]):
    from convert import convert_hf_checkpoint
    from samp_jax.calibration import calibrate_batches
    from samp_jax.model import SampModel

    ckpt = convert_hf_checkpoint(folder)
    fp32 = SampModel(ckpt, "fp32", kernels="xla")
    scales = calibrate_batches(fp32, [random_ids(8, 128, s) for s in range(2)], progress=False)
    ckpt = dataclasses.replace(ckpt, scales=scales)
    models = {("xla", "bf16"): SampModel(ckpt, "bf16", kernels="xla")}
    for plan in plans:
        models[("kernels", plan)] = SampModel(ckpt, plan, kernels="auto")
    return ckpt, models


def check_against_xla(ckpt, models, plans) -> None:
    """Each plan's kernel output vs the same plan on the XLA path, on this GPU (relative Frobenius error).

    The scale that justifies the difference is the plan's own quantization
    error, measured beside it: the plan on the XLA path against fp32. A code
    that lands on the other side of a rounding tie (the kernels' float32 sums
    run in another order) moves one quantization step, so differences between
    two correct 8-bit paths are a fraction of that error, not of fp32 rounding.
    """
    from samp_jax.model import SampModel

    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))
    ids, mask, types = random_ids(8, 128, seed=7)
    fp32 = np.asarray(SampModel(ckpt, "fp32", kernels="xla").hidden_states(ids, mask, types), np.float64)
    for plan in plans:
        ours = np.asarray(models[("kernels", plan)].hidden_states(ids, mask, types), np.float64)
        xla = np.asarray(SampModel(ckpt, plan, kernels="xla").hidden_states(ids, mask, types), np.float64)
        err, quant = rel(ours, xla), rel(xla, fp32)
        RECORDS.append(
            dict(
                implementation="kernels vs xla",
                mode=plan,
                batch=8,
                seq=128,
                rel_err=err,
                plan_vs_fp32=quant,
                device=device_name(),
                date=today(),
                commit=commit(),
            )
        )
        print(f"  check {plan:<10} kernels vs XLA path: rel. error {err:.2e}; XLA path vs fp32: {quant:.2e}", flush=True)


def kernel_family(name: str) -> str:
    """A launched kernel's name without the numbering XLA adds (`loop_fusion_12` -> `loop_fusion`)."""
    return re.sub(r"([._]\d+)+$", "", name.split("(")[0])[:80]


def breakdown(models, batch: int, seq: int, top: int = 12) -> None:
    """Device time of each plan at one shape split by kernel (CUPTI), to show where the time goes."""
    from jax.experimental.mosaic.gpu import profiler

    ids, mask, types = random_ids(batch, seq)
    for (impl, plan), model in models.items():
        forward = model.compiled("hidden", batch, seq)
        _, kernels = profiler.measure(forward.executable, aggregate=False, iterations=5)(*forward.args(ids, mask, types))
        per_family: dict[str, list[float]] = {}
        for name, ms in kernels[-1]:
            per_family.setdefault(kernel_family(name), []).append(ms)
        total = sum(ms for _, ms in kernels[-1])
        families = sorted(((sum(v), len(v), k) for k, v in per_family.items()), reverse=True)
        RECORDS.append(
            dict(
                implementation="breakdown " + ("plain XLA" if impl == "xla" else "kernels"),
                mode=plan,
                batch=batch,
                seq=seq,
                device_ms=round(total, 4),
                launches=len(kernels[-1]),
                kernels=[dict(family=k, ms=round(t, 4), launches=n) for t, n, k in families],
                device=device_name(),
                date=today(),
                commit=commit(),
            )
        )
        print(f"  breakdown {impl} {plan} {batch}x{seq}: device {total:.3f} ms in {len(kernels[-1])} launches")
        for t, n, k in families[:top]:
            print(f"      {t:8.3f} ms {100 * t / total:5.1f}% {n:4d}x  {k}")


def bench_torch(folder: Path, shapes, compile_shapes) -> None:
    import torch
    import transformers

    model = transformers.BertModel.from_pretrained(folder, attn_implementation="sdpa", torch_dtype=torch.float16)
    model = model.cuda().eval()
    compiled = torch.compile(model, mode="reduce-overhead")
    with torch.inference_mode():
        for batch, seq in shapes:
            ids, mask, _ = (torch.from_numpy(a).cuda() for a in random_ids(batch, seq))
            record(
                "pytorch fp16 eager (sdpa)",
                "fp16",
                batch,
                seq,
                time_torch(lambda: model(input_ids=ids, attention_mask=mask), iterations=30),
            )
            if (batch, seq) in compile_shapes:
                ms = time_torch(lambda: compiled(input_ids=ids, attention_mask=mask), iterations=30, warmup=5)
                record("pytorch fp16 torch.compile", "fp16", batch, seq, ms)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,8,32,128")
    ap.add_argument("--seqs", default="32,128,512")
    ap.add_argument("--plans", default=",".join(PLANS),
                    help="comma-separated plans; separate by ';' where a plan has commas ('fp16;full_int8,smooth:0.9')")
    ap.add_argument(
        "--compile-shapes", default="1x128,32x128,128x128", help="shapes for torch.compile (each compiles for a while)"
    )
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--check-only", action="store_true", help="only compare each plan's kernels with its XLA path")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--pipelined", action="store_true", help="also time 20 calls queued back to back (throughput)")
    ap.add_argument("--breakdown", help="BxS: only split each plan's device time by kernel at that shape")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--cache", help="persistent compilation cache folder (a run split over calls compiles once)")
    ap.add_argument("--run", help="label every record with this run name (one run split over calls: same label)")
    args = ap.parse_args()
    RUN[:] = [args.run] if args.run else []
    if args.cache:
        jax.config.update("jax_compilation_cache_dir", args.cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    plans = args.plans.split(";" if ";" in args.plans else ",")
    shapes = [(int(b), int(s)) for s in args.seqs.split(",") for b in args.batches.split(",")]
    compile_shapes = {tuple(int(v) for v in c.split("x")) for c in args.compile_shapes.split(",") if c}
    print(f"device: {device_name()}, commit {commit()}, {today()}")

    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.BertConfig()  # BERT-base: 12 layers, hidden 768, 12 heads, FFN 3072
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        transformers.BertModel(cfg).eval().save_pretrained(folder)
        ckpt, models = build_models(folder, plans)
        if not args.no_check:
            try:
                check_against_xla(ckpt, models, plans)
            except Exception as e:
                print(f"  check FAILED: {type(e).__name__}: {str(e)[:300]}")
        if args.breakdown:
            b, s = (int(v) for v in args.breakdown.split("x"))
            breakdown(models, b, s)
            write_records(RECORDS, args.out / "breakdown.json")
            return
        if args.check_only:
            write_records(RECORDS, args.out / "latency_check.json")
            return
        for batch, seq in shapes:
            # on the device already, as PyTorch gets them: the timing is the encoder's, not the copy's
            ids, mask, types = jax.device_put(random_ids(batch, seq))
            for (impl, plan), model in models.items():
                try:
                    t0 = time.perf_counter()
                    forward = model.compiled("hidden", batch, seq)
                    compile_s = round(time.perf_counter() - t0, 1)  # a --cache hit loads it instead
                    run = lambda forward=forward: forward(ids, mask, types)
                    name = "samp-jax " + ("plain XLA" if impl == "xla" else "kernels")
                    record(name, plan, batch, seq, wall_ms(run), compile_s=compile_s)
                    if args.pipelined:
                        record(name + " (pipelined)", plan, batch, seq, pipelined_ms(run))
                except Exception as e:  # recorded and reported; the other plans still run
                    print(f"  {impl} {plan} {batch}x{seq} FAILED: {type(e).__name__}: {str(e)[:300]}")
                write_records(RECORDS, args.out / "latency.json")
        if not args.no_torch:
            bench_torch(folder, shapes, compile_shapes)
    write_records(RECORDS, args.out / "latency.json")
    summary(shapes, plans)


def summary(shapes, plans: list[str]) -> None:
    by = {(r["implementation"], r["mode"], r["batch"], r["seq"]): r["median_ms"] for r in RECORDS if "median_ms" in r}
    cols = (
        [("samp-jax plain XLA", "bf16")]
        + [("samp-jax kernels", p) for p in plans]
        + [("pytorch fp16 eager (sdpa)", "fp16"), ("pytorch fp16 torch.compile", "fp16")]
    )
    names = ["XLA bf16"] + plans + ["torch eager", "torch.compile"]
    print("\nlatency ms (ratio to plain-XLA bf16 | ratio of each quantized plan to our fp16)")
    print(f"{'B x S':<10}" + "".join(f"{n:>14}" for n in names))
    for b, s in shapes:
        base, fp16 = by.get(("samp-jax plain XLA", "bf16", b, s)), by.get(("samp-jax kernels", "fp16", b, s))
        cells = []
        for impl, plan in cols:
            v = by.get((impl, plan, b, s))
            if v is None:
                cells.append(f"{'-':>14}")
                continue
            ref = fp16 if plan != "fp16" and impl == "samp-jax kernels" else base
            cells.append(f" {v:7.3f} {ref / v if ref else 0:4.2f}x")
        print(f"{f'{b} x {s}':<10}" + "".join(cells))


if __name__ == "__main__":
    main()
