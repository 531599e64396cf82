"""Outlier migration (`smooth:ALPHA` plans) against per-tensor scales, all layers in one 8-bit family.

    python bench/smooth_accuracy.py --model minilm --task mrpc [--limit 1000] [--alphas 0.5,0.6,0.7,0.8,0.9,1]

Takes the checkpoint `bench/finetune.py` cached, calibrates it on training text with each calibrator
(`--calibrators`), and on held-out data (bench/_tasks.py `selection_set`: a dev split, or training rows the
fine-tune did not use; never the reported split) chooses, per family (`--families`):
  - the calibrator of the per-tensor all-layer plan (`FAMILY`), and
  - the strength of the smoothed one (`FAMILY,smooth:ALPHA`; its ranges are the per-channel maxima every
    calibrator records alike, so the calibrator does not enter);
then reports both, and the fp16 plan, on the reported split. The choice is by fidelity, not by the task
metric: the relative error of the head's outputs (logits, of real tokens for NER) against the fp16 plan's on
the held-out inputs. A metric on a few hundred held-out examples moves by a point between plans of equal
quality (one MRPC dev example is 0.3 F1), which would pick noise; the output error is continuous and
needs no label. Accuracy is measured on this machine (the plans compute the same on any device).
Writes OUT/<model>-<task>/smooth.json and prints a table.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

if not __package__:  # `python bench/NAME.py` puts bench/ first on the path, where its module names would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow installed ones: import `bench.*` instead

from bench._tasks import eval_set, selection_set
from bench._timing import commit
from bench.accuracy import calibration_texts, study_args, study_inputs


def main() -> None:
    from samp_jax.default_model import cache_dir

    ap = study_args(__doc__.splitlines()[0], "mrpc", "max,percentile,mse")
    ap.add_argument("--alphas", default="0.5,0.6,0.7,0.8,0.9,1")
    ap.add_argument("--families", default="full_int8,full_fp8")
    ap.add_argument("--select-examples", type=int, default=500, help="held-out examples the choices are made on")
    ap.add_argument("--layerwise", action="store_true", help="compile per layer mode (samp_jax.layerwise)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "accuracy")
    args = ap.parse_args()

    from convert import convert_hf_checkpoint
    from samp_jax.calibration import calibrate
    from samp_jax.checkpoint import SCALES_FILE, load_checkpoint, save_scales
    from samp_jax.evaluation import headline
    from samp_jax.model import SampModel
    from samp_jax.plan import Plan
    from samp_jax.quant.points import CHANNEL_POINTS, parse_key
    from samp_jax.tune import Tuner

    t, data, src, finetune_record = study_inputs(args)
    name = f"{Path(args.model).name}-{t.name}"
    texts = calibration_texts(t, data, args.calib_examples)
    ckpts = {}
    for method in args.calibrators.split(","):  # beside bench/accuracy.py's, with per-channel ranges
        path = cache_dir() / "accuracy" / f"{name}-{method}"
        if not (path / SCALES_FILE).is_file() or set(CHANNEL_POINTS) - {
                parse_key(k)[1].name for k in load_checkpoint(path).scales.channels}:
            ck = convert_hf_checkpoint(src, path, overwrite=True)
            save_scales(path, calibrate(SampModel(ck, "fp32"), texts, method, max_length=t.max_length))
        ckpts[method] = path
    held_out = selection_set(t, data, finetune_record, args.select_examples)
    if held_out is None:
        raise SystemExit(f"task {t.name} has no held-out labelled data to choose on")
    dev = eval_set(t, data, args.limit)
    t0 = time.time()

    def outputs(model: SampModel, inputs: list):
        """The head's outputs for `inputs`, real rows (and for NER real tokens) only, concatenated."""
        out = []
        for _, _, b in model.batches(inputs, batch_size=128, truncation=True, max_length=t.max_length,
                                     progress=False):
            real = np.asarray(b.attention_mask).astype(bool)
            mask = real.astype(np.int32)
            mask[~real.any(axis=1), 0] = 1  # the batch's padding rows: one token each, dropped below
            y = np.asarray(model(b.input_ids, mask, b.token_type_ids), np.float64)
            out.append(y[real] if y.ndim == 3 else y[real.any(axis=1)])
        return np.concatenate(out)

    reference = outputs(SampModel(load_checkpoint(ckpts[next(iter(ckpts))]), "fp16"), held_out.inputs)

    def fidelity(method: str, plan: Plan) -> float:
        got = outputs(SampModel(load_checkpoint(ckpts[method]), plan), held_out.inputs)
        return float(np.linalg.norm(got - reference) / np.linalg.norm(reference))

    def score(method: str, plan: Plan, d) -> float:
        tu = Tuner(ckpts[method], d, progress=False, layerwise=args.layerwise)
        if tu.bi_encoder:
            tu.choose_threshold(tu.float_plan("fp16"))
        return headline(t.kind, tu.metrics(plan))

    first = next(iter(ckpts))
    n = load_checkpoint(ckpts[first]).config.num_layers
    alphas = [a for a in args.alphas.split(",") if a]
    rec: dict = dict(model=Path(args.model).name, task=t.name, split=t.eval, examples=len(dev),
                     held_out=dict(split=t.select or f"{t.train}, rows the fine-tune did not use",
                                   examples=len(held_out)), families={})
    fp16 = Plan.uniform("fp16", n)
    rec["fp16"] = score(first, fp16, dev)
    for family in args.families.split(","):
        grid = {}
        for method in ckpts:
            grid[(method, "")] = fidelity(method, Plan.uniform(family, n))
            # a smoothed plan takes every range but the softmax's fixed uint8 one from the per-channel maxima,
            # which each calibrator records alike: one calibrator's checkpoint measures them all
            for a in alphas if method == first else ():
                grid[(method, a)] = fidelity(method, Plan.parse(f"{family},smooth:{a}", n))
            print(f"{family} {method}: held-out output error vs fp16 " + ", ".join(
                f"{a or 'per-tensor'} {v:.4f}" for (m, a), v in grid.items() if m == method), flush=True)
        plain = min((k for k in grid if not k[1]), key=lambda k: grid[k])
        smooth = min((k for k in grid if k[1]), key=lambda k: grid[k])
        plain_plan, smooth_plan = Plan.uniform(family, n), Plan.parse(f"{family},smooth:{smooth[1]}", n)
        rec["families"][family] = dict(
            held_out_output_error={f"{m}|{a or 'per-tensor'}": v for (m, a), v in grid.items()},
            per_tensor=dict(calibrator=plain[0], plan=str(plain_plan), metric=score(plain[0], plain_plan, dev)),
            smoothed=dict(calibrator=smooth[0], plan=str(smooth_plan), metric=score(smooth[0], smooth_plan, dev)))
    rec["seconds"] = round(time.time() - t0)
    rec["date"] = time.strftime("%Y-%m-%d")
    rec["commit"] = commit()
    rec["command"] = " ".join(["python", "bench/smooth_accuracy.py", *sys.argv[1:]])
    out = args.out / name
    out.mkdir(parents=True, exist_ok=True)
    from samp_jax.fileio import atomic_write_text

    atomic_write_text(out / "smooth.json", json.dumps(rec, indent=1) + "\n")
    print(f"\n{name} ({t.eval}, {len(dev)} examples); choices on {len(held_out)} held-out examples")
    print(f"{'plan':<28}{'calibrator':<12}{'metric':>8}{'vs fp16':>9}")
    print(f"{'fp16':<28}{'':<12}{100 * rec['fp16']:>8.2f}")
    for fam in rec["families"].values():
        for r in (fam["per_tensor"], fam["smoothed"]):
            print(f"{r['plan']:<28}{r['calibrator']:<12}{100 * r['metric']:>8.2f}{100 * (r['metric'] - rec['fp16']):>+9.2f}")


if __name__ == "__main__":
    main()
