"""Writing a `TuneReport`: JSON, a Markdown table shaped like SAMP's Table 2, and a PNG plot."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from samp_jax.allocator import Measured, pareto_front
from samp_jax.tune import TuneReport


def write_report(report: TuneReport, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "tune_report.json", "markdown": out / "tune_report.md", "plot": out / "tune_plot.png"}
    paths["json"].write_text(json.dumps(dataclasses.asdict(report), indent=1) + "\n")
    paths["markdown"].write_text(markdown(report))
    plot(report, paths["plot"])
    return paths


def _mark(text: str, chosen: bool) -> str:
    return f"**{text}**" if chosen else text


def markdown(report: TuneReport) -> str:
    m = report.meta
    base = next(r for r in report.results if r.layers == 0)
    rec = report.recommendation.plan if report.recommendation else None
    n = max(r.layers for r in report.results)
    lines = [
        f"# samp-jax tune: {Path(m['checkpoint']).name}, {m['task']} ({m['dev_examples']} dev examples)",
        "",
        f"{m['date']}, device {m['device']} (jax {m['jax']}), latency of batch {m['profile']['batch']} x "
        f"seq {m['profile']['seq']}, float dtype {m['dtype']}, softmax probs {m['probs']}, scales "
        f"{m['scales']}. Speedup is against this fp16 plan in the same run. **Bold**: the recommendation "
        f"({report.reason}); *italic*: each family's pick by the accuracy-decay-aware rule ({m['rule']}).",
        "",
    ]
    if report.infeasible:
        lines += [f"> {report.infeasible}", ""]
    order = m["orders"][0]
    lines += [f"## Plans ({order} order)", "", f"| mode | MHA | FFN | {m['metric']} | latency ms | speedup |",
              "|---|---|---|---|---|---|"]
    lines.append(f"| fp16 | 0/{n} | 0/{n} | {base.accuracy:.4f} | {base.latency_ms:.3f} | 1.0000 |")
    picks = set(report.family_picks.values())
    for fam in dict.fromkeys(r.family for r in report.results):
        for r in sorted((r for r in report.results if r.family == fam and r.order == order and r.layers),
                        key=lambda r: r.layers):
            mha = f"{r.layers}/{n}" if fam.startswith("full") else f"0/{n}"
            cells = [f"{r.accuracy:.4f}", f"{r.latency_ms:.3f}", f"{base.latency_ms / r.latency_ms:.4f}"]
            if r.plan in picks:
                cells = [f"*{c}*" for c in cells]
            cells = [_mark(c, r.plan == rec) for c in cells]
            lines.append(f"| {fam} | {mha} | {r.layers}/{n} | " + " | ".join(cells) + " |")
    if len(m["orders"]) > 1:
        lines += ["", f"## {m['metric']} by layer order", "",
                  "| family | layers | " + " | ".join(m["orders"]) + " |", "|---|---|" + "---|" * len(m["orders"])]
        for fam in dict.fromkeys(r.family for r in report.results):
            for k in range(1, n):
                row = [next((f"{r.accuracy:.4f}" for r in report.results
                             if r.family == fam and r.order == o and r.layers == k), "") for o in m["orders"]]
                lines.append(f"| {fam} | {k}/{n} | " + " | ".join(row) + " |")
    if report.sensitivity:
        lines += ["", f"## Sensitivity: {m['metric']} with one layer quantized", "",
                  "| family | " + " | ".join(f"layer {i}" for i in range(n)) + " |", "|---|" + "---|" * n]
        for fam, vals in report.sensitivity.items():
            lines.append(f"| {fam} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    lines += ["", "## Top five by speedup / accuracy loss", ""]
    lines += [f"{i + 1}. `{p}`" for i, p in enumerate(report.top5)] or ["(no plan is faster than fp16)"]
    lines += ["", f"Recommended plan: `{rec}`" if rec else "No plan recommended.", ""]
    return "\n".join(lines)


def plot(report: TuneReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = report.meta
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=120)
    colors = {"ffn_int8": "tab:blue", "full_int8": "tab:red", "ffn_fp8": "tab:green", "full_fp8": "tab:purple"}
    markers = {"sensitivity": "o", "first": "^", "last": "v"}
    for fam in dict.fromkeys(r.family for r in report.results):
        for order in m["orders"]:
            rs = [r for r in report.results if r.family == fam and r.order == order and r.layers]
            ax.scatter([r.latency_ms for r in rs], [r.accuracy for r in rs], s=22, alpha=0.75,
                       color=colors.get(fam, "gray"), marker=markers.get(order, "o"), label=f"{fam} ({order})")
    base = next(r for r in report.results if r.layers == 0)
    ax.scatter([base.latency_ms], [base.accuracy], s=80, color="black", marker="s", label="fp16", zorder=3)
    front = pareto_front([Measured(r.plan, r.accuracy, r.latency_ms) for r in report.results])
    ax.plot([p.latency_ms for p in front], [p.accuracy for p in front], "k--", lw=1, label="Pareto front")
    if report.recommendation:
        r = report.recommendation
        ax.scatter([r.latency_ms], [r.accuracy], s=260, marker="*", color="gold", edgecolor="black", zorder=4,
                   label=f"recommended: {r.plan}")
    ax.set_xlabel(f"latency (ms), batch {m['profile']['batch']} x seq {m['profile']['seq']}, {m['device']}")
    ax.set_ylabel(f"dev {m['metric']}")
    ax.set_title(f"samp-jax tune: {Path(m['checkpoint']).name}, {m['task']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
