"""ModernBERT against Hugging Face PyTorch (eager attention) on tiny random models, and its plans.

The tiny models (tests/conftest.py `make_hf_model`) have 3 layers (global, local, global), a local window of
2 positions each side (`local_attention=4`) and sequences of 12, so the window changes what tokens see.
"""

from __future__ import annotations

import numpy as np
import pytest

import samp_jax
from samp_jax.config import EncoderConfig
from tests.conftest import hf_forward, make_hf_model, random_batch

torch = pytest.importorskip("torch")

LENGTHS = [12, 7, 3, 12]
SEQ = 12
BIASES = dict(norm_bias=True, attention_bias=True, mlp_bias=True, classifier_bias=True)


def _real(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-token outputs at real tokens only (sequence outputs unchanged)."""
    return x[mask.astype(bool)] if x.ndim == 3 else x


CASES = {
    "ModernBertModel": ("ModernBertModel", {}),
    "ModernBertForMaskedLM": ("ModernBertForMaskedLM", {}),  # served as the bare encoder, head and decoder dropped
    "cls": ("ModernBertForSequenceClassification", {}),
    "mean+biases+silu": ("ModernBertForSequenceClassification",
                         dict(classifier_pooling="mean", classifier_activation="silu", **BIASES)),
    "multi_label": ("ModernBertForSequenceClassification", dict(problem_type="multi_label_classification")),
    "token": ("ModernBertForTokenClassification", {}),
    "token+biases+tanh_gelu": ("ModernBertForTokenClassification",
                               dict(hidden_activation="gelu_pytorch_tanh", global_attn_every_n_layers=3, **BIASES)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fp32_matches_hf(tmp_path, case):
    """Real tokens through `model(...)` (bucketed shapes); every position, padding included, at the exact shape.

    A padding query of a local layer whose window holds no real key averages every key of the padded length in
    Hugging Face's eager attention, and so here: its output depends on that length, which `model(...)` rounds
    up to a bucket. Real tokens never see padding, so they agree at any length.
    """
    arch, overrides = CASES[case]
    overrides = dict(overrides)
    problem_type = overrides.pop("problem_type", None)
    hf = make_hf_model(tmp_path, arch, problem_type=problem_type, overrides=overrides or None)
    ids, mask, _ = random_batch(hf.config.vocab_size, LENGTHS, SEQ, pad_id=0)
    ref = hf_forward(hf.model if arch.endswith("MaskedLM") else hf, ids, mask)  # MaskedLM: its encoder's output
    model = samp_jax.load(tmp_path, plan="fp32")
    if problem_type:
        assert model.task.kind == "multi_label_classification"
    out = np.asarray(model(ids, mask))
    assert out.shape == ref.shape
    np.testing.assert_allclose(_real(out, mask), _real(ref, mask), atol=1e-5, rtol=1e-5)
    exact = np.asarray(model.compiled("head", *ids.shape)(ids, mask, np.zeros_like(ids)))
    np.testing.assert_allclose(exact, ref, atol=1e-5, rtol=1e-5)


def test_local_window_matters(tmp_path):
    """The same weights with every layer global give other outputs: the window is really applied."""
    make_hf_model(tmp_path / "local", "ModernBertModel", seed=1)
    hf_global = make_hf_model(tmp_path / "global", "ModernBertModel", seed=1, overrides=dict(global_attn_every_n_layers=1))
    ids, mask, _ = random_batch(400, LENGTHS, SEQ, pad_id=0)
    local = np.asarray(samp_jax.load(tmp_path / "local")(ids, mask))
    global_ = np.asarray(samp_jax.load(tmp_path / "global")(ids, mask))
    np.testing.assert_allclose(_real(global_, mask), _real(hf_forward(hf_global, ids, mask), mask), atol=1e-5)
    assert np.abs(_real(local - global_, mask)).max() > 1e-2


def test_bf16_close_to_hf(tmp_path):
    """bf16 keeps 8 significant bits (relative rounding 2**-9 = 0.002 per op); through 3 layers of 32-wide
    GEMMs, LayerNorms and the head the logits (|logit| ~ 1) drift by a few hundredths. 0.05 absolute is ten
    roundings' worth: it catches a wrong op (errors of order 1) without flaking on rounding."""
    hf = make_hf_model(tmp_path, "ModernBertForSequenceClassification", overrides=dict(classifier_pooling="mean"))
    ids, mask, _ = random_batch(hf.config.vocab_size, LENGTHS, SEQ, pad_id=0)
    ref = hf_forward(hf, ids, mask)
    out = np.asarray(samp_jax.load(tmp_path, plan="bf16")(ids, mask))
    np.testing.assert_allclose(out, ref, atol=0.05, rtol=0.05)
    assert np.abs(out - ref).max() > 0  # it really ran in bf16


def test_token_types_are_refused(tmp_path):
    make_hf_model(tmp_path, "ModernBertModel")
    ids, mask, types = random_batch(400, LENGTHS, SEQ, pad_id=0)
    with pytest.raises(ValueError, match="no token types"):
        samp_jax.load(tmp_path)(ids, mask, types)


def _hf_config(**changes) -> dict:
    cfg = dict(model_type="modernbert", vocab_size=400, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
               intermediate_size=48, pad_token_id=0)
    cfg.update(changes)
    return cfg


def test_hub_style_config():
    """The Hub's keys (answerdotai/ModernBERT-base): global_attn_every_n_layers and the two rope thetas."""
    cfg = EncoderConfig.from_hf_config(_hf_config(global_attn_every_n_layers=3, global_rope_theta=160000.0,
                                                  local_rope_theta=10000.0, local_attention=128, norm_eps=1e-6,
                                                  hidden_activation="gelu"))
    mb = cfg.modernbert
    assert mb is not None and mb.layer_types == ("full_attention", "sliding_attention", "sliding_attention")
    assert (mb.window, mb.rope_theta(0), mb.rope_theta(1), cfg.layer_norm_eps) == (64, 160000.0, 10000.0, 1e-6)
    assert not cfg.has_token_types
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg


def test_transformers5_config_wins_over_old_keys():
    cfg = EncoderConfig.from_hf_config(_hf_config(
        global_attn_every_n_layers=3, global_rope_theta=1.0,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 5.0},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 7.0}}))
    mb = cfg.modernbert
    assert mb is not None and mb.layer_types == ("sliding_attention", "full_attention", "sliding_attention")
    assert (mb.rope_theta(0), mb.rope_theta(1)) == (7.0, 5.0)


@pytest.mark.parametrize("changes, message", [
    (dict(classifier_pooling="max"), "classifier_pooling='max'"),
    (dict(classifier_activation="mish"), "classifier_activation='mish'"),
    (dict(hidden_activation="mish"), "hidden_activation='mish'"),
    (dict(norm_eps=0), "norm_eps=0"),
    (dict(local_attention=0), "local_attention=0"),
    (dict(global_attn_every_n_layers=0), "global_attn_every_n_layers=0"),
    (dict(norm_bias="yes"), "norm_bias='yes'"),
    (dict(global_rope_theta=-1.0), "global_rope_theta=-1.0"),
    (dict(layer_types=["full_attention"]), "layer_types=.*num_hidden_layers=3"),
    (dict(layer_types=["full_attention", "chunked_attention", "full_attention"]), "chunked_attention"),
    (dict(rope_scaling={"rope_type": "linear", "factor": 2.0}), "rope_scaling="),
    (dict(rope_parameters={"full_attention": {"rope_type": "yarn", "rope_theta": 1.0, "factor": 4.0}}),
     r"rope_parameters\['full_attention'\]"),
    (dict(pad_token_id=400), "pad_token_id=400"),
])
def test_unsupported_settings_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        EncoderConfig.from_hf_config(_hf_config(**changes))


def test_bias_present_where_config_says_absent_is_refused(tmp_path):
    """A checkpoint whose weights disagree with its config fails naming the key, not silently."""
    import json

    make_hf_model(tmp_path, "ModernBertModel", overrides=dict(attention_bias=True))
    path = tmp_path / "config.json"
    cfg = json.loads(path.read_text())
    cfg["attention_bias"] = False
    path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"layers\.0\.attn\.Wqkv\.bias"):
        samp_jax.load(tmp_path)


# ---- plans: every mode of tests/test_quantized_modes.py, on a calibrated tiny ModernBERT ----------------------

@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    from convert import convert_hf_checkpoint
    from samp_jax.calibration import calibrate_batches
    from samp_jax.model import SampModel

    folder = tmp_path_factory.mktemp("modernbert")
    hf = make_hf_model(folder, "ModernBertForSequenceClassification", seed=2, overrides=dict(classifier_pooling="mean"))
    # Random init leaves each sublayer's output a few hundredths of the residual stream's size, where no
    # quantization error shows; unit-gain GEMMs make every sublayer count, as in a trained model.
    with torch.no_grad():
        for module in hf.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight /= module.weight.std() * module.in_features**0.5
    hf.save_pretrained(folder)
    ckpt = convert_hf_checkpoint(folder)
    batches = [_plan_batch(seed) for seed in range(3)]
    ckpt.scales = calibrate_batches(SampModel(ckpt, "fp32"), batches, "max", progress=False)
    return ckpt


def _plan_batch(seed: int):
    ids, mask, _ = random_batch(400, [12, 9, 5, 12, 3, 11], SEQ, pad_id=0, seed=seed)
    return ids, mask, np.zeros_like(ids)


def _embeddings(ckpt, plan: str) -> np.ndarray:
    from samp_jax.model import SampModel
    from samp_jax.pooling import DEFAULT_POOLING, embed_hidden

    model = SampModel(ckpt, plan)
    ids, mask, types = _plan_batch(0)
    return np.asarray(embed_hidden(model.hidden_states(ids, mask, types), mask, DEFAULT_POOLING))


def test_calibration_observes_every_point(calibrated):
    from samp_jax.quant import points

    want = {p.key(i) for i in range(3) for p in points.POINTS}
    assert set(calibrated.scales.activations) == want


def _min_cosine() -> dict[str, float]:
    from tests.test_quantized_modes import MIN_COSINE

    return MIN_COSINE


@pytest.mark.parametrize("plan", list(_min_cosine()))
def test_every_mode_stays_close_to_float(calibrated, plan):
    emb = _embeddings(calibrated, plan)
    cos = np.sum(emb * _embeddings(calibrated, "fp32"), axis=-1)
    assert cos.min() >= _min_cosine()[plan], f"{plan}: min cosine {cos.min():.4f}"
    if plan not in ("fp16", "bf16"):
        assert cos.min() < 0.99999  # quantization really happened


def test_mixed_plan_and_8bit_embedding_run(calibrated):
    """Modes side by side (8-bit embedding before a float layer 0, a full_* layer after an ffn_* one) and
    the head's logits, not only the hidden state."""
    from samp_jax.model import SampModel

    ids, mask, types = _plan_batch(1)
    ref = np.asarray(SampModel(calibrated, "fp32")(ids, mask, types))
    for plan in ("ffn_int8:0,full_fp8:1,fp16:2,embedding:int8", "full_int8:0+2,ffn_fp8:1,probs:float,dtype:bf16"):
        out = np.asarray(SampModel(calibrated, plan)(ids, mask, types))
        assert np.isfinite(out).all() and 0 < np.abs(out - ref).max() < 0.5, plan


def test_built_params_follow_modernberts_dataflow(calibrated):
    """Wqkv and Wi write floats (rotary, the GeGLU gate next), the gated activation has its own scale, and no
    layer writes the next one's input codes (each normalizes its own input)."""
    from samp_jax.plan import Plan
    from samp_jax.quant.build import build_params

    plan = Plan.parse("full_int8:0-1,ffn_fp8:2", 3)
    enc = build_params(calibrated.params, calibrated.config, plan, calibrated.scales)["encoder"]
    for i in range(3):
        layer = enc[f"layer_{i}"]
        assert not layer["ffn"]["intermediate"]["packed"].requantize
        assert "activation_scale" in layer["ffn"] and "next_input_scale" not in layer["ffn"]
    assert not enc["layer_0"]["attention"]["qkv"]["packed"].requantize
    assert "packed" not in enc["layer_2"]["attention"]["qkv"]  # ffn_* keeps attention in floats


def test_saved_checkpoint_reloads(tmp_path, calibrated):
    """samp_jax.json keeps the ModernBERT settings: a saved checkpoint gives the same outputs."""
    from samp_jax.checkpoint import load_checkpoint, save_checkpoint
    from samp_jax.model import SampModel

    save_checkpoint(calibrated, tmp_path / "ckpt")
    again = load_checkpoint(tmp_path / "ckpt")
    assert again.config == calibrated.config
    ids, mask, types = _plan_batch(2)
    for plan in ("fp32", "full_int8"):
        np.testing.assert_array_equal(np.asarray(SampModel(again, plan)(ids, mask, types)),
                                      np.asarray(SampModel(calibrated, plan)(ids, mask, types)))


def test_unsupported_paths_say_so(calibrated):
    from convert.amax_import import import_amax
    from samp_jax.layerwise import LayerwiseModel

    with pytest.raises(ValueError, match="measure ModernBERT plans with SampModel"):
        LayerwiseModel(calibrated, "fp32")(*_plan_batch(0))
    with pytest.raises(ValueError, match="model_type='modernbert'"):
        import_amax({"model.layers.0.attn.Wqkv.input_quantizer._amax": np.ones(1)}, calibrated.config)


def test_predict_through_the_tokenizer(tmp_path, minilm_dir):
    """Texts in, labels out: the tokenizer front end pads with the config's pad id, and the scores are
    Hugging Face's softmax over the same ids (MiniLM's WordPiece vocabulary stands in for ModernBERT's)."""
    from transformers import AutoTokenizer

    hf = make_hf_model(tmp_path, "ModernBertForSequenceClassification", labels=("neg", "pos"), tokenizer_from=minilm_dir,
                       overrides=dict(vocab_size=30522, classifier_pooling="mean"))
    texts = ["a subtle and well-crafted chiller .", "this movie is maddening , and far too long for its story ."]
    enc = AutoTokenizer.from_pretrained(minilm_dir)(texts, padding=True, return_tensors="np")
    logits = hf_forward(hf, enc["input_ids"], enc["attention_mask"])
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    for pred, p in zip(samp_jax.load(tmp_path).predict(texts), probs):
        assert pred["label"] == ("neg", "pos")[int(np.argmax(p))]
        np.testing.assert_allclose([pred["scores"]["neg"], pred["scores"]["pos"]], p, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("plan, used", [("full_int8", {"mosaic gemm"})])
def test_kernel_path_matches_xla_path(tmp_path, monkeypatch, plan, used):
    """On the kernel path (interpreted here) the GEMMs and LayerNorms take the Pallas kernels, the attention
    stays on XLA (rotary, the window), and the result is the XLA path's up to summation order and codes at
    rounding ties (the bound of tests/test_kernel_path.py).

    One plan: interpreting the Mosaic GEMMs takes about four minutes per plan on the 2-core CPU. full_int8
    covers the 8-bit GEMMs that write floats (Wqkv, Wi) and the LayerNorms that write codes. (ffn_int8 measured
    0.33 of its quantization error here: its fp16 attention differs between the paths by 5e-4, as the fp16
    plan does, and moves mlp_norm's codes across rounding ties.)"""
    import dataclasses

    import pallas_kernels as ops
    from convert import convert_hf_checkpoint
    from samp_jax.calibration import calibrate_batches
    from samp_jax.model import SampModel
    from tests.conftest import count_kernel_calls

    # kernel-sized: head dim 64, widths multiples of 256; layer 1 is local
    make_hf_model(tmp_path, "ModernBertModel", overrides=dict(hidden_size=256, intermediate_size=256,
                                                              num_hidden_layers=2, vocab_size=1000))
    ckpt = convert_hf_checkpoint(tmp_path)
    batches = [random_batch(1000, [32, 20], 32, 0, seed=s) for s in range(2)]
    ckpt = dataclasses.replace(ckpt, scales=calibrate_batches(SampModel(ckpt, "fp32", kernels="xla"),
                                                              [(i, m, 0 * t) for i, m, t in batches], progress=False))
    calls = count_kernel_calls(monkeypatch)
    ids, mask, _ = random_batch(1000, [32, 11], 32, 0, seed=5)
    types = np.zeros_like(ids)
    fp32 = np.asarray(SampModel(ckpt, "fp32", kernels="xla").hidden_states(ids, mask, types), np.float64)
    xla = np.asarray(SampModel(ckpt, plan, kernels="xla").hidden_states(ids, mask, types), np.float64)
    with ops.interpret_kernels():
        ours = np.asarray(SampModel(ckpt, plan, kernels="auto").hidden_states(ids, mask, types), np.float64)
    assert set(calls) == used, calls
    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))  # noqa: E731
    assert rel(ours, xla) < max(0.3 * rel(xla, fp32), 2e-3), (rel(ours, xla), rel(xla, fp32))
