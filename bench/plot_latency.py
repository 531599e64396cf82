"""Plot one run's encoder latency and device-time breakdown from the raw records.

    python bench/plot_latency.py [--results bench/results] [--commit C] [--run LABEL] [--out bench/results/latency.png]

Left: wall-clock ms per implementation at each batch x seq of the run
(`latency.json`: samp-jax plans, the plain-XLA bf16 encoder, PyTorch), with
queued ("pipelined") calls beside single calls. Right: each plan's device time
split by kernel kind (`breakdown.json`, same commit), where the time goes.
The run is the records of one commit (default: the newest record's), so every
bar was measured in the same session on the same machine.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).parent / "results"
ORDER = ["XLA bf16", "fp16", "ffn_int8", "full_int8", "ffn_fp8", "full_fp8", "torch eager", "torch.compile"]
KINDS = [  # (label, predicate on the kernel family name), first match wins
    ("8-bit GEMM (Mosaic)", lambda f: "mosaic" in f),
    ("float GEMM (XLA, cuBLAS)", lambda f: "gemm" in f or f.startswith("nvjet") or "cublas" in f),
    ("attention", lambda f: "attention" in f),
    ("LayerNorm, embedding", lambda f: "layer_norm" in f),
    ("other XLA ops", lambda f: True),
]


def _kind(family: str) -> str:
    return next(label for label, match in KINDS if match(family.lower()))


def _label(rec: dict) -> str:
    impl, mode = rec["implementation"], rec["mode"]
    if impl.startswith("pytorch"):
        return "torch.compile" if "compile" in impl else "torch eager"
    return "XLA bf16" if "plain XLA" in impl else mode


def _run(records: list[dict], commit: str | None, run: str | None = None) -> tuple[str, list[dict]]:
    if run is not None:
        records = [r for r in records if r.get("run") == run]
        if not records:
            raise ValueError(f"no records with run={run!r}")
    if not records:
        raise ValueError("no records to plot")
    commit = commit or records[-1]["commit"]
    picked = [r for r in records if r["commit"] == commit]
    if not picked:
        raise ValueError(f"no records with commit={commit!r}; there are {sorted({r['commit'] for r in records})}")
    return commit, picked


def plot(results: Path = RESULTS, commit: str | None = None, out: Path | None = None, run: str | None = None) -> Path:
    """Write the latency figure of one commit's records in `results` (of one `run` label, if given) to `out`
    (default results/latency.png)."""
    commit, lat = _run(json.loads((results / "latency.json").read_text()), commit, run)
    breakdown_path = results / "breakdown.json"
    brk = [r for r in json.loads(breakdown_path.read_text()) if r["commit"] == commit] if breakdown_path.exists() else []
    fig, axes = plt.subplots(1, 2 if brk else 1, figsize=(14 if brk else 8, 5), squeeze=False)

    ax = axes[0][0]
    shapes = sorted({(r["batch"], r["seq"]) for r in lat})
    labels = sorted({_label(r) for r in lat}, key=lambda s: ORDER.index(s) if s in ORDER else len(ORDER))
    single = defaultdict(dict)
    queued = defaultdict(dict)
    for r in lat:  # the latest record wins where a run measured a point twice
        (queued if "pipelined" in r["implementation"] else single)[(r["batch"], r["seq"])][_label(r)] = r["median_ms"]
    width = 0.8 / max(len(labels), 1)
    for i, label in enumerate(labels):
        xs = [s + i * width for s in range(len(shapes))]
        ms = [single[sh].get(label, 0) for sh in shapes]
        ax.bar(xs, ms, width, label=label)
        for x, v in zip(xs, ms):
            if v:
                ax.text(x, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
        q = [queued[sh].get(label, 0) for sh in shapes]
        if any(q):
            ax.bar(xs, q, width * 0.45, color="none", edgecolor="black", hatch="//")
    ax.set_xticks([s + 0.4 - width / 2 for s in range(len(shapes))], [f"{b} x {s}" for b, s in shapes])
    ax.set_ylabel("ms per call (hatched: calls queued back to back)")
    ax.set_title(f"Encoder latency, {lat[0]['device'].split(' (')[0]}, {commit}")
    ax.legend(fontsize=8)

    if brk:
        ax = axes[0][1]
        names = [_label(r) for r in brk]
        bottom = [0.0] * len(brk)
        for kind, _ in KINDS:
            ms = [sum(k["ms"] for k in r["kernels"] if _kind(k["family"]) == kind) for r in brk]
            ax.bar(names, ms, bottom=bottom, label=kind)
            bottom = [b + v for b, v in zip(bottom, ms)]
        for x, r in enumerate(brk):
            ax.text(x, r["device_ms"], f"{r['device_ms']:.2f}", ha="center", va="bottom", fontsize=8)
        shape = f"{brk[0]['batch']} x {brk[0]['seq']}"
        ax.set_ylabel("device ms")
        ax.set_title(f"Device time by kernel kind at {shape}")
        ax.legend(fontsize=8)

    fig.tight_layout()
    out = out or results / "latency.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder with latency.json (and breakdown.json)")
    ap.add_argument("--commit", help="the run to plot (default: the newest record's commit)")
    ap.add_argument("--out", type=Path, help="PNG path (default: RESULTS/latency.png)")
    ap.add_argument("--run", help="only records with this run label (latency.py --run)")
    args = ap.parse_args()
    print(plot(args.results, args.commit, args.out, args.run))


if __name__ == "__main__":
    main()
