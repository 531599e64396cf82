"""Conversion to orbax checkpoints, the stored default plan, and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

import samp_jax
from samp_jax.checkpoint import set_default_plan
from samp_jax.cli import main
from tests.conftest import make_hf_model, random_batch


@pytest.fixture(scope="module")
def ner_dir(tmp_path_factory, minilm_dir):
    folder = tmp_path_factory.mktemp("ner_hf")
    make_hf_model(folder, "BertForTokenClassification", labels=("O", "B-PER", "I-PER"), tokenizer_from=minilm_dir)
    return folder


def test_converted_checkpoint_equals_on_the_fly(tmp_path, ner_dir):
    out = tmp_path / "ckpt"
    assert main(["convert", str(ner_dir), str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"samp_jax.json", "params", "tokenizer.json"}
    ids, mask, types = random_batch(30522, [9, 4], 9, pad_id=0)
    a = np.asarray(samp_jax.load(out)(ids, mask, types))
    b = np.asarray(samp_jax.load(ner_dir)(ids, mask, types))
    np.testing.assert_array_equal(a, b)
    loaded = samp_jax.load(out)
    assert loaded.task.labels == ("O", "B-PER", "I-PER") and loaded.task.kind == "token_classification"


def test_convert_refuses_to_overwrite_without_force(tmp_path, ner_dir, capsys):
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert main(["convert", str(ner_dir), str(out)]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert main(["convert", str(ner_dir), str(out), "--force"]) == 2  # not a checkpoint: still refused
    assert (out / "precious.txt").read_text() == "keep me"


def test_default_plan_is_stored_and_overridable(tmp_path, ner_dir):
    out = tmp_path / "ckpt"
    assert main(["convert", str(ner_dir), str(out), "--plan", "bf16"]) == 0
    assert json.loads((out / "samp_jax.json").read_text())["plan"] == "bf16"
    assert samp_jax.load(out).plan.to_string() == "bf16"
    assert samp_jax.load(out, plan="fp32").plan.to_string() == "fp32"
    set_default_plan(out, None)
    assert samp_jax.load(out).plan.to_string() == "fp32"


def test_cli_predict_prints_json_lines(tmp_path, ner_dir, capsys):
    out = tmp_path / "ckpt"
    main(["convert", str(ner_dir), str(out)])
    capsys.readouterr()
    assert main(["predict", str(out), "Angela Merkel met Joe Biden.", "Hello there", "--quiet"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["input"] for line in lines] == ["Angela Merkel met Joe Biden.", "Hello there"]
    for line in lines:
        for span in line["prediction"]:
            assert span["entity"] == "PER"
            assert line["input"][span["start"] : span["end"]] == span["text"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "missing"), "text"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("samp-jax: error: no such checkpoint") and "Traceback" not in err
    assert main(["predict", str(tmp_path), "a", "--pairs", "--quiet"]) == 2
    assert "--pairs needs an even number of texts, got 1" in capsys.readouterr().err


def test_demo_runs_on_the_embedded_model(tmp_path, minilm_dir, capsys):
    assert main(["demo", "--model-dir", str(minilm_dir), "--out", str(tmp_path / "minilm")]) == 0
    out = capsys.readouterr().out
    assert "bi-encoder matching of 5 pairs" in out
    assert "'What are the steps to change my password?'" in out.splitlines()[-1]
