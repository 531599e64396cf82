"""Activation observers against Hugging Face's own activations; calibration inputs; amax import errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import samp_jax
from convert import convert_hf_checkpoint
from convert.amax_import import import_amax
from samp_jax.calibration import calibrate, read_texts
from samp_jax.quant.points import ALL_POINTS
from tests.conftest import make_hf_model

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, minilm_dir):
    folder = tmp_path_factory.mktemp("calib_bert")
    hf = make_hf_model(folder, "BertForSequenceClassification", tokenizer_from=minilm_dir, seed=5)
    return folder, hf


def test_max_calibration_equals_hf_activation_maxima_over_real_tokens(tiny, real_sentences):
    import transformers

    folder, _ = tiny
    hf = transformers.BertForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    scales = calibrate(samp_jax.load(folder), real_sentences, "max", batch_size=5, progress=False)
    assert set(scales.activations) == {f"layer_{i}/{p}" for i in range(2) for p in ALL_POINTS}

    enc = tok(real_sentences, padding=True, return_tensors="pt")
    mask = enc["attention_mask"].numpy().astype(bool)
    with torch.no_grad():
        out = hf(**enc, output_hidden_states=True, output_attentions=True)
    for i in range(2):
        hidden_in = out.hidden_states[i].numpy()  # layer i's input
        assert scales.activations[f"layer_{i}/input"] == pytest.approx(np.abs(hidden_in[mask]).max(), rel=1e-5)
        probs = out.attentions[i].numpy()  # [B, N, S, S]
        real = mask[:, None, :, None] & mask[:, None, None, :]
        real = np.broadcast_to(real, probs.shape)
        assert scales.activations[f"layer_{i}/attention/probs"] == pytest.approx(probs[real].max(), rel=1e-5)
    # padding is excluded: an all-padding-heavy batch gives the same ranges
    again = calibrate(samp_jax.load(folder), real_sentences, "max", batch_size=12, progress=False)
    for k, v in scales.activations.items():
        assert again.activations[k] == pytest.approx(v, rel=1e-5)


@pytest.mark.parametrize("method", ["percentile", "mse", "entropy"])
def test_histogram_methods_clip_below_max(tiny, real_sentences, method):
    folder, _ = tiny
    model = samp_jax.load(folder)
    top = calibrate(model, real_sentences, "max", progress=False).activations
    got = calibrate(model, real_sentences, method, percentile=99.9, progress=False).activations
    assert all(0 < got[k] <= top[k] * (1 + 1e-6) for k in top)
    assert any(got[k] < top[k] * 0.99 for k in top)


def test_read_texts_formats(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\ntwo\n")
    assert read_texts(tmp_path / "a.txt") == ["one", "two"]
    (tmp_path / "b.jsonl").write_text(json.dumps({"sentence1": "x", "sentence2": "y", "label": 1}) + "\n")
    assert read_texts(tmp_path / "b.jsonl", "sentence1,sentence2") == [("x", "y")]
    with pytest.raises(ValueError, match="pass --text-field"):
        read_texts(tmp_path / "b.jsonl")
    with pytest.raises(ValueError, match=r"row 0 lacks field\(s\) \['text'\]; it has \['label', 'sentence1', 'sentence2'\]"):
        read_texts(tmp_path / "b.jsonl", "text")
    (tmp_path / "c.tsv").write_text("sentence\tlabel\nhello there\t1\n")
    assert read_texts(tmp_path / "c.tsv") == ["hello there"]
    with pytest.raises(FileNotFoundError, match="calibration data .*nope.txt not found"):
        read_texts(tmp_path / "nope.txt")


def _amax_state(num_layers=2, hidden=32, inter=64, prefix="bert."):
    state = {}
    for i in range(num_layers):
        p = f"{prefix}encoder.layer.{i}."
        for mod, out in (("attention.self.query", hidden), ("attention.self.key", hidden),
                         ("attention.self.value", hidden), ("attention.output.dense", hidden),
                         ("intermediate.dense", inter), ("output.dense", hidden)):
            state[f"{p}{mod}.input_quantizer._amax"] = np.float32(2.0 + i)
            state[f"{p}{mod}.weight_quantizer._amax"] = np.full((out, 1), 0.1, np.float32)
    state[f"{prefix}encoder.layer.0.output.LayerNorm.input_quantizer._amax"] = np.float32(5.0)
    state["classifier.input_quantizer._amax"] = np.float32(1.0)
    return state


def test_amax_import_errors_name_the_key(tiny):
    config = convert_hf_checkpoint(tiny[0]).config
    scales, ignored = import_amax(_amax_state(), config)
    assert sorted(ignored) == ["bert.encoder.layer.0.output.LayerNorm.input_quantizer._amax",
                               "classifier.input_quantizer._amax"]
    assert scales.weights["layer_1/attention/qkv"].shape == (96,)

    missing = _amax_state()
    del missing["bert.encoder.layer.1.attention.self.key.input_quantizer._amax"]
    with pytest.raises(ValueError, match=r"layer 1 .* lacks \['bert.encoder.layer.1.attention.self.key.input_quantizer._amax'\]"):
        import_amax(missing, config)

    extra = {**_amax_state(), "bert.encoder.layer.2.output.dense.input_quantizer._amax": np.float32(1)}
    with pytest.raises(ValueError, match=r"map to no quantization point of this 2-layer bert model: "
                                         r"\['bert.encoder.layer.2.output.dense.input_quantizer._amax'\]"):
        import_amax(extra, config)

    shaped = {**_amax_state(), "bert.encoder.layer.0.output.dense.input_quantizer._amax": np.ones(32, np.float32)}
    with pytest.raises(ValueError, match=r"layer.0.output.dense.input_quantizer._amax: activation amax has shape \(32,\)"):
        import_amax(shaped, config)

    wshape = {**_amax_state(), "bert.encoder.layer.0.intermediate.dense.weight_quantizer._amax": np.ones((32, 1))}
    with pytest.raises(ValueError, match=r"intermediate.dense.weight_quantizer._amax: amax has shape \(32, 1\); expected 64"):
        import_amax(wshape, config)

    mixed = {**_amax_state(), "bert.encoder.layer.0.output.dense._input_quantizer._amax": np.float32(1)}
    with pytest.raises(ValueError, match="mixed pytorch-quantization"):
        import_amax(mixed, config)


def test_cli_import_amax_from_a_torch_state_dict(tmp_path, tiny):
    from samp_jax.cli import main

    out = tmp_path / "ckpt"
    main(["convert", str(tiny[0]), str(out)])
    torch.save({k: torch.tensor(v) for k, v in _amax_state().items()}, tmp_path / "calibrated.pt")
    assert main(["calibrate", str(out), "--import-amax", str(tmp_path / "calibrated.pt")]) == 0
    with pytest.raises(ValueError, match=r"layer 0 \(full_int8\): layer_0/attention/q"):
        samp_jax.load(out, plan="full_int8,probs:float")  # no BMM quantizers were imported
    model = samp_jax.load(out, plan="ffn_int8")
    assert model.scales.method == "imported:modelopt"
    assert np.isfinite(np.asarray(model(np.array([[101, 2023, 102]])))).all()
