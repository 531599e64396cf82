"""`samp-jax tune` end to end on a small random model on the CPU: report, cache, stored plan, targets."""

from __future__ import annotations

import json

import numpy as np
import pytest

import samp_jax
from samp_jax.cli import main
from samp_jax.evaluation import entity_f1, f1_binary, label_indices, read_dev_set
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
    assert "| mode | MHA | FFN | accuracy | latency ms | speedup |" in md and f"`{rec}`" in md
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


def test_best_threshold_takes_the_midpoint_of_the_best_cut():
    from samp_jax.evaluation import best_threshold

    # sorted: 0.1 (no), 0.35 (yes), 0.4 (no), 0.8 (yes): F1 0.8 when all but 0.1 are positive
    assert best_threshold(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.225)
    assert best_threshold(np.array([0.5, 0.5]), np.array([1, 1])) < 0.5  # every pair positive


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
