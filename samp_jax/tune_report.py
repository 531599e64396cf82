"""Writing a `TuneReport`: JSON, a Markdown table shaped like SAMP's Table 2, and a PNG plot."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from samp_jax.allocator import pareto_front
from samp_jax.plan import LayerMode
from samp_jax.tune import PlanResult, TuneReport


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


def _reference(report: TuneReport) -> PlanResult:
    """The fastest float plan, against which the report counts speedups and accuracy lost."""
    if report.reference is None:
        raise ValueError("a tune report needs its reference plan (the fastest float plan); this one has none")
    return report.reference


def _iqr(r) -> str:
    return f"{r.latency_q1_ms:.3f}-{r.latency_q3_ms:.3f}"


def markdown(report: TuneReport) -> str:
    m = report.meta
    ref = _reference(report)
    rec = report.recommendation.plan if report.recommendation else None
    n = max(r.layers for r in report.results)
    lines = [
        f"# samp-jax tune: {Path(m['checkpoint']).name}, {m['task']} ({m['dev_examples']} dev examples)",
        "",
        f"{m['date']}, device {m['device']} (jax {m['jax']}), latency of batch {m['profile']['batch']} x "
        f"seq {m['profile']['seq']}: the median of {m['repeats']} runs, IQR the interquartile range of those runs. "
        f"Quantized plans keep float dtype {m['dtype']} for their unquantized parts; softmax probs {m['probs']}, "
        f"scales {m['scales']}. Speedup and accuracy lost are against {ref.plan}, the fastest float plan in the "
        "same run (the reference). A plan counts as faster than another only when its IQR lies wholly below the "
        "other's; a quantized plan not faster than the reference by that measure is never recommended. "
        f"**Bold**: the recommendation ({report.reason}); *italic*: each family's pick by the accuracy-decay-aware "
        f"rule ({m['rule']}).",
        "",
    ]
    if m["reference_dtype"] != m["dtype"]:
        d = m["reference_dtype"]
        lines += [f"> The fastest float plan is {d}, not {m['dtype']}: the quantized plans here run their "
                  f"unquantized parts in {m['dtype']}; `--dtype {d}` measures them in {d}.", ""]
    if m.get("matching_threshold") is not None:
        lines += [f"Bi-encoder matching: a pair matches when the cosine similarity of its embeddings is >= "
                  f"{m['matching_threshold']:.6f}, the F1-maximising threshold of {ref.plan} on this dev set, "
                  "held fixed for every plan.", ""]
    if report.infeasible:
        lines += [f"> {report.infeasible}", ""]
    lines += ["## Float plans", "", f"| plan | {m['metric']} | latency ms | IQR ms | speedup |", "|---|---|---|---|---|"]
    for r in report.floats:
        name = f"{r.plan} (reference)" if r.plan == ref.plan else r.plan
        cells = [f"{r.accuracy:.4f}", f"{r.latency_ms:.3f}", _iqr(r), f"{ref.latency_ms / r.latency_ms:.4f}"]
        lines.append(f"| {name} | " + " | ".join(_mark(c, r.plan == rec) for c in cells) + " |")
    order = m["orders"][0]
    lines += ["", f"## Plans ({order} order)", "", f"| mode | MHA | FFN | {m['metric']} | latency ms | IQR ms | speedup |",
              "|---|---|---|---|---|---|---|"]
    base = next(r for r in report.results if r.layers == 0)
    lines.append(f"| {base.plan} | 0/{n} | 0/{n} | {base.accuracy:.4f} | {base.latency_ms:.3f} | {_iqr(base)} | "
                 f"{ref.latency_ms / base.latency_ms:.4f} |")
    picks = set(report.family_picks.values())
    for fam in dict.fromkeys(r.family for r in report.results):
        for r in sorted((r for r in report.results if r.family == fam and r.order == order and r.layers),
                        key=lambda r: r.layers):
            mha = f"{r.layers}/{n}" if LayerMode.parse(fam).quantizes_attention else f"0/{n}"
            cells = [f"{r.accuracy:.4f}", f"{r.latency_ms:.3f}", _iqr(r), f"{ref.latency_ms / r.latency_ms:.4f}"]
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
    lines += [f"{i + 1}. `{p}`" for i, p in enumerate(report.top5)] or [
        f"(no plan is faster than {ref.plan} beyond the latency spreads)"]
    lines += ["", f"Recommended plan: `{rec}`" if rec else "No plan recommended.", ""]
    return "\n".join(lines)


def plot(report: TuneReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = report.meta

    def xerr(rs):  # the IQR around each median, as error bars
        return [[r.latency_ms - r.latency_q1_ms for r in rs], [r.latency_q3_ms - r.latency_ms for r in rs]]

    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=120)
    colors = {"ffn_int8": "tab:blue", "full_int8": "tab:red", "ffn_fp8": "tab:green", "full_fp8": "tab:purple"}
    markers = {"sensitivity": "o", "first": "^", "last": "v"}
    for fam in dict.fromkeys(r.family for r in report.results):
        for order in m["orders"]:
            rs = [r for r in report.results if r.family == fam and r.order == order and r.layers]
            color = colors.get(fam, "gray")
            ax.errorbar([r.latency_ms for r in rs], [r.accuracy for r in rs], xerr=xerr(rs), fmt="none",
                        ecolor=color, alpha=0.4, lw=0.8)
            ax.scatter([r.latency_ms for r in rs], [r.accuracy for r in rs], s=22, alpha=0.75,
                       color=color, marker=markers.get(order, "o"), label=f"{fam} ({order})")
    fl = report.floats
    ax.errorbar([r.latency_ms for r in fl], [r.accuracy for r in fl], xerr=xerr(fl), fmt="none", ecolor="black", lw=0.8)
    ax.scatter([r.latency_ms for r in fl], [r.accuracy for r in fl], s=80, color="black", marker="s",
               label="float plans (" + ", ".join(r.plan for r in fl) + ")", zorder=3)
    for i, r in enumerate(fl):  # staggered: float plans often share an accuracy and nearly a latency
        ax.annotate(r.plan + (" (reference)" if r.plan == _reference(report).plan else ""), (r.latency_ms, r.accuracy),
                    textcoords="offset points", xytext=(6, 6 + 10 * i), fontsize=8)
    front = pareto_front([r.measured() for r in report.results + fl])
    ax.plot([p.latency_ms for p in front], [p.accuracy for p in front], "k--", lw=1, label="Pareto front")
    if report.recommendation:
        r = report.recommendation
        ax.scatter([r.latency_ms], [r.accuracy], s=260, marker="*", color="gold", edgecolor="black", zorder=4,
                   label=f"recommended: {r.plan}")
    ax.set_xlabel(f"latency (ms, median; bars: IQR), batch {m['profile']['batch']} x seq {m['profile']['seq']}, "
                  f"{m['device']}")
    ax.set_ylabel(f"dev {m['metric']}")
    ax.set_title(f"samp-jax tune: {Path(m['checkpoint']).name}, {m['task']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
