"""Plot one run's encoder latency and device-time breakdown from the raw records.

    python bench/plot_latency.py [--results bench/results] [--commit C] [--run LABEL] [--out bench/results/latency.png]
                                 [--breakdown-commit C]

Left: wall-clock ms per implementation at each batch x seq of the run
(`latency.json`: samp-jax plans, the plain-XLA bf16 encoder, PyTorch), with
queued ("pipelined") calls beside single calls; a grid gets one log-log panel
per sequence length. Right: each plan's device time split by kernel kind
(`breakdown.json`, same commit unless `--breakdown-commit`), where the time goes.
The run is the records of one commit (default: the newest record's), so every
bar was measured in the same session on the same machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

if not __package__:  # `python bench/NAME.py` puts bench/ first on the path, where its module names would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow installed ones: import `bench.*` instead

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FormatStrFormatter

RESULTS = Path(__file__).parent / "results"
ORDER = ["XLA bf16", "fp16", "ffn_int8", "full_int8", "ffn_fp8", "full_fp8", "torch eager", "torch.compile"]
KINDS = [  # (label, predicate on the kernel family name), first match wins
    ("GEMM (Mosaic: 8-bit, float)", lambda f: "mosaic" in f),
    ("GEMM (XLA, cuBLAS)", lambda f: "gemm" in f or f.startswith("nvjet") or "cublas" in f),
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


def _bars(ax, lat: list[dict], labels: list[str], single, queued) -> None:
    """One group of bars per batch x seq (a run of a few shapes); queued calls hatched inside."""
    shapes = sorted({(r["batch"], r["seq"]) for r in lat})
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


def _lines(ax, seq: int, labels: list[str], single, queued) -> None:
    """Latency against batch at one sequence length, log-log (a grid spans 0.3 to 55 ms); queued calls dotted."""
    batches = sorted({b for b, s in single if s == seq} | {b for b, s in queued if s == seq})
    for i, label in enumerate(labels):
        for points, style in ((single, "-"), (queued, ":")):
            xy = [(b, points[(b, seq)][label]) for b in batches if label in points.get((b, seq), {})]
            if xy:
                ax.plot(*zip(*xy), style, marker="o", markersize=3, color=f"C{i}",
                        label=label if style == "-" else None)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.set_xlabel("batch")
    ax.set_title(f"sequence {seq}")
    ax.grid(True, which="both", alpha=0.3)


def plot(results: Path = RESULTS, commit: str | None = None, out: Path | None = None, run: str | None = None,
         breakdown_commit: str | None = None) -> Path:
    """Write the latency figure of one commit's records in `results` (of one `run` label, if given) to `out`
    (default results/latency.png). A grid (several batches per sequence length) is drawn as one log-log panel
    per sequence length, a few shapes as bars. The device-time panel takes `breakdown.json`'s records of
    `breakdown_commit` (default: the same commit), at the last shape that commit broke down."""
    commit, lat = _run(json.loads((results / "latency.json").read_text()), commit, run)
    breakdown_path = results / "breakdown.json"
    brk = []
    if breakdown_path.exists():
        brk = [r for r in json.loads(breakdown_path.read_text()) if r["commit"] == (breakdown_commit or commit)]
        brk = [r for r in brk if (r["batch"], r["seq"]) == (brk[-1]["batch"], brk[-1]["seq"])] if brk else []
    elif breakdown_commit:
        raise ValueError(f"breakdown_commit={breakdown_commit!r} but {breakdown_path} does not exist")
    labels = sorted({_label(r) for r in lat}, key=lambda s: ORDER.index(s) if s in ORDER else len(ORDER))
    single: defaultdict[tuple[int, int], dict[str, float]] = defaultdict(dict)
    queued: defaultdict[tuple[int, int], dict[str, float]] = defaultdict(dict)
    for r in lat:  # the latest record wins where a run measured a point twice
        (queued if "pipelined" in r["implementation"] else single)[(r["batch"], r["seq"])][_label(r)] = r["median_ms"]
    seqs = sorted({s for _, s in single})
    grid = any(len({b for b, s in single if s == seq}) > 1 for seq in seqs)
    panels = (len(seqs) if grid else 1) + bool(brk)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels if grid else 8 + 6 * bool(brk), 5), squeeze=False)
    device = lat[0]["device"].split(" (")[0]
    if grid:
        for ax, seq in zip(axes[0], seqs):
            _lines(ax, seq, labels, single, queued)
        axes[0][0].set_ylabel("ms per call (dotted: calls queued back to back)")
        axes[0][0].legend(fontsize=8)
        fig.suptitle(f"Encoder latency, BERT-base, {device}, {commit}" + (f" (run {run!r})" if run else ""))
    else:
        _bars(axes[0][0], lat, labels, single, queued)
        axes[0][0].set_title(f"Encoder latency, {device}, {commit}")
        axes[0][0].legend(fontsize=8)

    if brk:
        ax = axes[0][-1]
        names = [_label(r) for r in brk]
        bottom = [0.0] * len(brk)
        for kind, _ in KINDS:
            ms = [sum(k["ms"] for k in r["kernels"] if _kind(k["family"]) == kind) for r in brk]
            ax.bar(names, ms, bottom=bottom, label=kind)
            bottom = [b + v for b, v in zip(bottom, ms)]
        for x, r in enumerate(brk):
            ax.text(x, r["device_ms"], f"{r['device_ms']:.2f}", ha="center", va="bottom", fontsize=8)
        ax.set_ylabel("device ms")
        ax.set_title(f"Device time by kernel kind at {brk[0]['batch']} x {brk[0]['seq']} ({brk[0]['commit']})")
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
    ap.add_argument("--breakdown-commit", help="the device-time breakdown's commit (default: the run's)")
    args = ap.parse_args()
    print(plot(args.results, args.commit, args.out, args.run, args.breakdown_commit))


if __name__ == "__main__":
    main()
