"""The accuracy study: SAMP's Table 2 for a fine-tuned encoder on a real task, through `samp-jax tune`.

    python bench/accuracy.py --model minilm --task sst2 [--limit N] [--latency-json bench/results/plan_latency.json]

Takes the checkpoint `bench/finetune.py` cached, converts it, calibrates it on
training text with every calibrator (max, percentile, MSE, entropy), then:
  1. the full sweep (`Tuner.run`): every mode family over 0..L quantized layers
     in the sensitivity, first-k and last-k orders, with the default calibrator
     and the improved softmax (`probs=uint8`);
  2. the all-layer plans of every family under every calibrator, with the naive
     (`probs=int8`) and improved (`uint8`) treatment of the probabilities.
Accuracy is measured here (any device: the plans are the same programs). Speedups
come from `--latency-json`, the GPU benchmark of the same plans (bench/plan_latency.py:
latency depends only on how many layers run in each mode); without it, from this
machine's clock, and the table says so. Writes DIR/<model>-<task>/{table2.md,
accuracy.json, tune_report.*} (the plot is tune_plot.png).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

if not __package__:  # `python bench/NAME.py` puts bench/ first on the path, where its module names would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow installed ones: import `bench.*` instead

from bench._tasks import TASKS, eval_set, read_classification, read_conll_tags, selection_set, task
from bench.finetune import finetuned_dir

FAMILY_ORDER = ("full_int8", "ffn_int8", "full_fp8", "ffn_fp8")
DEFAULT_CALIBRATOR = "percentile"


def calibration_texts(t, data: Path, n: int) -> list:
    """The first `n` examples of the training split (never the evaluated split)."""
    if t.train is None:
        raise SystemExit(f"task {t.name} has no training split to calibrate on")
    if t.kind == "ner":
        return [" ".join(tokens) for tokens, _ in read_conll_tags(data / t.train)[:n]]
    texts, _ = read_classification(t, data, t.train)
    return texts[:n]


def latency_table(path: Path | None) -> dict | None:
    """{modes: record} from bench/plan_latency.py's records."""
    if path is None:
        return None
    table = {}
    for r in json.loads(path.read_text()):
        table[r["modes"]] = r
    return table


def lookup_latency(table: dict, layers) -> tuple[float, bool]:
    """The plan's GPU latency, and whether it was interpolated.

    bench/plan_latency.py times every count of quantized layers for a 6-layer
    model but only some counts (`--counts`) for a 12-layer one, where each plan
    compiles for ~40 s. Each layer costs the same in a given mode, so latency is
    linear in the count; a missing count of a one-family plan is interpolated
    between the nearest measured counts of that family (0 = the fp16 plan).
    """
    key = modes_key(layers)
    if key in table:
        return table[key]["median_ms"], False
    counts = Counter(layers)
    fams = [m for m in counts if m != "fp16"]
    if len(fams) != 1 or set(counts) - {"fp16", fams[0]}:
        raise KeyError(key)
    fam, n, k = fams[0], len(layers), counts[fams[0]]
    known = {0: table.get(modes_key(["fp16"] * n))}
    for j in range(1, n + 1):
        known[j] = table.get(modes_key([fam] * j + ["fp16"] * (n - j)))
    lo = max((j for j in known if j < k and known[j]), default=None)
    hi = min((j for j in known if j > k and known[j]), default=None)
    if lo is None or hi is None:
        raise KeyError(key)
    a, b = known[lo]["median_ms"], known[hi]["median_ms"]
    return a + (b - a) * (k - lo) / (hi - lo), True


def choose_calibrator(ckpts: dict, held_out, make_tuner) -> dict:
    """The calibrator whose all-layer plans score best on held-out data (mean over the mode families).

    No single calibrator wins every task (percentile clips the outliers some
    tasks need, max spends the 8-bit range on them), so the study chooses per
    task, as a user of `samp-jax tune` would: on labelled data that is neither
    the reported split nor what the model was trained on.
    """
    from samp_jax.evaluation import headline

    if held_out is None or len(ckpts) == 1:
        chosen = DEFAULT_CALIBRATOR if DEFAULT_CALIBRATOR in ckpts else next(iter(ckpts))
        return dict(chosen=chosen, why="no held-out split: the default", scores={}, examples=0)
    scores = {}
    for method, path in ckpts.items():
        tu = make_tuner(path, held_out)
        scores[method] = {f: headline(held_out.task, tu.metrics(tu.plan([f] * tu.num_layers))) for f in FAMILY_ORDER}
    mean = {m: sum(v.values()) / len(v) for m, v in scores.items()}
    chosen = max(mean, key=lambda m: (mean[m], m == DEFAULT_CALIBRATOR))
    why = f"best mean over the all-layer plans on {len(held_out)} held-out examples"
    return dict(chosen=chosen, why=why, scores=scores, examples=len(held_out),
                per_family=per_family_choice(scores, chosen))


def per_family_choice(scores: dict, chosen: str) -> dict[str, str]:
    """Each family's best calibrator on the held-out data (ties go to the overall choice)."""
    return {f: max(scores, key=lambda m: (scores[m][f], m == chosen)) for f in FAMILY_ORDER}


def tensor_kinds() -> dict[str, tuple[str, ...]]:
    """Quantization points grouped by the part of the layer whose GEMMs read them: "attention" (quantized in
    full_* modes only) and "ffn" (in ffn_* modes too)."""
    from samp_jax.quant.points import POINTS

    return {"attention": tuple(p.name for p in POINTS if "ffn" not in p.families),
            "ffn": tuple(p.name for p in POINTS if "ffn" in p.families)}


def mix_calibrators(ckpts: dict, held_out, start: str, make_tuner, family: str = "full_int8") -> dict:
    """Scales taken per tensor kind from different calibrators, chosen greedily on held-out data.

    The sweep shows attention's 8-bit tensors and the FFN's wanting different
    calibrators (mpnet CoNLL: percentile FFN scales, MSE or max attention scales).
    Starting from `start`'s scales, each kind in turn takes the calibrator that
    scores best on `held_out` for `family` on all layers. The mix is written as a
    checkpoint beside the others (parameters linked, not copied).
    """
    from samp_jax.checkpoint import SCALES_FILE, load_checkpoint, save_scales
    from samp_jax.evaluation import headline
    from samp_jax.quant.points import parse_key
    from samp_jax.quant.scales import Scales

    kinds = tensor_kinds()
    acts = {m: load_checkpoint(p).scales for m, p in ckpts.items()}
    root = Path(ckpts[start]).parent

    def build(choice: dict[str, str]) -> Path:
        name = ",".join(f"{k}={choice[k]}" for k in kinds)
        prefix = Path(ckpts[start]).name.rsplit("-", 1)[0]  # <model>-<task>
        path = root / (f"{prefix}-mixed-" + "-".join(f"{k}_{choice[k]}" for k in kinds))
        merged = dict(acts[start].activations)
        for kind, method in choice.items():
            for key, amax in acts[method].activations.items():
                if parse_key(key)[1].name in kinds[kind]:
                    merged[key] = amax
        if not (path / SCALES_FILE).is_file():
            path.mkdir(parents=True, exist_ok=True)
            for f in Path(ckpts[start]).iterdir():
                if f.name not in (SCALES_FILE, "tune_cache.json") and not (path / f.name).exists():
                    (path / f.name).symlink_to(f.resolve())
            save_scales(path, Scales(merged, acts[start].weights, method=f"mixed({name})", source="bench/accuracy.py"))
        return path

    def score(choice):
        tu = make_tuner(build(choice), held_out)
        return headline(held_out.task, tu.metrics(tu.plan([family] * tu.num_layers)))

    choice = {k: start for k in kinds}
    best, tried = score(choice), {}
    for kind in kinds:
        for method in ckpts:
            if method == choice[kind]:
                continue
            trial = {**choice, kind: method}
            tried[",".join(f"{k}={v}" for k, v in trial.items())] = v = score(trial)
            if v > best:
                best, choice = v, trial
    return dict(family=family, choice=choice, held_out=best, tried=tried, path=str(build(choice)))


def modes_key(layers) -> str:
    return ",".join(f"{m}x{n}" for m, n in sorted(Counter(layers).items()))


def study_args(description: str, task: str, calibrators: str) -> argparse.ArgumentParser:
    """The arguments every accuracy study takes: the fine-tuned model and task, the data, the reported split's
    limit and the calibration."""
    from samp_jax.default_model import default_data_dir

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--task", choices=sorted(TASKS), default=task)
    ap.add_argument("--data-dir", default=str(default_data_dir()))
    ap.add_argument("--limit", type=int, help="evaluate the first N examples of the reported split")
    ap.add_argument("--calib-examples", type=int, default=512)
    ap.add_argument("--calibrators", default=calibrators)
    return ap


def study_inputs(args: argparse.Namespace) -> tuple[Any, Path, Path, dict]:
    """The task, the data folder, the fine-tuned model's folder (`bench/finetune.py` made it) and its record."""
    t = task(args.task)
    src = finetuned_dir(args.model, t.name)
    if not (src / "config.json").is_file():
        raise SystemExit(f"{src} not found: run `python bench/finetune.py --model {args.model} --task {t.name}` first")
    record = json.loads((src / "finetune.json").read_text()) if (src / "finetune.json").is_file() else {}
    return t, Path(args.data_dir), src, record


def main() -> None:
    from samp_jax.default_model import cache_dir

    ap = study_args(__doc__.splitlines()[0], "sst2", "max,percentile,mse,entropy")
    ap.add_argument("--select-examples", type=int, default=1000,
                    help="held-out examples on which the calibrator is chosen (bench/_tasks.py selection_set)")
    ap.add_argument("--latency-json", type=Path, help="GPU plan latencies (bench/plan_latency.py)")
    ap.add_argument("--layerwise", action="store_true",
                    help="compile per layer mode, not per plan (samp_jax.layerwise): for 12-layer models on a GPU")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "accuracy")
    ap.add_argument("--retable", type=Path, metavar="DIR",
                    help="rewrite DIR/table2.md from DIR/accuracy.json and tune_report.json (no model needed)")
    args = ap.parse_args()
    if args.retable:
        if not (args.retable / "accuracy.json").is_file():
            raise SystemExit(f"--retable {args.retable}: no accuracy.json there (a folder bench/accuracy.py wrote)")
        rec = json.loads((args.retable / "accuracy.json").read_text())
        rep = json.loads((args.retable / "tune_report.json").read_text())
        report = SimpleNamespace(meta=rep["meta"], results=[SimpleNamespace(**r) for r in rep["results"]])
        (args.retable / "table2.md").write_text(table2(rec, report))
        print((args.retable / "table2.md").read_text())
        return

    from convert import convert_hf_checkpoint
    from samp_jax.calibration import calibrate
    from samp_jax.checkpoint import save_scales
    from samp_jax.evaluation import headline
    from samp_jax.model import SampModel
    from samp_jax.plan import LayerMode, Plan
    from samp_jax.tune import Tuner
    from samp_jax.tune_report import write_report

    t, data, src, finetune_record = study_inputs(args)
    model_name = Path(args.model).name
    name = f"{model_name}-{t.name}"
    out = args.out / name
    out.mkdir(parents=True, exist_ok=True)
    dev = eval_set(t, data, args.limit)
    texts = calibration_texts(t, data, args.calib_examples)
    lat = latency_table(args.latency_json)
    interpolated: set[str] = set()

    # one converted checkpoint per calibrator (the Tuner's cache lives beside each)
    ckpts = {}
    for method in args.calibrators.split(","):
        path = cache_dir() / "accuracy" / f"{name}-{method}"
        from samp_jax.checkpoint import SCALES_FILE

        if not (path / SCALES_FILE).is_file():
            ck = convert_hf_checkpoint(src, path, overwrite=True)
            scales = calibrate(SampModel(ck, "fp32"), texts, method, max_length=t.max_length, progress=True)
            save_scales(path, scales)
        ckpts[method] = path

    def gpu_latency(plan: Plan) -> float:
        """A plan's latency looked up in the GPU benchmark of the same mode counts (accuracy is measured here)."""
        assert lat is not None
        try:
            ms, guessed = lookup_latency(lat, plan.layers)
        except KeyError as e:
            raise SystemExit(f"{args.latency_json} lacks plan modes {e} and counts around them; "
                             "run bench/plan_latency.py for them") from None
        interpolated.update([modes_key(plan.layers)] if guessed else [])
        return ms

    latency = gpu_latency if lat is not None else None  # without GPU records: this machine's clock

    def held_out_tuner(path, d):
        return Tuner(path, d, progress=False, layerwise=args.layerwise, latency=latency)

    t0 = time.time()
    held_out = selection_set(t, data, finetune_record, args.select_examples)
    selection = choose_calibrator(ckpts, held_out, held_out_tuner)
    selection["split"] = t.select or f"{t.train}, rows the fine-tune did not use"
    main_calib = selection["chosen"]
    print(f"calibrator: {main_calib} ({selection['why']})", flush=True)
    tuner = Tuner(ckpts[main_calib], dev, batch=32, seq=128, probs="uint8", repeats=3, layerwise=args.layerwise,
                  latency=latency)
    report = tuner.run()
    report.meta["accuracy_device"] = report.meta["device"]
    report.meta["layerwise"] = args.layerwise
    report.meta["latency_interpolated"] = sorted(interpolated)
    if lat is not None:
        any_rec = next(iter(lat.values()))
        report.meta["device"] = any_rec.get("device", "gpu")
        report.meta["latency_source"] = f"{args.latency_json} (commit {any_rec.get('commit')}, {any_rec.get('date')})"
    else:
        report.meta["latency_source"] = "this machine's clock"
    write_report(report, out)

    # calibrators x softmax treatment, on the all-layer plans
    n_layers = tuner.num_layers
    fp32 = headline(t.kind, tuner.metrics(Plan(("fp16",) * n_layers, dtype="fp32")))
    fp16 = next(r.accuracy for r in report.results if r.layers == 0)
    grid = []
    for method, path in ckpts.items():
        for probs in ("uint8", "int8"):
            tu = Tuner(path, dev, probs=probs, progress=False, layerwise=args.layerwise, latency=latency)
            for fam in FAMILY_ORDER:
                if probs == "int8" and not LayerMode.parse(fam).quantizes_attention:
                    continue  # FFN-only plans keep attention in float: P's treatment does not apply
                plan = tu.plan([fam] * n_layers)
                grid.append(dict(calibrator=method, probs=probs, family=fam,
                                 metric=headline(t.kind, tu.metrics(plan))))
    mixed = None
    if selection["scores"]:
        mixed = mix_calibrators(ckpts, held_out, selection["per_family"]["full_int8"], held_out_tuner)
        tu = Tuner(mixed["path"], dev, progress=False, layerwise=args.layerwise, latency=latency)
        mixed["metric"] = headline(t.kind, tu.metrics(tu.plan(["full_int8"] * n_layers)))
    record = dict(model=model_name, task=t.name, mixed=mixed, split=t.eval, examples=len(dev), metric=report.meta["metric"],
                  fp32_torch=finetune_record.get("metrics"), fp32=fp32, fp16=fp16,
                  recommendation=report.recommendation.plan if report.recommendation else None, selection=selection,
                  sweep=[r.__dict__ for r in report.results], calibrators=grid, meta=report.meta,
                  seconds=round(time.time() - t0))
    (out / "accuracy.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    (out / "table2.md").write_text(table2(record, report))
    print((out / "table2.md").read_text())


def table2(rec: dict, report) -> str:
    """The paper's Table 2 shape: rows = quantized layers, columns = accuracy and speedup per mode family."""
    from samp_jax.plan import Plan

    m, rec_plan = report.meta, rec["recommendation"]
    rows = {(r.family, r.layers): r for r in report.results if r.order == "sensitivity"}
    base = next(r for r in report.results if r.layers == 0)
    n = max(k for _, k in rows)
    lines = [
        f"# {rec['model']} on {rec['task']} ({rec['split']}, {rec['examples']} examples): {rec['metric']} and speedup",
        "",
        f"{m['date']}; accuracy measured on {m.get('accuracy_device', 'the CPU')}"
        f"{' (compiled per layer mode, samp_jax.layerwise)' if m.get('layerwise') else ''}, "
        f"speedup vs the fp16 plan at batch 32 x seq 128 from {m['latency_source']}"
        f"{'; speedups in italics are interpolated between measured layer counts' if m.get('latency_interpolated') else ''}"
        ". Calibrator "
        f"{m['scales']}, probabilities {m['probs']}, layers quantized in the sensitivity order. "
        f"FP32 (PyTorch, full split): {rec['fp32_torch']}; FP32 (samp-jax): {rec['fp32']:.4f}; "
        f"FP16 plan: {rec['fp16']:.4f}. **Bold**: the allocator's recommendation.",
        "",
        "| layers | " + " | ".join(f"{f} | speedup" for f in FAMILY_ORDER) + " |",
        "|---|" + "---|---|" * len(FAMILY_ORDER),
    ]
    for k in range(n + 1):
        cells = []
        for f in FAMILY_ORDER:
            r = rows.get((f, k))
            if r is None:
                cells += ["–", "–"]
                continue
            acc, sp = f"{100 * r.accuracy:.2f}", f"{base.latency_ms / r.latency_ms:.2f}x"
            if modes_key(Plan.parse(r.plan, n).layers) in m.get("latency_interpolated", ()):
                sp = f"*{sp}*"
            if r.plan == rec_plan:
                acc, sp = f"**{acc}**", f"**{sp}**"
            cells += [acc, sp]
        lines.append(f"| {k}/{n} | " + " | ".join(cells) + " |")
    sel = rec.get("selection") or {}
    if sel.get("scores"):
        lines += ["", f"## Choosing the calibrator: all-layer plans on {sel['split']} ({sel['examples']} examples)", "",
                  f"Chosen: **{sel['chosen']}** ({sel['why']}); the sweep above uses its scales.", "",
                  "| calibrator | " + " | ".join(FAMILY_ORDER) + " | mean |", "|---|" + "---|" * (len(FAMILY_ORDER) + 1)]
        for cal, v in sel["scores"].items():
            vals = [v[f] for f in FAMILY_ORDER]
            lines.append(f"| {cal} | " + " | ".join(f"{100 * x:.2f}" for x in vals)
                         + f" | {100 * sum(vals) / len(vals):.2f} |")
        by_cal = {(g["calibrator"], g["family"]): g["metric"] for g in rec["calibrators"] if g["probs"] == "uint8"}
        pf = sel.get("per_family") or per_family_choice(sel["scores"], sel["chosen"])  # older records lack it
        lines += ["", f"Each family with its own held-out choice, on {rec['split']} (fp16 plan "
                  f"{100 * rec['fp16']:.2f}):", "", "| family | calibrator | all layers | vs fp16 |", "|---|---|---|---|"]
        for f in FAMILY_ORDER:
            v = by_cal.get((pf[f], f))
            if v is not None:
                lines.append(f"| {f} | {pf[f]} | {100 * v:.2f} | {100 * (v - rec['fp16']):+.2f} |")
    mx = rec.get("mixed")
    if mx:
        ch = ", ".join(f"{k}: {v}" for k, v in mx["choice"].items())
        lines += ["", f"{mx['family']} on all layers with scales chosen per tensor kind on the held-out data "
                  f"({ch}): **{100 * mx['metric']:.2f}** ({100 * (mx['metric'] - rec['fp16']):+.2f} vs fp16; "
                  f"held-out {100 * mx['held_out']:.2f})."]
    lines += ["", f"## All layers quantized on {rec['split']}: calibrator x softmax treatment", "",
              "| calibrator | probs | " + " | ".join(FAMILY_ORDER) + " |", "|---|---|" + "---|" * len(FAMILY_ORDER)]
    by = {(g["calibrator"], g["probs"], g["family"]): g["metric"] for g in rec["calibrators"]}
    for cal in dict.fromkeys(g["calibrator"] for g in rec["calibrators"]):
        for probs in ("uint8", "int8"):
            vals = [by.get((cal, probs, f)) for f in FAMILY_ORDER]
            lines.append(f"| {cal} | {probs} | " + " | ".join("–" if v is None else f"{100 * v:.2f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
