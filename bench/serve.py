"""`samp-jax serve` under open-loop load: throughput against p50/p99 latency per offered rate, a lone small
request's latency, and offline `model.embed()` throughput; sentence-transformers fp16 behind the same HTTP
protocol as the baseline (GPU machine).

    python -m bench.serve --models minilm --plans fp16,full_int8 --out bench/results/serve      # one GPU call
    python -m bench.serve --models mpnet=/path/to/mpnet-fp16 --plans fp16,full_int8 --out bench/results/serve
    python -m bench.serve --plot bench/results/serve                  # the PNG and table from every record there
    python -m bench.serve --smoke                                     # CPU: tiny rates, minilm fp32 + full_int8
    bash bench/serve_gpu.sh                                           # the GPU call, with its carried wheels and data

Each server runs in its own process, one after another, so that one device holds one of them at a time: this
process only orchestrates (it never starts JAX or PyTorch). Per (model, plan):
- convert the Hugging Face folder once (`samp-jax convert`), calibrate (max, SST-2 train) for 8-bit plans;
- start `samp-jax serve` (port 0), read its start-up compile time;
- a lone small request: one text of at most 32 tokens, sequentially over one keep-alive connection, p50/p99;
- Poisson arrivals at rising rates (requests of 1-32 texts drawn from real sentences, `POST /embed`), from
  `--load-procs` load processes, each rate for `--duration` seconds, until the server saturates (it answers
  under 90% of the offered texts, errs on over 1% of requests, or p99 passes `--max-p99-ms`), passes
  `--max-rate`, or its share of `--time-budget` runs out (the record's `rates_end` says which). Latency counts
  from each request's scheduled time, so a client that falls behind is charged, not hidden;
- the server's own batch statistics from `/metrics`; then SIGTERM;
- offline `model.embed(texts, batch_size=256)` throughput on the same texts, in a fresh process.
sentence-transformers fp16 (`SentenceTransformer.encode` behind a minimal Starlette `/embed`, one batch on the
device at a time) runs the same lone request and rates, and its own offline `encode` throughput.

Records: one JSON per server in `--out` (`serve_<model>_<server>.json`, with command, commit, device and date),
and `serve.png`: latency against throughput per model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime
import importlib
import importlib.util
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
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

if not __package__:  # `python bench/NAME.py` puts bench/ first on the path, where its module names would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow installed ones: import `bench.*` instead

from bench._timing import commit  # noqa: E402  (after the path fix above; SAMP_COMMIT where the tree has a stale git)

REPO = Path(__file__).resolve().parents[1]
SERVE_FLAGS = ["--max-input-length", "128"]  # SST-2 sentences fit 128 tokens: buckets 32, 64, 128 only
START_TIMEOUT = 600.0


# ---- texts ------------------------------------------------------------------------------------------
def read_texts(data_dir: Path) -> list[str]:
    """Real sentences: SST-2 dev and train (their lengths are the load's lengths)."""
    texts: list[str] = []
    for split in ("dev.tsv", "train.tsv"):
        path = data_dir / "sst2" / split
        if path.is_file():
            with path.open(encoding="utf-8") as f:
                texts += [r["sentence"].strip() for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    texts = [t for t in texts if t]
    if not texts:
        raise SystemExit(f"no SST-2 sentences under {data_dir}/sst2: pass --data-dir (or set $SAMP_DATA)")
    return texts


# ---- servers ----------------------------------------------------------------------------------------
class Served:
    """A server process started with `cmd`, whose output names its URL."""

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None):
        self.cmd = cmd
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.lines: list[str] = []
        ready = threading.Event()
        self.url = ""

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                print("   |", line.rstrip(), flush=True)
                m = re.search(r"listening on (http://\S+)", line)
                if m:
                    self.url = m.group(1)
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while not ready.wait(0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{cmd[:4]} did not start:\n" + "".join(self.lines[-30:]))
        import httpx

        for _ in range(200):
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        self.startup_s = time.perf_counter() - self.t0

    def compile_s(self) -> float | None:
        for line in self.lines:
            m = re.search(r"start-up compile ([\d.]+) s", line)
            if m:
                return float(m.group(1))
        return None

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        return self.proc.returncode


def checkpoint(name: str, hf_dir: Path, plan: str, work: Path, calib_texts: Path) -> Path:
    """The converted checkpoint of `hf_dir` (kept under `work`), calibrated when `plan` quantizes."""
    ckpt = work / f"ckpt_{name}"
    if not (ckpt / "samp_jax.json").is_file():
        subprocess.run([sys.executable, "-m", "samp_jax.cli", "convert", str(hf_dir), str(ckpt), "--force"],
                       cwd=REPO, check=True)
    done = work / f"calibrated_{name}"
    quantized = any(term.split(":")[0] not in ("fp16", "bf16", "fp32", "float", "dtype", "probs", "embedding")
                    for term in plan.split(","))
    if quantized and not done.exists():
        subprocess.run([sys.executable, "-m", "samp_jax.cli", "calibrate", str(ckpt), "--data", str(calib_texts),
                        "--method", "max", "--limit", "256", "--quiet"], cwd=REPO, check=True)
        done.touch()
    return ckpt


# ---- load ---------------------------------------------------------------------------------------------
def lone_requests(url: str, texts: list[str], n: int) -> dict:
    """One text of at most 32 tokens per request, one after another over one keep-alive connection."""
    import httpx

    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(max(5, n // 10)):  # warm the connection and the shape
            client.post("/embed", json={"inputs": texts[0]})
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            r = client.post("/embed", json={"inputs": texts[i % len(texts)]})
            times.append((time.perf_counter() - t0) * 1e3)
            r.raise_for_status()
    return {"n": n, "p50_ms": _pct(times, 50), "p99_ms": _pct(times, 99), "mean_ms": statistics.fmean(times)}


def short_texts(url: str, texts: list[str], limit: int = 32) -> list[str]:
    """Texts of at most `limit` tokens, as the served tokenizer counts them (`POST /tokenize`)."""
    import httpx

    pool = sorted({t for t in texts if 20 <= len(t) <= 160})[:400]
    tokens = httpx.post(url + "/tokenize", json={"inputs": pool[:32]}, timeout=60).json()
    short = [t for t, toks in zip(pool, tokens) if len(toks) <= limit]
    return short or [pool[0]]


def _load_worker(url: str, rate: float, duration: float, seed: int, texts_file: str, max_texts: int,
                 out: str) -> None:
    """One load process: Poisson arrivals at `rate` requests/s for `duration` s; writes its records. `url` may
    name several servers, comma-separated: the requests go to them in turn (round robin, from `seed`'s turn)."""
    import httpx

    texts = json.loads(Path(texts_file).read_text())
    rng = np.random.default_rng(seed)
    n = max(1, int(rate * duration * 1.2) + 10)
    offsets = np.cumsum(rng.exponential(1.0 / rate, n))
    offsets = offsets[offsets < duration]
    sizes = rng.integers(1, max_texts + 1, len(offsets))
    picks = [rng.integers(0, len(texts), s) for s in sizes]
    records: list[tuple[float, float, int, int]] = []  # (scheduled offset, latency s, status, texts)
    lags: list[float] = []

    async def one(sessions: list[httpx.AsyncClient], start: float, i: int) -> None:
        body = {"inputs": [texts[j] for j in picks[i]]}
        status = 0
        try:
            r = await sessions[(seed + i) % len(sessions)].post("/embed", json=body)
            status = r.status_code
            if status == 200 and i % 100 == 0:  # a sample is parsed: the rest are counted, not decoded
                assert len(r.json()) == len(picks[i])
        except (httpx.HTTPError, AssertionError):
            status = -1
        records.append((float(offsets[i]), time.perf_counter() - (start + offsets[i]), status, len(picks[i])))

    async def main() -> None:
        limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000)
        async with contextlib.AsyncExitStack() as stack:
            sessions = [await stack.enter_async_context(httpx.AsyncClient(base_url=u, timeout=120, limits=limits))
                        for u in url.split(",")]
            start = time.perf_counter()
            tasks = []
            for i, t in enumerate(offsets):
                delay = start + t - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    lags.append(-delay)
                tasks.append(asyncio.ensure_future(one(sessions, start, i)))
            await asyncio.gather(*tasks)

    asyncio.run(main())
    Path(out).write_text(json.dumps({"records": records, "max_lag_s": max(lags, default=0.0)}))


def offered_load(url: str, rate: float, duration: float, procs: int, texts_file: Path, max_texts: int,
                 work: Path, seed: int) -> dict:
    """`rate` requests/s split over `procs` load processes; throughput and latency of what came back. `url`: one
    server, or several comma-separated, sent the requests in turn (round robin)."""
    outs = [work / f"load_{seed}_{i}.json" for i in range(procs)]
    workers = [subprocess.Popen([sys.executable, "-m", "bench.serve", "_load", url, str(rate / procs), str(duration),
                                 str(seed * 1000 + i), str(texts_file), str(max_texts), str(out)], cwd=REPO)
               for i, out in enumerate(outs)]
    try:
        for w in workers:
            w.wait(duration * 10 + 300)
    finally:  # this process stopped early (SIGTERM): its load processes stop too
        for w in workers:
            if w.poll() is None:
                w.kill()
    records: list = []
    lag = 0.0
    for out in outs:
        part = json.loads(out.read_text())
        records += part["records"]
        lag = max(lag, part["max_lag_s"])
    ok = [r for r in records if r[2] == 200]
    done_by = max((r[0] + r[1] for r in ok), default=duration)
    errors: dict[str, int] = {}
    for r in records:
        if r[2] != 200:
            errors[str(r[2])] = errors.get(str(r[2]), 0) + 1
    lat = [r[1] * 1e3 for r in ok]
    span = max(duration, done_by)  # texts answered over the time it took to answer them
    return {"offered_rps": rate, "duration_s": duration, "requests": len(records), "ok": len(ok), "errors": errors,
            "offered_texts_per_s": sum(r[3] for r in records) / duration,
            "throughput_texts_per_s": sum(r[3] for r in ok) / span, "throughput_rps": len(ok) / span,
            "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99), "max_client_lag_ms": lag * 1e3}


def sweep(url: str, args: argparse.Namespace, texts_file: Path, work: Path,
          deadline: float = math.inf) -> tuple[list[dict], str]:
    """Rising rates from `--start-rate`, doubled each step; returns them and why they stopped: "saturated",
    "max rate", or "time budget" (the next step would end past `deadline`, a `time.monotonic()`; the first
    rate always runs)."""
    results: list[dict] = []
    rate = args.start_rate
    seed = 1
    step_s = args.duration + 2.0  # a step's time: the load, the load processes' start and the last answers
    while True:
        if rate > args.max_rate:
            return results, "max rate"
        if results and time.monotonic() + step_s > deadline:
            print(f"  time budget: no rate past {rate / 2:g} req/s", flush=True)
            return results, "time budget"
        t0 = time.monotonic()
        r = offered_load(url, rate, args.duration, args.load_procs, texts_file, args.max_texts, work, seed)
        step_s = time.monotonic() - t0
        results.append(r)
        fail = sum(r["errors"].values()) / max(1, r["requests"])
        print(f"  {rate:8.1f} req/s offered: {r['throughput_texts_per_s']:9.1f} texts/s answered, p50 "
              f"{r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, errors {r['errors'] or 0}, client lag "
              f"{r['max_client_lag_ms']:.1f} ms", flush=True)
        if (r["throughput_texts_per_s"] < 0.9 * r["offered_texts_per_s"] or fail > 0.01
                or r["p99_ms"] > args.max_p99_ms):
            return results, "saturated"
        rate *= 2
        seed += 1


def server_stats(url: str) -> dict:
    """Mean batch size, padded and real tokens per batch, from the server's histograms."""
    import httpx

    try:
        text = httpx.get(url + "/metrics", timeout=30).text
    except httpx.HTTPError:
        return {}
    sums: dict[str, float] = {}
    for name in ("samp_batch_size", "samp_batch_tokens", "samp_batch_real_tokens"):
        for kind in ("sum", "count"):
            vals = re.findall(rf"^{name}_{kind}{{[^}}]*}} ([\d.e+]+)$", text, re.M)
            sums[f"{name}_{kind}"] = sum(float(v) for v in vals)
    n = sums.get("samp_batch_size_count") or 0
    if not n:
        return {}
    return {"batches": int(n), "mean_batch_size": sums["samp_batch_size_sum"] / n,
            "mean_batch_tokens": sums["samp_batch_tokens_sum"] / n,
            "padding_fraction": 1 - sums["samp_batch_real_tokens_sum"] / max(1.0, sums["samp_batch_tokens_sum"])}


# ---- offline throughput (fresh processes) -------------------------------------------------------------
def _offline_samp(ckpt: str, plan: str, texts_file: str, n: int, batch_size: int, out: str) -> None:
    import samp_jax
    from bench._timing import device_name

    texts = _sample(json.loads(Path(texts_file).read_text()), n)
    model = samp_jax.load(ckpt, plan=plan)
    model.embed(texts, batch_size=batch_size, truncation=True, max_length=128)  # compiles every bucket
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        model.embed(texts, batch_size=batch_size, truncation=True, max_length=128)
        times.append(time.perf_counter() - t0)
    Path(out).write_text(json.dumps({"texts_per_s": n / min(times), "n": n, "batch_size": batch_size,
                                     "device": device_name()}))


def _offline_st(hf_dir: str, texts_file: str, n: int, batch_size: int, out: str) -> None:
    import torch

    SentenceTransformer = importlib.import_module("sentence_transformers").SentenceTransformer
    texts = _sample(json.loads(Path(texts_file).read_text()), n)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(hf_dir, device=device)
    if device == "cuda":
        model.half()
    else:  # fp32 on the CPU, also from a folder that stores fp16 weights (which transformers loads as fp16)
        model.float()
    model.max_seq_length = 128
    model.encode(texts, batch_size=batch_size, normalize_embeddings=True)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        model.encode(texts, batch_size=batch_size, normalize_embeddings=True)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    version = importlib.import_module("sentence_transformers").__version__
    Path(out).write_text(json.dumps({"texts_per_s": n / min(times), "n": n, "batch_size": batch_size,
                                     "device": f"{name}, torch {torch.__version__}, sentence-transformers {version}"}))


def _st_server(hf_dir: str, host: str, port: int, batch_size: int) -> None:
    """The baseline: `SentenceTransformer.encode` fp16 behind `POST /embed` (TEI's request and response), one
    batch on the device at a time, the rest waiting their turn."""
    import torch
    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from samp_jax.serving import jsonio  # the same JSON writer as samp-jax serve (orjson where installed)

    SentenceTransformer = importlib.import_module("sentence_transformers").SentenceTransformer
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = SentenceTransformer(hf_dir, device=device)
    if device == "cuda":
        model.half()
    else:  # fp32 on the CPU, also from a folder that stores fp16 weights (which transformers loads as fp16)
        model.float()
    model.max_seq_length = 128
    lock = asyncio.Lock()

    async def embed(request: Request) -> Response:
        body = jsonio.loads(await request.body())
        texts = body["inputs"] if isinstance(body["inputs"], list) else [body["inputs"]]
        async with lock:
            vectors = await run_in_threadpool(model.encode, texts, batch_size=batch_size,
                                              normalize_embeddings=body.get("normalize", True))
        return Response(jsonio.dumps(np.ascontiguousarray(vectors, np.float32)), media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    app = Starlette(routes=[Route("/embed", embed, methods=["POST"]), Route("/health", health)])
    from samp_jax.serving.server import bind

    sock = bind(host, port)
    print(f"st-server listening on http://{host}:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


def offline(cmd: list[str], work: Path, tag: str, cache: Path) -> dict:
    """One offline run in a fresh process; samp-jax's shares the servers' compilation cache."""
    out = work / f"offline_{tag}.json"
    env = {"JAX_PLATFORMS": "cpu"} if cmd[0] == "_offline_st" else {"SAMP_JAX_COMPILATION_CACHE": str(cache)}
    subprocess.run([sys.executable, "-m", "bench.serve", *cmd, str(out)], cwd=REPO, check=True,
                   env={**os.environ, **env})
    return json.loads(out.read_text())


class Budget:
    """`--time-budget`: the run's wall-clock seconds, shared among the servers' rising rates.

    When a sweep starts, the time left, less what each later server is expected to need outside its sweep
    (as long as this one took to get there, plus an offline run each), is split evenly between this sweep
    and the later ones. A sweep that would end past its share stops rising (its first rate always runs)."""

    OFFLINE_S = 20.0  # an offline run: a fresh process, its model and compiles, four passes

    def __init__(self, seconds: float | None, servers: int):
        self.end = time.monotonic() + seconds if seconds else math.inf
        self.servers_left = servers
        self.started = time.monotonic()

    def server_starts(self) -> None:
        self.started = time.monotonic()

    def sweep_deadline(self) -> float:
        now = time.monotonic()
        self.servers_left -= 1
        later = self.servers_left
        pool = self.end - now - later * (now - self.started) - (later + 1) * self.OFFLINE_S
        return now + pool / (later + 1)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally`s that stop the servers


# ---- records and the plot -------------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def _sample(texts: list[str], n: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [texts[i] for i in rng.integers(0, len(texts), n)]


def plot(out: Path) -> None:
    """`serve.png` (latency against throughput, one panel per model) and a table, from every record in `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(p.read_text()) for p in sorted(out.glob("serve_*.json"))]
    if not records:
        raise SystemExit(f"no serve_*.json records in {out}")
    models = sorted({r["model"] for r in records})
    fig, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 5), squeeze=False)
    for ax, model in zip(axes[0], models):
        for i, r in enumerate(x for x in records if x["model"] == model):
            label = f"{r['server']} {r['plan']}"
            pts = [p for p in r["rates"] if p["ok"]]
            xs = [p["throughput_texts_per_s"] for p in pts]
            color = f"C{i}"
            ax.plot(xs, [p["p50_ms"] for p in pts], "o-", color=color, label=f"{label} p50")
            ax.plot(xs, [p["p99_ms"] for p in pts], "s--", color=color, label=f"{label} p99")
            if r.get("offline"):
                ax.axvline(r["offline"]["texts_per_s"], color=color, ls=":", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="answered texts/s (dotted: offline embed())", ylabel="latency, ms",
               title=f"{model}: POST /embed, 1-{max(r.get('max_texts', 32) for r in records)} texts a request, "
                     "Poisson arrivals")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "serve.png", dpi=120)
    print(f"\n{'model':<10} {'server':<22} {'plan':<10} {'lone p50 ms':>11} {'max texts/s':>12} {'p99 there ms':>13} "
          f"{'offline texts/s':>16} {'server/offline':>15}  rates end")
    for r in records:
        best = max(r["rates"], key=lambda p: p["throughput_texts_per_s"], default=None)
        off = (r.get("offline") or {}).get("texts_per_s")
        top = best["throughput_texts_per_s"] if best else math.nan
        print(f"{r['model']:<10} {r['server']:<22} {r['plan']:<10} {r['lone']['p50_ms']:11.2f} {top:12.0f} "
              f"{best['p99_ms'] if best else math.nan:13.1f} {off or math.nan:16.0f} "
              f"{top / off if off else math.nan:15.2f}  {r.get('rates_end', '')}")
    print(f"plot: {out / 'serve.png'}")


# ---- main -------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> None:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    texts = read_texts(args.data_dir)
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(texts))
    calib = work / "calibration.txt"
    calib.write_text("\n".join(_sample(texts, 512)) + "\n")
    cache = Path(args.compilation_cache) if args.compilation_cache else work / "compilation_cache"
    meta = {"command": " ".join([Path(sys.executable).name, "-m", "bench.serve", *sys.argv[1:]]),
            "commit": commit(), "date": datetime.date.today().isoformat(), "max_texts": args.max_texts,
            "duration_s": args.duration, "load_procs": args.load_procs}
    models, plans = args.models.split(","), args.plans.split(",")
    budget = Budget(args.time_budget, len(models) * (len(plans) + int(args.baseline)))
    signal.signal(signal.SIGTERM, _exit_on_signal)  # e.g. `timeout`: stop the server running, keep the records
    try:
        _run_servers(args, models, plans, out, work, texts, texts_file, calib, cache, meta, budget)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    plot(out)


def _run_servers(args: argparse.Namespace, models: list[str], plans: list[str], out: Path, work: Path,
                 texts: list[str], texts_file: Path, calib: Path, cache: Path, meta: dict, budget: Budget) -> None:
    from bench._models import model_dir

    for spec in models:
        name, _, path = spec.partition("=")
        hf_dir = Path(path) if path else model_dir(name)
        lone_texts: list[str] = []
        for plan in plans:
            budget.server_starts()
            ckpt = checkpoint(name, hf_dir, plan, work, calib)
            print(f"== {name} {plan}: samp-jax serve", flush=True)
            server = Served([sys.executable, "-m", "samp_jax.cli", "serve", f"{name}={ckpt}", "--plan", plan, "--port", "0",
                             "--max-batch-tokens", str(args.max_batch_tokens), "--auto-truncate",
                             "--compilation-cache", str(cache), *SERVE_FLAGS])
            try:
                lone_texts = lone_texts or short_texts(server.url, texts)
                lone = lone_requests(server.url, lone_texts, args.lone)
                print(f"  lone request: p50 {lone['p50_ms']:.2f} ms, p99 {lone['p99_ms']:.2f} ms", flush=True)
                rates, rates_end = sweep(server.url, args, texts_file, work, budget.sweep_deadline())
                stats = server_stats(server.url)
            finally:
                code = server.stop()
            record = {**meta, "server": "samp-jax", "model": name, "plan": plan, "startup_s": server.startup_s,
                      "startup_compile_s": server.compile_s(), "max_batch_tokens": args.max_batch_tokens,
                      "exit_code": code, "lone": lone, "rates": rates, "rates_end": rates_end, "batches": stats}
            record["offline"] = offline(["_offline_samp", str(ckpt), plan, str(texts_file), str(args.offline_n),
                                         "256"], work, f"{name}_{plan}", cache)
            record["device"] = record["offline"]["device"]
            _write(out / f"serve_{name}_samp-jax_{plan.replace(':', '-').replace(',', '_')}.json", record)
        if args.baseline:
            if importlib.util.find_spec("sentence_transformers") is None:
                print("sentence-transformers is not installed: no baseline", flush=True)
                continue
            print(f"== {name}: sentence-transformers fp16", flush=True)
            budget.server_starts()
            server = Served([sys.executable, "-m", "bench.serve", "_st_server", str(hf_dir), "127.0.0.1", "0", "256"],
                            env={"JAX_PLATFORMS": "cpu"})
            try:
                lone = lone_requests(server.url, lone_texts or texts[:50], args.lone)
                rates, rates_end = sweep(server.url, args, texts_file, work, budget.sweep_deadline())
            finally:
                server.stop()
            record = {**meta, "server": "sentence-transformers", "model": name, "plan": "fp16",
                      "startup_s": server.startup_s, "lone": lone, "rates": rates, "rates_end": rates_end}
            record["offline"] = offline(["_offline_st", str(hf_dir), str(texts_file), str(args.offline_n), "256"], work,
                                        f"{name}_st", cache)
            record["device"] = record["offline"]["device"]
            record["plan"] = "fp32" if record["device"].startswith("cpu") else "fp16"  # half() on CUDA only
            _write(out / f"serve_{name}_sentence-transformers.json", record)


def _write(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"  record: {path}", flush=True)


def add_load_arguments(ap: argparse.ArgumentParser, *, start_rate: float, duration: float) -> None:
    """The open-loop load's options (`sweep`), shared with bench/scale.py."""
    ap.add_argument("--start-rate", type=float, default=start_rate, help="requests/s of the first rate; doubled each step")
    ap.add_argument("--max-rate", type=float, default=12800.0)
    ap.add_argument("--duration", type=float, default=duration, help="seconds per rate")
    ap.add_argument("--max-texts", type=int, default=32, help="texts per request: uniform in 1..N")
    ap.add_argument("--max-p99-ms", type=float, default=2000.0, help="saturated (stop rising) past this p99")
    ap.add_argument("--load-procs", type=int, default=8, help="load-generating processes")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    internal = {"_load": _load_worker, "_offline_samp": _offline_samp, "_offline_st": _offline_st,
                "_st_server": _st_server}
    if argv and argv[0] in internal:  # a child process of this benchmark
        fn: Any = internal[argv[0]]
        types = {"_load": (str, float, float, int, str, int, str), "_offline_samp": (str, str, str, int, int, str),
                 "_offline_st": (str, str, int, int, str), "_st_server": (str, str, int, int)}[argv[0]]
        fn(*(t(a) for t, a in zip(types, argv[1:])))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="minilm", help="minilm, mpnet, or NAME=HF_FOLDER, comma-separated")
    ap.add_argument("--plans", default="fp16,full_int8")
    ap.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip sentence-transformers")
    ap.add_argument("--data-dir", type=Path, default=None, help="datasets (default: $SAMP_DATA, then ../shared/data)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "serve")
    add_load_arguments(ap, start_rate=50.0, duration=8.0)
    ap.add_argument("--lone", type=int, default=300, help="lone small requests timed")
    ap.add_argument("--offline-n", type=int, default=16384, help="texts of the offline embed() run")
    ap.add_argument("--max-batch-tokens", type=int, default=16384)
    ap.add_argument("--time-budget", type=float, metavar="S",
                    help="seconds for the whole run: each server's rising rates stop early to fit (see Budget)")
    ap.add_argument("--compilation-cache", help="JAX's persistent cache for the servers (default: a temporary one)")
    ap.add_argument("--plot", type=Path, metavar="OUT", help="only redraw the plot and table from the records in OUT")
    ap.add_argument("--smoke", action="store_true", help="CPU: minilm fp32 and full_int8, two low rates, 3 s each")
    args = ap.parse_args(argv)
    if args.plot:
        plot(args.plot)
        return
    if args.data_dir is None:
        from samp_jax.default_model import default_data_dir

        args.data_dir = default_data_dir()
    if args.smoke:
        args.plans = "fp32,full_int8" if args.plans == ap.get_default("plans") else args.plans
        args.start_rate, args.max_rate, args.duration, args.max_texts = 2.0, 4.0, 3.0, 4
        args.load_procs, args.lone, args.offline_n, args.max_batch_tokens = 2, 20, 64, 1024
        if args.out == ap.get_default("out"):
            args.out = Path(tempfile.mkdtemp(prefix="bench_serve_smoke_"))
    run(args)


if __name__ == "__main__":
    main()
