"""The command line's text inputs: files read by column, errors that name the file and the flag, text that is
not valid Unicode, and calibration options that cannot work."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import samp_jax
from convert import convert_hf_checkpoint
from samp_jax.calibration import calibrate
from samp_jax.cli import main
from samp_jax.texts import read_texts
from tests.conftest import REPO, converted_tiny, make_hf_model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, minilm_dir):
    return converted_tiny(tmp_path_factory, minilm_dir, "BertForSequenceClassification", "tiny", seed=5)


def _predict(capsys, *argv) -> tuple[int, list[dict], str]:
    rc = main(["predict", *map(str, argv), "--quiet"])
    out, err = capsys.readouterr()
    return rc, [json.loads(line) for line in out.splitlines() if line.startswith("{")], err


def test_predict_reads_a_tsv_file_by_column(ckpt, tmp_path, capsys):
    tsv = tmp_path / "dev.tsv"
    tsv.write_text("sentence\tlabel\na fine film .\t1\na dull film .\t0\n", encoding="utf-8")
    rc, rows, _ = _predict(capsys, ckpt, "--file", tsv)
    assert rc == 0 and [r["input"] for r in rows] == ["a fine film .", "a dull film ."]  # no header, no label
    model = samp_jax.load(ckpt)
    assert [r["prediction"] for r in rows] == model.predict(["a fine film .", "a dull film ."])
    jsonl = tmp_path / "dev.jsonl"
    jsonl.write_text('{"q": "a", "d": "b"}\n{"q": "c", "d": "d"}\n', encoding="utf-8")
    rc, rows, _ = _predict(capsys, ckpt, "--file", jsonl, "--text-field", "q,d")
    assert rc == 0 and [tuple(r["input"]) for r in rows] == [("a", "b"), ("c", "d")]


def test_predict_too_long_names_the_flag(ckpt, capsys):
    long = "word " * 200
    rc, _, err = _predict(capsys, ckpt, long)
    assert rc == 2 and "pass --truncation" in err and "truncation=True" not in err
    rc, rows, _ = _predict(capsys, ckpt, long, "--truncation", "--max-length", "16")
    assert rc == 0 and len(rows) == 1
    rc, _, err = _predict(capsys, ckpt, long, "--truncation", "--max-length", "2")
    assert rc == 2 and "max_length=2 leaves no room for text" in err and "pass --truncation" not in err


@pytest.mark.parametrize("argv, message", [
    (["--file", "{tmp}/absent.txt"], "--file {tmp}/absent.txt not found"),
    (["--file", "{tmp}/latin1.txt"], "{tmp}/latin1.txt:2 is not UTF-8 text"),
    (["--file", "{tmp}/empty.txt"], "{tmp}/empty.txt holds no texts"),
    (["--file", "{tmp}/bad.jsonl", "--text-field", "t"], "{tmp}/bad.jsonl:2 is not a JSON line"),
    (["--file", "{tmp}/dev.tsv", "--text-field", "nope"], "row 0 lacks field(s) ['nope']"),
    (["a", "b", "c", "--pairs"], "--pairs needs an even number of text arguments, got 3"),
])
def test_predict_input_errors_name_the_file_or_flag(ckpt, tmp_path, capsys, argv, message):
    (tmp_path / "latin1.txt").write_bytes(b"one\n\xe9t\xe9\n")
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    (tmp_path / "bad.jsonl").write_text('{"t": "x"}\nnot json\n', encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nx\t1\n", encoding="utf-8")
    rc, _, err = _predict(capsys, ckpt, *(a.format(tmp=tmp_path) for a in argv))
    assert rc == 2 and message.format(tmp=tmp_path) in err, err
    assert "Traceback" not in err


def test_text_that_is_not_valid_unicode_is_named(ckpt):
    model = samp_jax.load(ckpt)
    with pytest.raises(ValueError, match=r"input 1 is not valid Unicode text: '\\ud800' at character 3"):
        model.predict(["fine", "bad\ud800text"])


def test_argv_that_is_not_utf8_is_named(ckpt):
    out = subprocess.run([sys.executable, "-m", "samp_jax.cli", "predict", str(ckpt), "ok", b"caf\xe9", "--quiet"],
                         cwd=REPO, capture_output=True, timeout=300)
    err = out.stderr.decode("utf-8", "replace")
    assert out.returncode == 2 and "text argument 2 is not valid UTF-8" in err and "Traceback" not in err, err


def test_read_texts_names_the_file(tmp_path):
    (tmp_path / "empty.tsv").write_text("sentence\tlabel\n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.tsv holds no texts"):
        read_texts(tmp_path / "empty.tsv")
    with pytest.raises(ValueError, match="limit=0 must be a positive integer"):
        read_texts(tmp_path / "empty.tsv", limit=0)
    (tmp_path / "plain.txt").write_text("x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="plain text .* no columns"):
        read_texts(tmp_path / "plain.txt", "sentence")


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=0), "batch_size=0 must be a positive integer"),
    (dict(max_length=0), "max_length=0 must be a positive integer"),
    (dict(method="percentile", percentile=0), r"percentile=0 must be in \(0, 100\]"),
    (dict(method="percentile", percentile=101.0), r"percentile=101.0 must be in \(0, 100\]"),
    (dict(method="minmax"), "unknown calibration method 'minmax'"),
])
def test_calibration_options_that_cannot_work_are_refused(ckpt, kwargs, message):
    with pytest.raises(ValueError, match=message):
        calibrate(ckpt, ["a text"], **kwargs)


def test_calibrate_cli_names_an_empty_file_and_a_zero_batch(ckpt, tmp_path, capsys):
    (tmp_path / "calib.txt").write_text("\n", encoding="utf-8")
    assert main(["calibrate", str(ckpt), "--data", str(tmp_path / "calib.txt"), "--quiet"]) == 2
    assert f"{tmp_path / 'calib.txt'} holds no texts" in capsys.readouterr().err
    (tmp_path / "calib.txt").write_text("one\ntwo\n", encoding="utf-8")
    assert main(["calibrate", str(ckpt), "--data", str(tmp_path / "calib.txt"), "--batch-size", "0", "--quiet"]) == 2
    assert "batch_size=0 must be a positive integer" in capsys.readouterr().err
    assert not (ckpt / "scales.safetensors").exists()


def test_predict_file_of_pairs(ckpt, tmp_path, capsys):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("a\tb\nc\td\n", encoding="utf-8")
    rc, rows, _ = _predict(capsys, ckpt, "--file", pairs, "--pairs")
    assert rc == 0 and [tuple(r["input"]) for r in rows] == [("a", "b"), ("c", "d")]
    model = samp_jax.load(ckpt)
    want = model.predict([("a", "b"), ("c", "d")])
    assert [r["prediction"] for r in rows] == json.loads(json.dumps(want))
    assert np.isfinite([r["prediction"]["score"] for r in rows]).all()


@pytest.mark.parametrize("plan, message", [("", "empty plan"), ("   ", "empty plan"), ("full_int8:1-0", "reversed")])
def test_convert_checks_the_plan_before_writing(ckpt, tmp_path, capsys, plan, message):
    hf = tmp_path / "hf"
    make_hf_model(hf, "BertForSequenceClassification", seed=6)
    out = tmp_path / "out"
    assert main(["convert", str(hf), str(out), "--plan", plan]) == 2
    assert message in capsys.readouterr().err and not out.exists()
    with pytest.raises(ValueError, match=message):
        samp_jax.load(ckpt, plan=plan)


def test_multi_output_regression_is_refused(tmp_path):
    hf = tmp_path / "hf"
    make_hf_model(hf, "BertForSequenceClassification", labels=("a", "b"), problem_type="regression", seed=7)
    with pytest.raises(ValueError, match="problem_type='regression' with 2 outputs is not supported"):
        convert_hf_checkpoint(hf)
