"""Conversion to orbax checkpoints, the stored default plan, and the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import samp_jax
from samp_jax.checkpoint import set_default_plan
from samp_jax.cli import main
from tests.conftest import REPO, make_hf_model, random_batch


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
    assert "--pairs needs an even number of text arguments, got 1" in capsys.readouterr().err


def test_demo_runs_on_the_embedded_model(tmp_path, minilm_dir, capsys):
    assert main(["demo", "--model-dir", str(minilm_dir), "--out", str(tmp_path / "minilm")]) == 0
    out = capsys.readouterr().out
    assert "bi-encoder matching of 5 pairs" in out
    assert "'What are the steps to change my password?'" in out.splitlines()[-1]


def _tensors(folder):
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


def _write_tensors(folder, tensors):
    from safetensors.numpy import save_file

    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize(("key", "bad"), [("bert.encoder.layer.1.output.dense.weight", np.nan),
                                          ("classifier.bias", -np.inf)])
def test_conversion_refuses_weights_that_are_not_finite(tmp_path, ner_dir, key, bad):
    hf = tmp_path / "hf"
    shutil.copytree(ner_dir, hf)
    tensors = _tensors(hf)
    tensors[key].reshape(-1)[1] = bad
    _write_tensors(hf, tensors)
    with pytest.raises(ValueError, match=rf"model.safetensors: tensors that are not finite:\n  {key} holds 1 NaN/Inf of "
                                         rf"{tensors[key].size} values \(the first {bad} at "):
        samp_jax.load(hf)
    assert main(["convert", str(hf), str(tmp_path / "ckpt")]) == 2
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.bool_])
def test_conversion_refuses_integer_and_bool_weights_but_keeps_integer_buffers(tmp_path, ner_dir, dtype):
    hf = tmp_path / "hf"
    shutil.copytree(ner_dir, hf)
    tensors = _tensors(hf)
    tensors["bert.embeddings.position_ids"] = np.arange(128, dtype=np.int64)[None]  # a buffer: integer, ignored
    _write_tensors(hf, tensors)
    samp_jax.load(hf)
    tensors["classifier.weight"] = np.ones_like(tensors["classifier.weight"], dtype=dtype)
    _write_tensors(hf, tensors)
    name = np.dtype(dtype).name
    with pytest.raises(ValueError, match=rf"classifier.weight has dtype {name}; a weight must be floating point") as e:
        samp_jax.load(hf)
    assert "unexpected" not in str(e.value) and "map to no parameter" not in str(e.value)


def test_pytorch_state_dict_with_a_non_tensor_or_nan_names_the_key(tmp_path, ner_dir):
    import torch

    hf = tmp_path / "hf"
    shutil.copytree(ner_dir, hf)
    state = {k: torch.from_numpy(v) for k, v in _tensors(hf).items()}
    (hf / "model.safetensors").unlink()
    torch.save({**state, "bert.embeddings.position_ids": torch.arange(128)[None]}, hf / "pytorch_model.bin")
    samp_jax.load(hf)
    torch.save({**state, "version": 3}, hf / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"pytorch_model.bin: 'version' holds a int \(3\), not a tensor"):
        samp_jax.load(hf)
    bad = state["bert.encoder.layer.0.intermediate.dense.bias"].clone()
    bad[2] = float("nan")
    torch.save({**state, "bert.encoder.layer.0.intermediate.dense.bias": bad}, hf / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"pytorch_model.bin: tensors that are not finite:\n  "
                                         r"bert.encoder.layer.0.intermediate.dense.bias holds 1 NaN/Inf of 64 values "
                                         r"\(the first nan at \(2,\)\)"):
        samp_jax.load(hf)


def test_stored_parameters_that_are_not_finite_are_refused(tmp_path, ner_dir):
    import dataclasses

    import orbax.checkpoint as ocp

    from samp_jax.api import load
    from samp_jax.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load(ner_dir).checkpoint
    params = jax_tree_copy(ckpt.params)
    params["encoder"]["layer_1"]["ffn"]["output"]["kernel"][4, 2] = np.inf
    with pytest.raises(ValueError, match=r"params/encoder/layer_1/ffn/output/kernel holds 1 NaN/Inf of 2048 values"):
        save_checkpoint(dataclasses.replace(ckpt, params=params), tmp_path / "never")
    assert not (tmp_path / "never").exists()

    out = tmp_path / "ckpt"
    save_checkpoint(ckpt, out)
    params["head"]["classifier"]["bias"][1] = np.nan
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "params", params)  # written as another tool (or a bit flip) might
    checkpointer.wait_until_finished()
    checkpointer.close()
    shutil.rmtree(out / "params")
    (tmp_path / "params").rename(out / "params")
    with pytest.raises(ValueError, match=r"ckpt/params: parameters are not finite:\n  "
                                         r"params/encoder/layer_1/ffn/output/kernel holds 1 NaN/Inf of 2048 values\n  "
                                         r"params/head/classifier/bias holds 1 NaN/Inf of 3 values"):
        load_checkpoint(out)


def jax_tree_copy(tree):
    return {k: jax_tree_copy(v) if isinstance(v, dict) else np.array(v) for k, v in tree.items()}


@pytest.mark.parametrize("command", [["predict", "{ckpt}", "hello", "--quiet"],
                                     ["calibrate", "{ckpt}", "--data", "{ckpt}/../texts.txt", "--quiet"]])
def test_a_failed_parameter_read_prints_its_error_line_only(tmp_path, ner_dir, command):
    """orbax stops at the first failed tensorstore read; the other reads' completions must not print tracebacks."""
    out = tmp_path / "ckpt"
    assert main(["convert", str(ner_dir), str(out)]) == 0
    (tmp_path / "texts.txt").write_text("one text\n")
    data = [f for f in (out / "params").rglob("*") if f.parent.name == "d" and f.is_file()]
    largest = max(data, key=lambda f: f.stat().st_size)  # the word embeddings: other reads are in flight when it fails
    largest.write_bytes(largest.read_bytes()[:40])
    # The late completions print while the process lives on; a second of life after the error shows them.
    script = "import sys, time\nfrom samp_jax.cli import main\nrc = main(sys.argv[1:])\ntime.sleep(1)\nsys.exit(rc)"
    args = [a.format(ckpt=out) for a in command]
    run = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert run.returncode == 2
    assert run.stderr.startswith(f"samp-jax: error: corrupt parameter checkpoint {out / 'params'}: ")
    assert len(run.stderr.splitlines()) == 1, run.stderr
