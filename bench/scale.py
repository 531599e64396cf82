"""Data parallelism over the GPUs of one host (issue 31): offline `embed` throughput on 1 and N devices, and
`samp-jax serve` over all N in one process against one server per GPU behind a round-robin client.

    python -m bench.scale --lengths FILE [--models bert-base,mpnet-base,mpnet,NAME=FOLDER] [--plans fp16,full_int8]
                          [--devices N] [--counts 1,2] [--tokenizer FOLDER] [--data-dir DIR] [--time-budget S]
                          [--server | --no-server] [--out DIR]
    python -m bench.scale --tiny --host-devices 4    # CPU dry run: a 2-layer, 128-wide BERT, 4 forced host devices

This process only orchestrates (it never starts JAX): the offline part runs in one child process that holds every
device and exits (freeing their memory) before the servers start. Models: `bert-base` and `mpnet-base` are random
weights in BERT-base's and all-mpnet-base-v2's shapes (speed does not depend on weights), given the tokenizer of
`--tokenizer` (default: the installed all-MiniLM-L6-v2) for serving; `minilm`, `mpnet` (bench/_models.py) and
Hugging Face folders are real models, skipped with the reason where they are not on the machine.

Offline, per model and plan, one `SampModel` per device count k in `--counts` (default 1, 2, 4, ... and N; N is
every local device or `--devices`), all from one converted checkpoint calibrated on random ids (speed does not
depend on the scales' values): count 1 is the plain path (`devices=None`, what a one-GPU user runs;
`--baseline mesh` takes `devices=1` instead), count k > 1 the data-parallel mesh (`devices=k`). The load:
`--sequences` lengths drawn from SST-2 dev's token counts (`--lengths`, a `python -m bench.packing
--write-lengths` file, so that the GPU machine needs no data set; else counted from `--data-dir`), random ids,
sorted by length and cut into batches of `--rows-per-device` x max(counts) rows as `model.embed` sorts and
chunks texts: every count runs the same batches, and at the largest count each device gets a full share. A
batch is padded to the model's buckets (`--layouts packed`: packed, `SampModel.pack`) and run by the compiled
`--kind` forward (default `embed`, pooled and normalized) on numpy inputs, as `embed` passes them. Timings:
- `embed`: batch after batch, each output read back before the next call (`model.embed`'s loop);
- `queued`: every batch dispatched, then every output read back (a stream whose dispatch overlaps the devices).
`--rounds` rounds time every count, the order rotating, and the median round gives tokens/s (real tokens) and
sequences/s; efficiency = throughput(k) / (k x throughput(1)), target >= 0.9 (per-round ratios beside it).

Server (`--server`, on by default where N >= 2): per model and plan, `samp-jax serve` (the offline part's
checkpoint, port 0, `bench.serve.SERVE_FLAGS`) runs as one process with `--devices N` (`--max-batch-tokens` and
`--tokenization-workers` N times a single server's, so each device gets a single server's batches), then as N
single-device servers (on GPUs each pinned by CUDA_VISIBLE_DEVICES to one; on the CPU, N = 2 servers unpinned)
whose URLs one client sends its requests to in turn. Each faces `bench.serve.sweep`'s rising Poisson rates
(1-`--max-texts` texts a request, SST-2 sentences from `--data-dir`, else words of the tokenizer's vocabulary with
SST-2's token counts) until it saturates, passes `--max-rate` or its share of `--time-budget` ends. Reported: the
most texts/s answered, the p99 at that rate and at the last rate below saturation; ratio = one process / the
per-GPU servers together, target >= 0.9.

NVLink multicast: the GPU machine's environment turns it off (NCCL_NVLS_ENABLE=0 and the like). Every child
process gets this process's environment unchanged plus only XLA_FLAGS/JAX_PLATFORMS (`--host-devices`) or
CUDA_VISIBLE_DEVICES (pinning); this script never sets or clears an NCCL, NVSHMEM or PyTorch variable. The
data-parallel program holds no collective anyway.

`--time-budget S`: the offline part stops starting plans past 40% of S, the servers' sweeps share the rest
(`bench.serve.Budget`), and no server setup starts with under `--min-server-s` left; what was skipped is named in
a record. Records (command, commit, device, date, device count in each) go to DIR/scale.json, a table is printed
last, and DIR/scale.png (throughput against device count; the servers' texts/s) is drawn where matplotlib is installed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if not __package__:  # `python bench/NAME.py` puts bench/ first on the path, where its module names would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow installed ones: import `bench.*` instead

import numpy as np

from bench import serve

REPO = Path(__file__).resolve().parents[1]
TARGET = 0.9  # scaling efficiency on 2 GPUs, and the one-process server against the per-GPU servers (issue 31)
TIMINGS = ("embed", "queued")
RANDOM = ("bert-base", "mpnet-base")  # random weights in BERT-base's and all-mpnet-base-v2's shapes (--tiny: 2x128)


# ---- what the children get --------------------------------------------------------------------------------
def child_env(host_devices: int | None = None, pin: str | None = None) -> dict[str, str]:
    """This process's environment (NVLink multicast settings and all) plus forced host devices or a GPU pin."""
    env = dict(os.environ)
    if host_devices:
        flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", env.get("XLA_FLAGS", "")).strip()
        env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={host_devices}".strip()
        env["JAX_PLATFORMS"] = "cpu"
    if pin is not None:
        env["CUDA_VISIBLE_DEVICES"] = pin
    return env


def gpu_pins(n: int) -> list[str]:
    """CUDA_VISIBLE_DEVICES for n single-GPU servers: the i-th GPU this process may use, each."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else [str(i) for i in range(n)]
    if len(ids) < n:
        raise ValueError(f"{n} servers, but CUDA_VISIBLE_DEVICES={visible!r} names {len(ids)} GPU(s)")
    return ids[:n]


def default_counts(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n."""
    counts = [1]
    while counts[-1] * 2 <= n:
        counts.append(counts[-1] * 2)
    return sorted(set(counts) | {n})


# ---- offline (the child process that holds the devices) -----------------------------------------------------
class Absent(Exception):
    """A model that is not on this machine: skipped, with the reason."""


def model_folder(spec: str) -> tuple[str, Path | None]:
    """`--models` entry -> (name, Hugging Face folder; None for a random model)."""
    if spec in RANDOM:
        return spec, None
    name, _, path = spec.partition("=")
    if path:
        folder = Path(path)
    elif name in ("minilm", "mpnet"):
        from bench._models import model_dir

        try:
            folder = model_dir(name)
        except (OSError, ValueError, ImportError, SystemExit) as e:
            raise Absent(str(e)) from None
    else:
        folder = Path(name)
        name = folder.name
    if not (folder / "config.json").is_file():
        raise Absent(f"no config.json in {folder}")
    return name, folder


def tokenizer_folder(given: str | None) -> Path | None:
    """The folder whose tokenizer.json the random BERT gets (BERT's uncased vocabulary): `--tokenizer`, else the
    installed all-MiniLM-L6-v2, else none (offline only: a server needs a tokenizer)."""
    if given:
        if (Path(given) / "tokenizer.json").is_file():
            return Path(given)
        print(f"--tokenizer {given}: no tokenizer.json there; the random models get none", flush=True)
        return None
    from samp_jax.default_model import default_model_dir

    try:
        return default_model_dir()
    except FileNotFoundError:
        return None


def random_mpnet(folder: Path, tiny: bool) -> None:
    """A random `MPNetModel` in all-mpnet-base-v2's shapes (12 layers, hidden 768, relative attention buckets 32,
    514 positions), or a 2-layer, 128-wide one, saved as a Hugging Face folder."""
    import torch
    import transformers

    torch.manual_seed(0)
    small: dict[str, Any] = (dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512)
                             if tiny else {})
    cfg = transformers.MPNetConfig(max_position_embeddings=514, layer_norm_eps=1e-5, **small)
    transformers.MPNetModel(cfg).eval().save_pretrained(folder)


def prepare(name: str, folder: Path | None, tiny: bool, tokenizer: Path | None, work: Path):
    """The converted checkpoint, calibrated on random ids (max). A random model gets `tokenizer`'s tokenizer.json
    (BERT's uncased vocabulary: its ids fit both random models)."""
    import dataclasses

    from bench.mesh import random_bert, random_ids
    from convert import convert_hf_checkpoint
    from samp_jax.calibration import calibrate_batches
    from samp_jax.model import SampModel

    if folder is None:
        folder = work / f"random_{name}"
        (random_bert if name == "bert-base" else random_mpnet)(folder, tiny)
        if tokenizer is not None:
            shutil.copy(tokenizer / "tokenizer.json", folder / "tokenizer.json")
    ckpt = convert_hf_checkpoint(folder)
    vocab = ckpt.config.vocab_size
    calibration: list[Any] = [random_ids(8, 32, s, vocab) for s in range(2)]
    scales = calibrate_batches(SampModel(ckpt, "fp32", kernels="xla"), calibration, progress=False)
    return dataclasses.replace(ckpt, scales=scales)


def batches(lengths: list[int], n: int, rows: int, cap: int, vocab: int, seed: int = 0) -> list[list[list[int]]]:
    """n sequences with lengths drawn from `lengths` (cut to `cap`), random ids, sorted by length and cut into
    batches of `rows`, as `model.embed` orders and chunks its texts."""
    rng = np.random.default_rng(seed)
    drawn = np.sort(np.minimum(rng.choice(np.asarray(lengths), n), cap))
    seqs = [rng.integers(1000, vocab, int(k)).tolist() for k in drawn]
    return [seqs[i : i + rows] for i in range(0, len(seqs), rows)]


def calls(model, kind: str, work: list[list[list[int]]], layout: str) -> tuple[list[tuple], int]:
    """Per batch (compiled forward, numpy inputs) in `layout`, and the tokens computed (padding included)."""
    from bench.packing import padded

    out, computed = [], 0
    args: tuple[Any, ...]
    for ids in work:
        if layout == "packed":
            b = model.pack(ids)
            args = (b.input_ids, b.segment_ids, b.token_type_ids)
        else:
            args = padded(model, ids)
        out.append((model.compiled(kind, *args[0].shape, packed=layout == "packed"), args))
        computed += int(args[0].size)
    return out, computed


def pass_s(work: list[tuple], timing: str) -> float:
    """Seconds for one pass over every batch: `embed` reads each output before the next call, `queued` after
    dispatching them all."""
    t0 = time.perf_counter()
    if timing == "embed":
        for fn, args in work:
            np.asarray(fn(*args))
    else:
        outs = [fn(*args) for fn, args in work]
        for o in outs:
            np.asarray(o)
    return time.perf_counter() - t0


def measure(ckpt, plan: str, counts: list[int], cfg: dict) -> list[dict]:
    """One record per (layout, timing, count)."""
    from samp_jax.model import SampModel

    records: list[dict] = []
    rows = cfg["rows_per_device"] * max(counts)
    work = batches(cfg["lengths"], cfg["sequences"], rows, ckpt.config.max_seq_len, ckpt.config.vocab_size)
    real = sum(len(s) for b in work for s in b)
    nseq = sum(len(b) for b in work)
    for layout in cfg["layouts"]:
        runs: dict[int, list[tuple]] = {}
        computed: dict[int, int] = {}
        compile_s: dict[int, float] = {}
        for k in counts:
            devices = None if k == 1 and cfg["baseline"] == "plain" else k
            model = SampModel(ckpt, plan, kernels="auto", devices=devices)
            t0 = time.perf_counter()
            runs[k], computed[k] = calls(model, cfg["kind"], work, layout)
            for fn, args in runs[k]:
                np.asarray(fn(*args))  # compiled and warm
            compile_s[k] = round(time.perf_counter() - t0, 2)
        sec: dict[str, dict[int, list[float]]] = {t: {k: [] for k in counts} for t in TIMINGS}
        for r in range(cfg["rounds"]):
            order = counts[r % len(counts):] + counts[: r % len(counts)]
            for k in order if r % 2 == 0 else order[::-1]:
                for timing in TIMINGS:
                    sec[timing][k].append(pass_s(runs[k], timing))
        for timing in TIMINGS:
            base = statistics.median(sec[timing][1])
            for k in counts:
                s = statistics.median(sec[timing][k])
                per_round = [b / (k * x) for b, x in zip(sec[timing][1], sec[timing][k])]
                records.append(dict(
                    part="offline", plan=plan, layout=layout, timing=timing, devices=k, kind=cfg["kind"],
                    path="plain" if k == 1 and cfg["baseline"] == "plain" else "mesh", seconds=s,
                    seconds_rounds=sec[timing][k], tokens_per_s=real / s, sequences_per_s=nseq / s,
                    efficiency=base / (k * s), efficiency_rounds=per_round, target=TARGET, sequences=nseq,
                    real_tokens=real, computed_tokens=computed[k], batches=len(work), batch_rows=rows,
                    compile_s=compile_s[k]))
    return records


def offline_child(config_file: str, out_file: str) -> None:
    """`_offline CONFIG OUT`: the offline part; OUT (JSON) is rewritten after each plan, so what ran survives."""
    import jax

    from bench._timing import device_name

    cfg = json.loads(Path(config_file).read_text())
    work = Path(cfg["work"])
    local = jax.local_devices()
    n = cfg["devices"] or len(local)
    if n > len(local):
        raise SystemExit(f"--devices {n}: this process sees {len(local)} {local[0].platform} device(s)")
    counts = cfg["counts"] or default_counts(n)
    if max(counts) > n:
        raise SystemExit(f"--counts {counts}: at most {n} device(s)")
    counts = sorted(set(counts) | {1})
    result: dict[str, Any] = dict(device=device_name(), platform=local[0].platform, device_count=len(local), n=n,
                                  counts=counts, records=[], checkpoints={}, skipped={}, deadline_hit=False)
    print(f"offline: {device_name()}, {len(local)} local device(s), counts {counts}", flush=True)
    tokenizer = tokenizer_folder(cfg["tokenizer"])
    for spec in cfg["models"]:
        try:
            name, folder = model_folder(spec)
        except Absent as e:
            print(f"offline: skipping {spec}: {e}", flush=True)
            result["skipped"][spec] = str(e)
            continue
        if time.time() > cfg["deadline"]:
            print(f"offline: time budget spent, skipping {name}", flush=True)
            result["skipped"][name], result["deadline_hit"] = "time budget", True
            continue
        t0 = time.perf_counter()
        ckpt = prepare(name, folder, cfg["tiny"], tokenizer, work)
        serve_it = cfg["serve"] is not None and (not cfg["serve"] or name in cfg["serve"] or spec in cfg["serve"])
        if serve_it and ckpt.tokenizer_json is not None:
            from samp_jax.checkpoint import save_checkpoint

            result["checkpoints"][name] = str(save_checkpoint(ckpt, work / f"ckpt_{name}"))
        elif serve_it:
            print(f"offline: {name} has no tokenizer (pass --tokenizer): no server for it", flush=True)
        print(f"offline: {name} converted and calibrated in {time.perf_counter() - t0:.1f} s", flush=True)
        for plan in cfg["plans"]:
            if time.time() > cfg["deadline"]:
                print(f"offline: time budget spent, skipping {name} {plan}", flush=True)
                result["deadline_hit"] = True
                continue
            t0 = time.perf_counter()
            records = measure(ckpt, plan, counts, cfg)
            for r in records:
                r["model"] = name
                if r["devices"] == max(counts) and r["timing"] == "embed":
                    print(f"offline: {name} {plan} {r['layout']}: {r['sequences_per_s']:,.0f} seq/s on {r['devices']}, "
                          f"efficiency {r['efficiency']:.3f} ({time.perf_counter() - t0:.1f} s)", flush=True)
            result["records"] += records
            Path(out_file).write_text(json.dumps(result))
    Path(out_file).write_text(json.dumps(result))


def run_offline(cfg: dict, work: Path, host_devices: int | None) -> dict:
    """The offline child, run to its end; what it wrote (possibly partial if it failed)."""
    cfg_file, out_file = work / "offline_config.json", work / "offline.json"
    cfg_file.write_text(json.dumps(cfg))
    proc = subprocess.run([sys.executable, "-m", "bench.scale", "_offline", str(cfg_file), str(out_file)], cwd=REPO,
                          env=child_env(host_devices))
    if not out_file.is_file():
        raise SystemExit(f"the offline part failed (exit {proc.returncode}) before any result")
    result = json.loads(out_file.read_text())
    result["exit_code"] = proc.returncode
    if proc.returncode:
        print(f"offline: exit {proc.returncode}; keeping the {len(result['records'])} records written", flush=True)
    return result


# ---- server ---------------------------------------------------------------------------------------------------
class Budget(serve.Budget):
    """`bench.serve.Budget` for this run's servers: no offline run after each."""

    OFFLINE_S = 0.0


def synthetic_texts(tokenizer_json: Path, lengths: list[int], n: int, seed: int = 0) -> list[str]:
    """n texts of whole words from the tokenizer's vocabulary (one token each), with token counts drawn from
    `lengths` ([CLS] and [SEP] included): the load where no SST-2 sentences are at hand."""
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(tokenizer_json)).get_vocab()
    words = sorted(w for w in vocab if w.isascii() and w.isalpha() and w.islower() and len(w) >= 3)
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, max(1, int(k) - 2))) for k in rng.choice(np.asarray(lengths), n)]


def serve_cmd(name: str, ckpt: str, plan: str, devices: int | None, batch_tokens: int, cache: Path) -> list[str]:
    """`samp-jax serve` over `devices` (None: the default device alone), its budgets scaled by their number."""
    k = devices or 1
    cmd = [sys.executable, "-m", "samp_jax.cli", "serve", f"{name}={ckpt}", "--plan", plan, "--port", "0",
           "--max-batch-tokens", str(batch_tokens * k), "--tokenization-workers", str(2 * k), "--auto-truncate",
           "--compilation-cache", str(cache), *serve.SERVE_FLAGS]
    return cmd + ["--devices", str(devices)] if devices else cmd


def start_servers(cmds: list[list[str]], envs: list[dict[str, str]]) -> list[serve.Served]:
    """The first server alone (it fills the compilation cache), then the rest at once; all stopped if one fails."""
    first = serve.Served(cmds[0], envs[0])
    with concurrent.futures.ThreadPoolExecutor(max(1, len(cmds) - 1)) as pool:
        futures = [pool.submit(serve.Served, c, e) for c, e in zip(cmds[1:], envs[1:])]
    failed = [e for f in futures if (e := f.exception()) is not None]
    started = [first] + [f.result() for f in futures if f.exception() is None]
    if failed:
        for s in started:
            s.stop()
        raise failed[0]
    return started


def summary(rates: list[dict], rates_end: str) -> dict:
    """The most texts/s answered, its p99, and the p99 of the last rate below saturation."""
    best = max(rates, key=lambda r: r["throughput_texts_per_s"])
    below = rates[:-1] if rates_end == "saturated" else rates
    return {"texts_per_s": best["throughput_texts_per_s"], "p99_ms": best["p99_ms"],
            "rate_rps": best["offered_rps"], "p99_below_saturation_ms": below[-1]["p99_ms"] if below else math.nan,
            "saturated": rates_end == "saturated"}


def run_setup(cmds: list[list[str]], envs: list[dict[str, str]], sweep_args: argparse.Namespace, texts_file: Path,
          work: Path, budget: Budget) -> dict:
    """Servers started, swept (one URL, or theirs in turn), stopped."""
    budget.server_starts()
    servers = start_servers(cmds, envs)
    try:
        url = ",".join(s.url for s in servers)
        rates, rates_end = serve.sweep(url, sweep_args, texts_file, work, budget.sweep_deadline())
    finally:
        codes = [s.stop() for s in servers]
    return {"servers": len(servers), "max_batch_tokens": int(cmds[0][cmds[0].index("--max-batch-tokens") + 1]),
            "startup_s": [round(s.startup_s, 1) for s in servers], "startup_compile_s": [s.compile_s() for s in servers],
            "exit_codes": codes, "rates": rates, "rates_end": rates_end, **summary(rates, rates_end)}


def compare(name: str, ckpt: str, plan: str, n: int, platform: str, args: argparse.Namespace, texts_file: Path,
            work: Path, budget: Budget) -> dict:
    """One process over n devices against n single-device servers behind one round-robin client."""
    sweep_args = argparse.Namespace(start_rate=args.start_rate, max_rate=args.max_rate, duration=args.duration,
                                    load_procs=args.load_procs, max_texts=args.max_texts, max_p99_ms=args.max_p99_ms)
    cache = work / "compilation_cache"
    print(f"== server {name} {plan}: one process, --devices {n}", flush=True)
    one = run_setup([serve_cmd(name, ckpt, plan, n, args.server_batch_tokens, cache)], [child_env(args.host_devices)],
                sweep_args, texts_file, work, budget)
    pins = gpu_pins(n) if platform == "gpu" else [None] * n
    print(f"== server {name} {plan}: {n} single-device servers"
          + (f" (CUDA_VISIBLE_DEVICES {', '.join(p for p in pins if p)})" if platform == "gpu" else ""), flush=True)
    per = run_setup([serve_cmd(name, ckpt, plan, None, args.server_batch_tokens, cache)] * n,
                [child_env(args.host_devices if platform != "gpu" else None, p) for p in pins], sweep_args, texts_file,
                work, budget)
    per["pins"] = pins
    return {"part": "server", "model": name, "plan": plan, "devices": n, "one_process": one, "per_gpu": per,
            "ratio": one["texts_per_s"] / per["texts_per_s"], "target": TARGET,
            "both_saturated": one["saturated"] and per["saturated"], "max_texts": args.max_texts}


def server_texts(args: argparse.Namespace, ckpt: str, lengths: list[int], work: Path, name: str) -> Path:
    """The load's texts: SST-2 sentences where `--data-dir` holds them, else the tokenizer's words."""
    out = work / f"texts_{name}.json"
    try:
        texts, source = serve.read_texts(args.data_dir), f"SST-2 sentences from {args.data_dir}"
    except SystemExit:
        texts = synthetic_texts(Path(ckpt) / "tokenizer.json", lengths, 4096)
        source = "vocabulary words with SST-2 token counts"
    print(f"server load: {len(texts)} texts, {source}", flush=True)
    out.write_text(json.dumps(texts))
    return out


# ---- records, table, plot -----------------------------------------------------------------------------------------
def table(records: list[dict]) -> None:
    offline = [r for r in records if r["part"] == "offline"]
    if offline:
        print(f"\noffline {offline[0]['kind']}, median of rounds; efficiency = thr(k) / (k x thr(1)), target >= {TARGET}")
        print(f"{'model':<12}{'plan':<11}{'layout':<8}{'timing':<8}{'devices':>8}{'tokens/s':>13}{'seq/s':>11}"
              f"{'efficiency':>11}{'rounds':>14}")
        for r in offline:
            eff = r["efficiency_rounds"]
            flag = "" if r["devices"] == 1 or r["efficiency"] >= TARGET else "  < target"
            print(f"{r['model']:<12}{r['plan']:<11}{r['layout']:<8}{r['timing']:<8}{r['devices']:>8}"
                  f"{r['tokens_per_s']:>13,.0f}{r['sequences_per_s']:>11,.0f}{r['efficiency']:>11.3f}"
                  f"{f'{min(eff):.3f}-{max(eff):.3f}':>14}{flag}")
    servers = [r for r in records if r["part"] == "server"]
    if servers:
        print(f"\nserver at saturation: one process over N devices / N single-device servers (round robin), "
              f"target >= {TARGET}")
        print(f"{'model':<12}{'plan':<11}{'N':>3}{'one texts/s':>13}{'p99 ms':>9}{'per-GPU texts/s':>17}{'p99 ms':>9}"
              f"{'ratio':>8}")
        for r in servers:
            one, per = r["one_process"], r["per_gpu"]
            flag = "" if r["ratio"] >= TARGET else "  < target"
            flag += "" if r["both_saturated"] else "  (not saturated: a lower bound)"
            print(f"{r['model']:<12}{r['plan']:<11}{r['devices']:>3}{one['texts_per_s']:>13,.0f}{one['p99_ms']:>9.1f}"
                  f"{per['texts_per_s']:>17,.0f}{per['p99_ms']:>9.1f}{r['ratio']:>8.3f}{flag}")


def plot(records: list[dict], path: Path) -> bool:
    """scale.png: sequences/s against device count (dotted: linear from one device), and the servers' texts/s."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no plot", flush=True)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    offline = [r for r in records if r["part"] == "offline"]
    servers = [r for r in records if r["part"] == "server"]
    fig, axes = plt.subplots(1, 1 + bool(servers), figsize=(7 * (1 + bool(servers)), 5), squeeze=False)
    ax = axes[0][0]
    lines = sorted({(r["model"], r["plan"], r["layout"], r["timing"]) for r in offline})
    for i, key in enumerate(lines):
        pts = sorted((r["devices"], r["sequences_per_s"]) for r in offline
                     if (r["model"], r["plan"], r["layout"], r["timing"]) == key)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        ax.plot(xs, ys, "o-" if key[3] == "embed" else "s--", color=f"C{i}", label=" ".join(key))
        ax.plot(xs, [ys[0] * x for x in xs], ":", color=f"C{i}", lw=1)
    ax.set(xlabel="devices", ylabel="sequences/s", title="offline, SST-2 lengths (dotted: linear)")
    ax.set_xticks(sorted({r["devices"] for r in offline}))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    if servers:
        ax = axes[0][1]
        labels = [f"{r['model']}\n{r['plan']}" for r in servers]
        x = np.arange(len(servers))
        ax.bar(x - 0.2, [r["one_process"]["texts_per_s"] for r in servers], 0.4, label="one process, --devices N")
        ax.bar(x + 0.2, [r["per_gpu"]["texts_per_s"] for r in servers], 0.4, label="N servers, round robin")
        ax.set_xticks(x, labels)
        ax.set(ylabel="texts/s at saturation", title=f"samp-jax serve, N = {servers[0]['devices']}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


# ---- main ---------------------------------------------------------------------------------------------------------
def read_lengths(args: argparse.Namespace) -> list[int]:
    """SST-2 dev's token counts: `--lengths` (key sst2), else counted from `--data-dir`."""
    if args.lengths is not None:
        return [int(k) for k in json.loads(args.lengths.read_text())["sst2"]]
    from bench.packing import token_lengths

    try:
        return token_lengths(args.data_dir, Path(args.tokenizer) if args.tokenizer else None)["sst2"]
    except (OSError, SystemExit) as e:
        raise SystemExit(f"no SST-2 token counts ({e}): pass --lengths FILE (python -m bench.packing "
                         "--write-lengths FILE writes one)") from None


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally`s that stop the servers


def run_servers(args: argparse.Namespace, off: dict, n: int, lengths: list[int], work: Path, end: float,
                meta: dict, records: list[dict], skipped: dict[str, str]) -> None:
    """The server comparison for every served model and plan, its records appended (and written) as they come."""
    plans = args.server_plans.split(",") if args.server_plans else args.plans.split(",")
    budget = Budget(end - time.time() if math.isfinite(end) else None, 2 * len(off["checkpoints"]) * len(plans))
    for name, ckpt in off["checkpoints"].items():
        texts_file = server_texts(args, ckpt, lengths, work, name)
        for plan in plans:
            if time.time() + args.min_server_s > end:
                print(f"server: time budget spent, skipping {name} {plan}", flush=True)
                skipped[f"server {name} {plan}"] = "time budget"
                continue
            try:
                rec = compare(name, ckpt, plan, n, off["platform"], args, texts_file, work, budget)
            except (RuntimeError, OSError, ValueError) as e:  # reported; the other servers still run
                print(f"server {name} {plan} FAILED: {type(e).__name__}: {str(e)[:400]}", flush=True)
                skipped[f"server {name} {plan}"] = f"failed: {type(e).__name__}: {str(e)[:200]}"
                continue
            records.append({**rec, **meta})
            write_json(records, args.out)


def run(args: argparse.Namespace, command: str) -> list[dict]:
    t_start = time.time()
    end = t_start + args.time_budget if args.time_budget else math.inf
    lengths = read_lengths(args)
    work = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    previous = signal.signal(signal.SIGTERM, _exit_on_signal)
    records: list[dict] = []
    try:
        want_server = args.server is not False
        cfg = dict(models=args.models.split(","), plans=args.plans.split(","), devices=args.devices,
                   counts=[int(c) for c in args.counts.split(",")] if args.counts else None, lengths=lengths,
                   sequences=args.sequences, rows_per_device=args.rows_per_device, rounds=args.rounds,
                   layouts=args.layouts.split(","), kind=args.kind, tiny=args.tiny, tokenizer=args.tokenizer,
                   baseline=args.baseline, work=str(work),
                   serve=(args.server_models.split(",") if args.server_models else []) if want_server else None,
                   # the offline part's share of the budget: all of it without servers, else 40%
                   deadline=t_start + (1.0 if args.server is False else 0.4) * (end - t_start))
        off = run_offline(cfg, work, args.host_devices)
        meta = dict(command=command, commit=_commit(), device=off["device"], date=_today(),
                    device_count=off["device_count"], host_devices=args.host_devices, tiny=args.tiny)
        records += [{**r, **meta} for r in off["records"]]
        skipped = dict(off["skipped"])
        n = args.server_devices or (off["n"] if off["platform"] == "gpu" else min(off["n"], 2))
        if args.server is None and n < 2:
            print(f"server: skipped, {n} device (--server runs it anyway)", flush=True)
        elif want_server:
            run_servers(args, off, n, lengths, work, end, meta, records, skipped)
        if skipped:
            records.append({"part": "skipped", "skipped": skipped, **meta})
    finally:
        signal.signal(signal.SIGTERM, previous)
        write_json(records, args.out)
        shutil.rmtree(work, ignore_errors=True)
    table(records)
    if any(r["part"] == "offline" for r in records) and plot(records, args.out / "scale.png"):
        print(f"plot: {args.out / 'scale.png'}")
    print(f"records: {args.out / 'scale.json'} ({time.time() - t_start:.0f} s)")
    return records


def write_json(records: list[dict], out: Path) -> None:
    from samp_jax.fileio import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "scale.json", json.dumps(records, indent=1) + "\n")


def _commit() -> str:
    return serve.commit()  # bench._timing.commit: SAMP_COMMIT where set, else HEAD


def _today() -> str:
    import datetime

    return datetime.date.today().isoformat()


def main(argv: list[str] | None = None) -> list[dict] | None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_offline":  # the child process of this benchmark that holds the devices
        offline_child(argv[1], argv[2])
        return None
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=RANDOM[0], help=f"{' or '.join(RANDOM)} (random weights), minilm, mpnet, "
                    "NAME=HF_FOLDER or HF_FOLDER, comma-separated; one not on this machine is skipped")
    ap.add_argument("--plans", default="fp16,full_int8")
    ap.add_argument("--devices", type=int, help="N: the first N local devices (default: all)")
    ap.add_argument("--counts", help="device counts to time, e.g. 1,2 (default: 1, 2, 4, ... and N)")
    ap.add_argument("--baseline", choices=("plain", "mesh"), default="plain",
                    help="one device: the plain path (devices=None) or a one-device mesh (devices=1)")
    ap.add_argument("--lengths", type=Path, help="token counts by set (key sst2), from bench.packing --write-lengths")
    ap.add_argument("--data-dir", type=Path, help="SST-2 (lengths if no --lengths; the server load's sentences); "
                                                  "default $SAMP_DATA, then ../shared/data")
    ap.add_argument("--tokenizer", help="a folder with tokenizer.json for the random BERT (default: the installed "
                                        "all-MiniLM-L6-v2); without one it is served nowhere")
    ap.add_argument("--sequences", type=int, default=16384, help="sequences an offline pass")
    ap.add_argument("--rows-per-device", type=int, default=128, help="rows a batch per device at the largest count")
    ap.add_argument("--rounds", type=int, default=5, help="rounds timing every count, the order rotating")
    ap.add_argument("--layouts", default="padded", help="padded and/or packed, comma-separated")
    ap.add_argument("--kind", default="embed", choices=("embed", "hidden", "head"), help="the compiled output")
    ap.add_argument("--server", action=argparse.BooleanOptionalAction, default=None,
                    help="the server comparison (default: where N >= 2)")
    ap.add_argument("--server-models", help="models served, by name (default: every model measured offline)")
    ap.add_argument("--server-plans", help="plans served (default: --plans)")
    ap.add_argument("--server-devices", type=int, help="N for the servers (default: N; on the CPU at most 2)")
    ap.add_argument("--server-batch-tokens", type=int, default=16384,
                    help="a single server's --max-batch-tokens; the one process gets N times it")
    serve.add_load_arguments(ap, start_rate=200.0, duration=4.0)
    ap.add_argument("--time-budget", type=float, metavar="S", help="seconds for the whole run: 40%% for the offline "
                    "part when servers follow (checked between plans), the rest shared by the servers' sweeps")
    ap.add_argument("--min-server-s", type=float, default=60.0, help="no server setup starts with less time left")
    ap.add_argument("--host-devices", type=int, metavar="N", help="CPU dry run: N forced host devices (XLA_FLAGS)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--tiny", action="store_true", help="CPU check: a 2-layer 128-wide BERT, 512 sequences, 16 rows "
                                                        "a device, 2 rounds; the first plan served, at small rates")
    args = ap.parse_args(argv)
    if args.data_dir is None:
        from samp_jax.default_model import default_data_dir

        args.data_dir = default_data_dir()
    if args.tiny:
        d = ap.get_default
        args.sequences = 512 if args.sequences == d("sequences") else args.sequences
        args.rows_per_device = 16 if args.rows_per_device == d("rows_per_device") else args.rows_per_device
        args.rounds = min(args.rounds, 2)
        args.server_batch_tokens = min(args.server_batch_tokens, 1024)
        args.server_plans = args.server_plans or args.plans.split(",")[0]  # a server start compiles for ~12 s
        args.start_rate, args.max_rate, args.duration = 2.0, min(args.max_rate, 4.0), min(args.duration, 2.0)
        args.load_procs, args.max_texts, args.min_server_s = 1, min(args.max_texts, 4), min(args.min_server_s, 10.0)
    command = " ".join(["python", "-m", "bench.scale", *argv])
    return run(args, command)


if __name__ == "__main__":
    main()
