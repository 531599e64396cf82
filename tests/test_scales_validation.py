"""Scales that would make garbage (amax 0, negative, NaN, Inf, a vector where a scalar belongs) are refused,
named by their point, when made, read, imported or calibrated; valid ones round-trip unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from convert.amax_import import import_amax, read_amax_state
from samp_jax.checkpoint import load_checkpoint
from samp_jax.cli import main
from samp_jax.quant.scales import SCALES_FILE, Scales
from tests.conftest import converted_tiny

POINT = "layer_1/ffn/activation"


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory, minilm_dir):
    return converted_tiny(tmp_path_factory, minilm_dir, "BertForSequenceClassification", "scales", seed=3)


@pytest.mark.parametrize("amax", [0.0, -1.0, float("nan"), float("inf"), 1e39])
def test_activation_amax_must_be_finite_and_positive(amax):
    with pytest.raises(ValueError, match=rf"activation amax for '{POINT}' is .*; it must be finite and > 0"):
        Scales({"layer_0/input": 1.0, POINT: amax})


def test_activation_amax_of_zero_hints_at_the_cause():
    with pytest.raises(ValueError, match=r"percentile-1e-06 calibration: the percentile is too low"):
        Scales({POINT: 0.0}, method="percentile-1e-06")
    with pytest.raises(ValueError, match=r"max: every value seen at this point was 0"):
        Scales({POINT: 0.0}, method="max")


@pytest.mark.parametrize("amax", [np.ones(3, np.float32), np.ones((1,), np.float32), [2.0]])
def test_activation_amax_must_be_a_scalar(amax):
    with pytest.raises(ValueError, match=rf"activation amax for '{POINT}' has shape \({np.shape(amax)[0]},\); a per-tensor"):
        Scales({POINT: amax})


@pytest.mark.parametrize("bad", [0.0, -0.5, float("nan"), float("-inf")])
def test_weight_amax_must_be_finite_and_positive(bad):
    vec = np.full(64, 0.1, np.float32)
    vec[7] = bad
    with pytest.raises(ValueError, match=r"weight amax for 'layer_0/ffn/intermediate' has 1 of 64 channels that are "
                                         r"not finite and > 0, e.g. channel 7 = "):
        Scales({POINT: 1.0}, {"layer_0/ffn/intermediate": vec})
    with pytest.raises(ValueError, match="weight amax for 'layer_0/ffn/output' is empty"):
        Scales({POINT: 1.0}, {"layer_0/ffn/output": np.zeros(0, np.float32)})


def test_valid_scales_round_trip_bitwise(tmp_path):
    acts = {"layer_0/input": 3.25, POINT: np.float32(0.1)}
    weights = {"layer_0/attention/qkv": np.linspace(0.01, 2.0, 96, dtype=np.float32)}
    scales = Scales(acts, weights, method="entropy", source="test")
    scales.save(tmp_path / SCALES_FILE)
    again = Scales.load(tmp_path / SCALES_FILE)
    assert again.activations == {"layer_0/input": 3.25, POINT: float(np.float32(0.1))}
    np.testing.assert_array_equal(again.weights["layer_0/attention/qkv"], weights["layer_0/attention/qkv"])
    assert (again.method, again.source) == ("entropy", "test")


@pytest.mark.parametrize(("entry", "value", "message"), [
    (f"act/{POINT}", np.array(0, np.float32), rf"activation amax for '{POINT}' is 0.0; it must be finite and > 0"),
    (f"act/{POINT}", np.array(np.nan, np.float32), rf"activation amax for '{POINT}' is nan"),
    (f"act/{POINT}", np.ones(4, np.float32), rf"activation amax for '{POINT}' has shape \(4,\)"),
    ("weight/layer_0/ffn/output", np.array([0.1, np.inf], np.float32), r"weight amax for 'layer_0/ffn/output' has 1 of 2"),
])
def test_a_scales_file_with_garbage_is_refused_at_load(tmp_path, ckpt_dir, entry, value, message):
    import shutil

    from safetensors.numpy import save_file

    ckpt = tmp_path / "ckpt"
    shutil.copytree(ckpt_dir, ckpt)
    tensors = {"act/layer_0/input": np.array(1.0, np.float32), entry: value}
    save_file(tensors, str(ckpt / SCALES_FILE), metadata={"method": "max", "source": ""})
    with pytest.raises(ValueError, match=rf"scales file .*{SCALES_FILE}: {message}"):
        load_checkpoint(ckpt)


def _amax_state(act=2.0, weight=0.1):
    state = {}
    for i in range(2):
        p = f"bert.encoder.layer.{i}."
        for mod, out in (("attention.self.query", 32), ("attention.self.key", 32), ("attention.self.value", 32),
                         ("attention.output.dense", 32), ("intermediate.dense", 64), ("output.dense", 32)):
            state[f"{p}{mod}.input_quantizer._amax"] = np.array(act, np.float32)
            state[f"{p}{mod}.weight_quantizer._amax"] = np.full((out, 1), weight, np.float32)
    return state


@pytest.mark.parametrize("bad", [0.0, float("nan"), float("inf"), -2.0])
def test_imported_amax_is_checked_per_key(ckpt_dir, bad):
    config = load_checkpoint(ckpt_dir).config
    import_amax(_amax_state(), config)
    key = "bert.encoder.layer.1.attention.self.key.input_quantizer._amax"
    with pytest.raises(ValueError, match=rf"{key}: activation amax is {bad}; it must be finite and > 0"):
        import_amax({**_amax_state(), key: np.float32(bad)}, config)
    key = "bert.encoder.layer.0.intermediate.dense.weight_quantizer._amax"
    vec = np.full((64, 1), 0.1, np.float32)
    vec[3] = bad
    with pytest.raises(ValueError, match=rf"{key}: 1 of 64 weight amax values are not finite and > 0, e.g. channel 3"):
        import_amax({**_amax_state(), key: vec}, config)


def test_amax_file_with_nan_names_file_and_key(tmp_path):
    from safetensors.numpy import save_file

    state = _amax_state()
    state["bert.encoder.layer.0.output.dense.input_quantizer._amax"] = np.array(np.nan, np.float32)
    save_file(state, str(tmp_path / "amax.safetensors"))
    with pytest.raises(ValueError, match=r"amax.safetensors: tensors that are not finite:\n  "
                                         r"bert.encoder.layer.0.output.dense.input_quantizer._amax holds 1 NaN/Inf"):
        read_amax_state(tmp_path / "amax.safetensors")


def test_cli_calibrate_refuses_a_percentile_that_gives_zero_ranges(tmp_path, ckpt_dir, capsys):
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(ckpt_dir, ckpt)
    texts = tmp_path / "texts.txt"
    texts.write_text("a short sentence .\nanother , somewhat longer sentence about nothing much .\n")
    assert main(["calibrate", str(ckpt), "--data", str(texts), "--method", "percentile", "--percentile", "1e-6",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("samp-jax: error: activation amax for 'layer_0/") and "percentile is too low" in err
    assert len(err.splitlines()) == 1
    assert not (ckpt / SCALES_FILE).exists()
    assert main(["calibrate", str(ckpt), "--data", str(texts), "--method", "percentile", "--quiet"]) == 0
    assert load_checkpoint(ckpt).scales.method == "percentile-99.99"
