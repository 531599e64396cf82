"""`samp-jax tune` end to end on a small random model on the CPU: report, cache, stored plan, targets."""

from __future__ import annotations

import json

import numpy as np
import pytest

import samp_jax
from samp_jax.cli import main
from samp_jax.evaluation import entity_f1, f1_binary, label_indices, read_dev_set
from samp_jax.plan import Plan
from tests.conftest import make_hf_model

FAST = ["--families", "ffn_int8,full_int8", "--batch", "2", "--seq", "16", "--repeats", "3", "--dtype", "fp32",
        "--quiet"]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, minilm_dir, real_sentences):
    root = tmp_path_factory.mktemp("tune")
    make_hf_model(root / "hf", "BertForSequenceClassification", labels=("negative", "positive"),
                  tokenizer_from=minilm_dir, seed=3)
    ckpt = root / "ckpt"
    assert main(["convert", str(root / "hf"), str(ckpt)]) == 0
    dev = root / "dev.tsv"
    dev.write_text("sentence\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(real_sentences)))
    assert main(["calibrate", str(ckpt), "--data", str(dev), "--quiet"]) == 0
    assert main(["tune", str(ckpt), "--data", str(dev), "--task", "classification", *FAST]) == 0
    return root, ckpt, dev


def test_report_has_every_plan_and_the_stored_recommendation(tuned):
    _, ckpt, _ = tuned
    report = json.loads((ckpt / "tune" / "tune_report.json").read_text())
    plans = {(r["family"], r["order"], r["layers"]) for r in report["results"]}
    assert plans == {(f, o, k) for f in ("ffn_int8", "full_int8") for o in ("sensitivity", "first", "last")
                     for k in range(3)}
    assert set(report["sensitivity"]) == {"ffn_int8", "full_int8"}
    assert all(len(v) == 2 for v in report["sensitivity"].values())
    rec = report["recommendation"]["plan"]
    assert samp_jax.load(ckpt).plan.to_string() == rec  # stored as the default
    md = (ckpt / "tune" / "tune_report.md").read_text()
    assert "| mode | MHA | FFN | accuracy | latency ms | IQR ms | speedup |" in md and f"`{rec}`" in md
    # the float plans are measured and shown; the fastest is the reference
    floats = {r["plan"]: r for r in report["floats"]}
    assert set(floats) == {"fp16", "bf16", "fp32"} and "## Float plans" in md
    ref = report["reference"]
    assert ref["latency_ms"] == min(r["latency_ms"] for r in floats.values()) and report["meta"]["reference"] == ref["plan"]
    assert f"| {ref['plan']} (reference) |" in md
    for r in report["results"] + report["floats"]:  # each latency carries its spread
        assert 0 < r["latency_q1_ms"] <= r["latency_ms"] <= r["latency_q3_ms"]
    png = (ckpt / "tune" / "tune_plot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_accuracies_are_the_models_own(tuned):
    """A plan's reported accuracy equals evaluating that plan directly."""
    _, ckpt, dev = tuned
    report = json.loads((ckpt / "tune" / "tune_report.json").read_text())
    row = next(r for r in report["results"] if r["family"] == "full_int8" and r["layers"] == 2)
    model = samp_jax.load(ckpt, plan=row["plan"])
    preds = model.predict([line.split("\t")[0] for line in dev.read_text().splitlines()[1:]])
    gold = [int(line.split("\t")[1]) for line in dev.read_text().splitlines()[1:]]
    acc = np.mean([model.task.labels.index(p["label"]) == g for p, g in zip(preds, gold)])
    assert row["accuracy"] == pytest.approx(acc)


def test_rerun_uses_the_cache(tuned, capsys):
    _, ckpt, dev = tuned
    capsys.readouterr()
    assert main(["tune", str(ckpt), "--data", str(dev), "--task", "classification", *FAST]) == 0
    out = capsys.readouterr().out
    hits = int(out.split("(")[1].split(" cached")[0])
    assert hits >= 18  # every plan's accuracy and every latency came from the cache


def test_targets_no_plan_can_meet_give_the_closest(tuned, capsys):
    _, ckpt, dev = tuned
    capsys.readouterr()
    rc = main(["tune", str(ckpt), "--data", str(dev), "--task", "classification", *FAST,
               "--max-latency-ms", "0.000001"])
    err = capsys.readouterr().err
    assert rc == 3 and "no plan runs within 1e-06 ms; the fastest:" in err and "Traceback" not in err
    rc = main(["tune", str(ckpt), "--data", str(dev), "--task", "classification", *FAST, "--min-accuracy", "0.0"])
    assert rc == 0


def test_tune_needs_scales(tmp_path, minilm_dir):
    make_hf_model(tmp_path / "hf", "BertForSequenceClassification", tokenizer_from=minilm_dir)
    main(["convert", str(tmp_path / "hf"), str(tmp_path / "ckpt")])
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
    assert main(["tune", str(tmp_path / "ckpt"), "--data", str(tmp_path / "dev.tsv"), "--task", "classification",
                 *FAST]) == 2


def test_dev_set_readers_and_metrics(tmp_path):
    (tmp_path / "ner.txt").write_text("-DOCSTART- -X- O O\n\nEU NNP I-ORG\nrejects VBZ O\nGerman JJ I-MISC\n"
                                      "call NN O\n\nPeter NNP I-PER\nBlackburn NNP I-PER\n")
    dev = read_dev_set(tmp_path / "ner.txt", "ner")
    assert dev.inputs == ["EU rejects German call", "Peter Blackburn"]
    assert dev.labels == [[("ORG", 0, 2), ("MISC", 11, 17)], [("PER", 0, 15)]]
    assert entity_f1([[("ORG", 0, 2)], [("PER", 0, 5)]], dev.labels) == pytest.approx(2 * 1 / (2 + 3))
    assert f1_binary(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == pytest.approx(0.5)
    np.testing.assert_array_equal(label_indices(["positive", "0"], ("negative", "positive")), [1, 0])
    with pytest.raises(ValueError, match=r"gold label 'maybe' is neither one of the model's labels"):
        label_indices(["maybe"], ("negative", "positive"))
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"s1": "a", "s2": "b", "y": 1}) + "\n")
    pairs = read_dev_set(tmp_path / "pairs.jsonl", "matching", text_field="s1,s2", label_field="y")
    assert pairs.inputs == [("a", "b")] and pairs.labels == ["1"]
    with pytest.raises(ValueError, match=r"row 0 lacks field\(s\) \['sentence'\]"):
        read_dev_set(tmp_path / "pairs.jsonl", "classification", label_field="y")


def test_damaged_cache_is_reported_and_rebuilt(tuned, caplog):
    from samp_jax.evaluation import read_dev_set
    from samp_jax.tune import Tuner

    _, ckpt, dev = tuned
    saved = (ckpt / "tune_cache.json").read_text()
    (ckpt / "tune_cache.json").write_text("{not json")
    try:
        with caplog.at_level("WARNING"):
            tuner = Tuner(ckpt, read_dev_set(dev, "classification"), batch=2, seq=16, dtype="fp32", progress=False)
        assert "ignoring damaged measurement cache" in caplog.text and tuner.cache == {"accuracy": {}, "latency": {}}
    finally:
        (ckpt / "tune_cache.json").write_text(saved)


# ---- the profile, the cache ----------------------------------------------------------------------


@pytest.mark.parametrize("opt, value, words", [
    ("--batch", "0", "batch=0: --batch, the latency profile's batch size, must be an integer >= 1"),
    ("--seq", "0", "seq=0: --seq, the latency profile's sequence length, must be an integer >= 1"),
    ("--seq", "1000", "seq=1000: --seq, the latency profile's sequence length, must be an integer >= 1 and <= "
                      "the model's max_seq_len=128"),
    ("--repeats", "0", "repeats=0: --repeats, the timed runs per latency, must be an integer >= 1"),
    ("--limit", "0", "limit=0: --limit is the number of dev examples to use, an integer >= 1"),
])
def test_bad_profile_is_an_error_before_any_measurement(tuned, capsys, opt, value, words):
    _, ckpt, dev = tuned
    cache = (ckpt / "tune_cache.json").read_bytes()
    plan = samp_jax.load(ckpt).plan
    capsys.readouterr()
    assert main(["tune", str(ckpt), "--data", str(dev), "--task", "classification", *FAST, opt, value]) == 2
    err = capsys.readouterr().err
    assert f"samp-jax: error: {words}" in err and "Traceback" not in err
    assert (ckpt / "tune_cache.json").read_bytes() == cache and samp_jax.load(ckpt).plan == plan


def test_profile_is_checked_in_the_python_api(tuned):
    from samp_jax.tune import Tuner, measure_latency

    _, ckpt, dev = tuned
    d = read_dev_set(dev, "classification")
    for kw in ({"batch": 0}, {"batch": -3}, {"seq": 129}, {"repeats": 0}, {"batch": 2.5}):
        name = next(iter(kw))
        with pytest.raises(ValueError, match=rf"^{name}=.*: --{name}, "):
            Tuner(ckpt, d, **{"batch": 2, "seq": 16, "repeats": 1, **kw})
    with pytest.raises(ValueError, match=r"repeats=0: --repeats"):
        measure_latency(samp_jax.load(ckpt), 2, 16, repeats=0)


@pytest.mark.parametrize("content", [b"[]", b"null", b'{"accuracy": 3}', b"\xff\xfe garbage",
                                     b'{"accuracy": {}, "latency": {"k": {"times_ms": []}}}',
                                     b'{"accuracy": {"k": [1]}, "latency": {}}'])
def test_damaged_cache_shapes_warn_once_and_start_afresh(tuned, caplog, content):
    from samp_jax.tune import Tuner

    _, ckpt, dev = tuned
    path = ckpt / "tune_cache.json"
    saved = path.read_bytes()
    path.write_bytes(content)
    try:
        with caplog.at_level("WARNING"):
            tuner = Tuner(ckpt, read_dev_set(dev, "classification"), batch=2, seq=16, dtype="fp32", progress=False)
        warnings = [r for r in caplog.records if "ignoring damaged measurement cache" in r.getMessage()]
        assert len(warnings) == 1 and tuner.cache == {"accuracy": {}, "latency": {}}
    finally:
        path.write_bytes(saved)


def test_cache_write_replaces_a_link_never_its_target(tuned, tmp_path):
    from samp_jax.tune import Tuner

    _, ckpt, dev = tuned
    path = ckpt / "tune_cache.json"
    saved = path.read_bytes()
    target = tmp_path / "precious.txt"
    target.write_text("not a cache: must survive\n")
    path.unlink()
    path.symlink_to(target)
    try:
        tuner = Tuner(ckpt, read_dev_set(dev, "classification"), batch=2, seq=16, repeats=1, progress=False)
        tuner.latency(Plan.parse("fp32", 2))  # measures and stores
        assert target.read_text() == "not a cache: must survive\n"
        assert not path.is_symlink() and json.loads(path.read_text())["latency"]
    finally:
        path.unlink()
        path.write_bytes(saved)


# ---- the task, the bi-encoder ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bi_encoder(tmp_path_factory, minilm_dir, real_sentences):
    root = tmp_path_factory.mktemp("bi")
    make_hf_model(root / "hf", "BertModel", tokenizer_from=minilm_dir, seed=5)
    ckpt = root / "ckpt"
    assert main(["convert", str(root / "hf"), str(ckpt)]) == 0
    (root / "calib.txt").write_text("\n".join(real_sentences) + "\n")
    assert main(["calibrate", str(ckpt), "--data", str(root / "calib.txt"), "--quiet"]) == 0
    pairs = list(zip(real_sentences[:6], real_sentences[6:]))
    dev = root / "pairs.tsv"
    dev.write_text("sentence1\tsentence2\tlabel\n" + "".join(f"{a}\t{b}\t{i % 2}\n" for i, (a, b) in enumerate(pairs)))
    return ckpt, dev, pairs


def test_a_bare_encoder_is_refused_before_measuring_a_classification(bi_encoder):
    from samp_jax.tune import Tuner

    ckpt, dev, _ = bi_encoder
    cache = ckpt / "tune_cache.json"
    before = cache.read_bytes() if cache.exists() else None
    (dev.parent / "single.tsv").write_text("sentence\tlabel\nfine\t1\n")
    with pytest.raises(ValueError, match=r"a bare encoder \(no task head\): fine-tune a \*ForSequenceClassification "
                                         r"checkpoint and convert it with `samp-jax convert`.*--task matching"):
        Tuner(ckpt, read_dev_set(dev.parent / "single.tsv", "classification"), progress=False)
    assert (cache.read_bytes() if cache.exists() else None) == before  # nothing measured


def test_bi_encoder_matching_by_a_threshold_chosen_on_the_reference(bi_encoder):
    from samp_jax.evaluation import best_threshold

    ckpt, dev, pairs = bi_encoder
    assert main(["tune", str(ckpt), "--data", str(dev), "--task", "matching", *FAST[2:], "--families", "ffn_int8",
                 "--orders", "first"]) == 0
    report = json.loads((ckpt / "tune" / "tune_report.json").read_text())
    t = report["meta"]["matching_threshold"]
    assert f"cosine similarity of its embeddings is >= {t:.6f}" in (ckpt / "tune" / "tune_report.md").read_text()
    gold = np.array([i % 2 for i in range(len(pairs))])

    def sims(plan):
        return samp_jax.load(ckpt, plan=plan).similarity(pairs, batch_size=128, truncation=True)

    ref = report["reference"]
    ref_sims = sims(ref["plan"])
    assert t == best_threshold(ref_sims, gold)
    # the chosen threshold maximises the reference's F1 over every cut of its similarities
    best_f1 = max(f1_binary((ref_sims >= c).astype(int), gold) for c in [*ref_sims, np.inf])
    assert ref["metrics"]["f1"] == pytest.approx(best_f1) and ref["accuracy"] == ref["metrics"]["f1"]
    row = next(r for r in report["results"] if r["layers"] == 2)
    pred = (sims(row["plan"]) >= t).astype(int)  # held fixed for every plan
    assert row["metrics"] == {"f1": f1_binary(pred, gold), "accuracy": float(np.mean(pred == gold)), "threshold": t}


def test_best_threshold_takes_the_midpoint_of_the_best_cut():
    from samp_jax.evaluation import best_threshold

    # sorted: 0.1 (no), 0.35 (yes), 0.4 (no), 0.8 (yes): F1 0.8 when all but 0.1 are positive
    assert best_threshold(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.225)
    assert best_threshold(np.array([0.5, 0.5]), np.array([1, 1])) < 0.5  # every pair positive


# ---- the reference and the spread ---------------------------------------------------------------


def _table_tuner(ckpt, dev, table, **kw):
    """Accuracy and latency from a table: (dtype or family, quantized layers) -> (accuracy, median, q1, q3)."""
    from samp_jax.tune import Timing, Tuner

    def row(plan):
        fam = next((m for m in plan.modes if m.quantizes_ffn), None)
        return table[(plan.dtype, 0) if fam is None else (fam, plan.num_quantized())]

    class TableTuner(Tuner):
        def metrics(self, plan):
            return {"accuracy": row(plan)[0]}

    return TableTuner(ckpt, read_dev_set(dev, "classification"), batch=2, seq=16, progress=False,
                      latency=lambda plan: Timing(*row(plan)[1:]), **kw)


# The CPU's measured order: bf16 fastest, fp16 slowest; the fp16-based quantized plans sit between.
CPU_TABLE = {("fp16", 0): (0.90, 200, 195, 206), ("bf16", 0): (0.90, 65, 64, 69), ("fp32", 0): (0.90, 150, 148, 152),
             ("ffn_int8", 1): (0.90, 190, 185, 195), ("ffn_int8", 2): (0.89, 180, 175, 185),
             ("full_int8", 1): (0.95, 80, 78, 82), ("full_int8", 2): (0.88, 73, 72, 75)}


def test_the_fastest_float_plan_is_the_reference_and_slower_plans_are_never_recommended(tuned):
    _, ckpt, dev = tuned
    tuner = _table_tuner(ckpt, dev, CPU_TABLE)
    fam = ["ffn_int8", "full_int8"]
    report = tuner.run(fam)
    assert report.reference.plan == "bf16" and [r.plan for r in report.floats] == ["fp16", "bf16", "fp32"]
    assert report.recommendation.plan == "bf16" and report.top5 == []
    assert "no family pick of the accuracy-decay-aware rule (vs_reference) is faster than it" in report.reason
    assert set(report.family_picks.values()) == {"bf16"}
    # targets choose among the float plans and the quantized plans faster than the reference
    assert tuner.run(fam, max_latency_ms=100).recommendation.plan == "bf16"  # not full_int8:0 (0.95, 80 ms)
    assert tuner.run(fam, min_accuracy=0.0).recommendation.plan == "bf16"  # not full_int8 (73 ms)
    # the rule's former name is an alias
    assert tuner.run(fam, rule="vs_fp16").meta["rule"] == "vs_reference"
    # float plans carry the probs asked for (they run no softmax codes); the reference is found by dtype
    report = _table_tuner(ckpt, dev, CPU_TABLE, probs="int8").run(fam)
    assert report.meta["reference_dtype"] == "bf16" and report.recommendation is report.reference
    assert Plan.parse(report.reference.plan, 2).dtype == "bf16"


def test_latency_differences_inside_the_spread_decide_nothing(tuned):
    _, ckpt, dev = tuned
    inside = {**CPU_TABLE, ("full_int8", 2): (0.89, 60, 55, 66)}  # median below bf16's, IQR overlapping it
    report = _table_tuner(ckpt, dev, inside).run(["full_int8"])
    assert report.recommendation.plan == "bf16" and report.family_picks == {"full_int8": "bf16"}
    assert _table_tuner(ckpt, dev, inside).run(["full_int8"], min_accuracy=0.85).recommendation.plan == "bf16"
    outside = {**CPU_TABLE, ("full_int8", 2): (0.89, 55, 52, 63)}  # IQR wholly below bf16's 64-69
    report = _table_tuner(ckpt, dev, outside).run(["full_int8"])
    assert report.recommendation.plan == "full_int8" and report.top5 == ["full_int8"]


def test_a_latency_source_replaces_timing_on_this_machine(tuned, monkeypatch):
    """With `latency=`, the tuner never runs an executable for latency and caches none; the source's
    timings (with or without a spread) are the report's."""
    from samp_jax import tune
    from samp_jax.model import SampModel

    _, ckpt, dev = tuned

    def never(*args, **kwargs):
        raise AssertionError("a plan was timed on this machine")

    monkeypatch.setattr(tune, "measure_times", never)
    monkeypatch.setattr(SampModel, "compiled", never)
    asked = []

    def source(plan):
        asked.append(plan.to_string())
        if not plan.is_quantized:
            return tune.Timing(*{"fp16": (9.0, 8.0, 10.0), "bf16": (7.0, 6.5, 7.5), "fp32": (20.0, 19.0, 21.0)}[plan.dtype])
        return 5.0 - plan.num_quantized()

    cache = (ckpt / tune.CACHE_FILE).read_text()
    tuner = tune.Tuner(ckpt, read_dev_set(dev, "classification"), batch=2, seq=16, dtype="fp32", progress=False,
                       latency=source)
    report = tuner.run(["full_int8"], ["first"])  # accuracies cached by the fixture's tune
    assert (ckpt / tune.CACHE_FILE).read_text() == cache
    assert {"fp16", "bf16", "fp32", "full_int8:0,fp16:1,dtype:fp32", "full_int8,dtype:fp32"} <= set(asked)
    assert report.reference.plan == "bf16" and (report.reference.latency_q1_ms, report.reference.latency_q3_ms) == (6.5, 7.5)
    by_layers = {r.layers: r for r in report.results}
    assert [(by_layers[k].latency_ms, by_layers[k].latency_q1_ms) for k in (1, 2)] == [(4.0, 4.0), (3.0, 3.0)]
    with pytest.raises(ValueError, match=r"the latency source gave -1.0 for plan fp32; a positive finite number"):
        tune.Tuner(ckpt, read_dev_set(dev, "classification"), latency=lambda plan: -1.0).latency(Plan.parse("fp32", 2))


def test_dev_set_files_that_cannot_be_read_name_the_file(tmp_path):
    bad = b"sentence\tlabel\nfine\t1\n\xff\xfe\t0\n"
    for name, task in (("dev.tsv", "classification"), ("dev.jsonl", "classification"), ("dev.conll", "ner")):
        (tmp_path / name).write_bytes(bad)
        with pytest.raises(ValueError, match=rf"{name}:3 is not UTF-8 text \(byte b'\\xff' at offset 22\)"):
            read_dev_set(tmp_path / name, task)
    (tmp_path / "dev.jsonl").write_text('{"sentence": "a", "label": 1}\n\n{"sentence": "b", label: 0}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"dev.jsonl:3 is not a JSON line: Expecting property name"):
        read_dev_set(tmp_path / "dev.jsonl", "classification")
    (tmp_path / "dev.jsonl").write_text('{"sentence": "a", "label": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"dev.jsonl:2 holds a JSON list, expected an object"):
        read_dev_set(tmp_path / "dev.jsonl", "classification")
    for name in ("empty.tsv", "empty.jsonl"):
        (tmp_path / name).write_text("")
        with pytest.raises(ValueError, match=rf"dev set .*{name} is empty"):
            read_dev_set(tmp_path / name, "classification")
    (tmp_path / "ok.tsv").write_text("sentence\tlabel\na\t1\nb\t0\n")
    assert read_dev_set(tmp_path / "ok.tsv", "classification", limit=1).inputs == ["a"]
    for limit in (0, -1, True):
        with pytest.raises(ValueError, match=rf"limit={limit!r}: --limit is the number of dev examples"):
            read_dev_set(tmp_path / "ok.tsv", "classification", limit=limit)


def test_tune_applies_a_smoothing_strength_to_plans_with_full_layers(tuned, capsys):
    from samp_jax.tune import Tuner

    _, ckpt, dev = tuned
    d = read_dev_set(dev, "classification")
    tu = Tuner(ckpt, d, progress=False, dtype="fp32", smooth="0.7")
    assert str(tu.plan(["full_int8", "fp16"])) == "full_int8:0,fp16:1,dtype:fp32,smooth:0.7"
    assert tu.plan(["ffn_int8", "fp16"]).smooth == ""  # no full_* layer: nothing to migrate
    plain = Tuner(ckpt, d, progress=False, dtype="fp32")
    smoothed = tu.plan(["full_int8"] * tu.num_layers)
    assert tu._accuracy_key(smoothed, None) != plain._accuracy_key(plain.plan(["full_int8"] * 2), None)
    assert tu._latency_key(smoothed) != plain._latency_key(plain.plan(["full_int8"] * 2))
    with pytest.raises(ValueError, match="smooth:5 must be a migration strength"):
        Tuner(ckpt, d, progress=False, smooth="5")
    # the command line passes it on, and refuses a bad one before measuring anything
    assert main(["tune", str(ckpt), "--data", str(dev), "--task", "classification", *FAST, "--smooth", "5"]) != 0
    assert "smooth:5 must be a migration strength" in capsys.readouterr().err
