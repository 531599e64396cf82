"""One device, two paths: the data-parallel mesh (`devices=1`: a one-device `data` mesh, the forward pass in
`jax.shard_map`) against the plain path (no mesh), same plan, same shape, same process (issue 30: on one H100
the mesh path is at least 0.97x as fast as the plain one).

    python -m bench.mesh [--plans fp16,full_int8] [--shapes 1x128,32x128,128x128] [--rounds 7] [--out DIR]
    python -m bench.mesh --tiny          # CPU check: a 2-layer, 128-wide BERT, shapes 1x32 and 8x32

A random BERT-base (`transformers.BertModel`, as bench/latency.py) is converted with samp-jax's converter and
calibrated on random ids (speed does not depend on the scales' values). Per plan, two `SampModel`s are built
from the one checkpoint, `devices=None` and `devices=1`, both with the kernels (`kernels="auto"`). Per shape,
each compiles the forward pass of `--kind` (default `embed`: pooled and normalized, what serving and bulk
embedding run), their outputs are compared, and then `--rounds` rounds time both, the order alternating
(plain, mesh; mesh, plain; ...) so that drift in clocks or temperature falls on both. Each round times:

- `call`: one call on inputs already on the device in the executable's sharding, the host clock around the
  call and `block_until_ready` (bench/latency.py's wall time: dispatch counts), median of `--iterations`;
- `queued`: 20 calls queued back to back, per call (a server's stream: dispatch overlaps the device), median
  of 5;
- `host`: one call on numpy inputs, as `model(...)`, `embed` and the serving engine pass them (the copy to
  the device and, for the mesh, the placement by rows included), median of `--iterations`.

A path's figure is the median over rounds; `speed` is plain ms / mesh ms (>= 0.97 meets the target), with the
lowest and highest per-round ratios beside it. Records (command, commit, device, date in each) go to
DIR/mesh.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

if not __package__:  # `python bench/NAME.py` puts bench/ first on the path, where its module names would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow installed ones: import `bench.*` instead

import jax
import numpy as np

from bench._timing import commit, device_name, pipelined_ms, today, wall_ms, write_records

TARGET = 0.97  # the mesh path's speed as a fraction of the plain path's (issue 30)
PATHS = ("plain", "mesh")
TIMINGS = ("call", "queued", "host")


def random_ids(batch: int, seq: int, seed: int = 0, vocab: int = 30522) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, vocab, (batch, seq)).astype(np.int32)
    return ids, np.ones_like(ids), np.zeros_like(ids)


def random_bert(folder: Path, tiny: bool) -> None:
    """A random `BertModel` saved as a Hugging Face folder: BERT-base, or a 2-layer, 128-wide one."""
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = (transformers.BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
           if tiny else transformers.BertConfig())  # BERT-base: 12 layers, hidden 768, 12 heads, FFN 3072
    transformers.BertModel(cfg).eval().save_pretrained(folder)


def build(folder: Path, plans: list[str]) -> dict:
    """{plan: {"plain": SampModel, "mesh": SampModel}} from one converted, calibrated checkpoint."""
    from convert import convert_hf_checkpoint
    from samp_jax.calibration import calibrate_batches
    from samp_jax.model import SampModel

    ckpt = convert_hf_checkpoint(folder)
    fp32 = SampModel(ckpt, "fp32", kernels="xla")
    scales = calibrate_batches(fp32, [random_ids(8, 32, s) for s in range(2)], progress=False)
    ckpt = dataclasses.replace(ckpt, scales=scales)
    return {plan: {"plain": SampModel(ckpt, plan, kernels="auto"), "mesh": SampModel(ckpt, plan, kernels="auto", devices=1)}
            for plan in plans}


def on_device(model, arrays: tuple[np.ndarray, ...]) -> tuple[jax.Array, ...]:
    """The inputs placed as the model's executable takes them: split by rows over its mesh, or on the default
    device."""
    if model.parallel is None:
        return tuple(jax.device_put(a) for a in arrays)
    return tuple(jax.device_put(a, model.parallel.split) for a in arrays)


def bench_shape(models: dict, kind: str, batch: int, seq: int, rounds: int, iterations: int) -> dict:
    """{timing: {path: [ms per round]}}, plus the compile times and the outputs' largest difference."""
    host = random_ids(batch, seq, seed=batch * 1000 + seq)
    runs: dict[str, dict] = {}
    compile_s: dict[str, float] = {}
    outputs = {}
    for path in PATHS:
        model = models[path]
        t0 = time.perf_counter()
        forward = model.compiled(kind, batch, seq)
        compile_s[path] = round(time.perf_counter() - t0, 2)
        dev = on_device(model, host)
        outputs[path] = np.asarray(forward(*dev), np.float32)
        runs[path] = {"call": lambda f=forward, d=dev: f(*d), "host": lambda f=forward: f(*host)}
    diff = float(np.abs(outputs["plain"] - outputs["mesh"]).max())
    ms: dict[str, dict[str, list[float]]] = {t: {p: [] for p in PATHS} for t in TIMINGS}
    for r in range(rounds):
        for path in PATHS if r % 2 == 0 else PATHS[::-1]:
            ms["call"][path].append(wall_ms(runs[path]["call"], iterations))
            ms["queued"][path].append(pipelined_ms(runs[path]["call"]))
            ms["host"][path].append(wall_ms(runs[path]["host"], iterations))
    return {"ms": ms, "compile_s": compile_s, "max_abs_diff": diff}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plans", default="fp16,full_int8")
    ap.add_argument("--shapes", default="1x128,32x128,128x128", help="BxS, comma-separated")
    ap.add_argument("--kind", default="embed", choices=("embed", "hidden", "head"), help="the compiled output")
    ap.add_argument("--rounds", type=int, default=7, help="alternating rounds of both paths")
    ap.add_argument("--iterations", type=int, default=30, help="timed calls per round (call and host timings)")
    ap.add_argument("--tiny", action="store_true", help="CPU check: a 2-layer 128-wide BERT, shapes 1x32,8x32, "
                                                        "3 rounds of 5")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    if args.tiny:
        args.shapes = "1x32,8x32" if args.shapes == ap.get_default("shapes") else args.shapes
        args.rounds, args.iterations = min(args.rounds, 3), min(args.iterations, 5)
    plans = args.plans.split(",")
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    command = " ".join(["python", "-m", "bench.mesh", *(sys.argv[1:] if argv is None else argv)])
    meta = dict(device=device_name(), date=today(), commit=commit(), command=command, kind=args.kind,
                model="random bert 2x128" if args.tiny else "random bert-base", rounds=args.rounds)
    print(f"device: {meta['device']}, {len(jax.devices())} device(s), commit {meta['commit']}, {meta['date']}", flush=True)
    records: list[dict] = []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        random_bert(Path(tmp), args.tiny)
        built = build(Path(tmp), plans)
        print(f"converted, calibrated and built {len(plans)} plan(s) x 2 paths in {time.perf_counter() - t0:.1f} s",
              flush=True)
        for plan in plans:
            for batch, seq in shapes:
                try:
                    res = bench_shape(built[plan], args.kind, batch, seq, args.rounds, args.iterations)
                except Exception as e:  # reported; the other shapes and plans still run
                    print(f"  {plan} {batch}x{seq} FAILED: {type(e).__name__}: {str(e)[:300]}", flush=True)
                    continue
                for timing in TIMINGS:
                    per = res["ms"][timing]
                    plain, mesh = (float(statistics.median(per[p])) for p in PATHS)
                    ratios = [a / b for a, b in zip(per["plain"], per["mesh"])]
                    records.append(dict(implementation="mesh vs plain", mode=plan, batch=batch, seq=seq, timing=timing,
                                        plain_ms=round(plain, 4), mesh_ms=round(mesh, 4), speed=round(plain / mesh, 4),
                                        round_speeds=[round(x, 4) for x in ratios], plain_ms_rounds=per["plain"],
                                        mesh_ms_rounds=per["mesh"], compile_s=res["compile_s"],
                                        max_abs_diff=res["max_abs_diff"], **meta))
                    rows.append((plan, f"{batch}x{seq}", timing, plain, mesh, plain / mesh, min(ratios), max(ratios)))
                    print(f"  {plan:<10} {batch:>4}x{seq:<4} {timing:<7} plain {plain:8.3f} ms  mesh {mesh:8.3f} ms  "
                          f"speed {plain / mesh:5.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f})  "
                          f"max |diff| {res['max_abs_diff']:.1e}  compile {res['compile_s']}", flush=True)
                write_records(records, args.out / "mesh.json")
    write_records(records, args.out / "mesh.json")
    print(f"\nmesh (devices=1) against plain, {args.kind}, median of {args.rounds} alternating rounds; "
          f"speed = plain ms / mesh ms, target >= {TARGET}")
    print(f"{'plan':<11}{'B x S':<9}{'timing':<8}{'plain ms':>10}{'mesh ms':>10}{'speed':>8}{'rounds':>15}")
    for plan, shape, timing, plain, mesh, speed, lo, hi in rows:
        flag = "" if speed >= TARGET else "  < target"
        print(f"{plan:<11}{shape:<9}{timing:<8}{plain:10.3f}{mesh:10.3f}{speed:8.3f}{f'{lo:.3f}-{hi:.3f}':>15}{flag}")
    print(f"records: {args.out / 'mesh.json'}")


if __name__ == "__main__":
    main()
