"""DeBERTa-v2/v3 (`model_type: deberta-v2`) against Hugging Face PyTorch on tiny random models."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import samp_jax
from samp_jax.config import EncoderConfig
from tests.conftest import DEBERTA_V3, hf_forward, make_hf_model, random_batch
from tests.test_quantized_modes import MIN_COSINE

torch = pytest.importorskip("torch")

LENGTHS = [12, 7, 3, 12]
SEQ = 12
ARCHS = ["DebertaV2Model", "DebertaV2ForSequenceClassification", "DebertaV2ForTokenClassification"]


def _batch(hf, type_vocab_size: int):
    ids, mask, types = random_batch(hf.config.vocab_size, LENGTHS, SEQ, pad_id=0)
    return ids, mask, types if type_vocab_size else np.zeros_like(types)


@pytest.mark.parametrize("type_vocab_size", [0, 2])
@pytest.mark.parametrize("arch", ARCHS)
def test_fp32_matches_hf(tmp_path, arch, type_vocab_size):
    """Every real token's output (padded positions differ by design: samp_jax/disentangled.py says why)."""
    hf = make_hf_model(tmp_path, arch, overrides=dict(type_vocab_size=type_vocab_size))
    ids, mask, types = _batch(hf, type_vocab_size)
    ref = hf_forward(hf, ids, mask, types)
    out = np.asarray(samp_jax.load(tmp_path, plan="fp32")(ids, mask, types))
    assert out.shape == ref.shape
    real = mask.astype(bool) if arch != "DebertaV2ForSequenceClassification" else slice(None)
    np.testing.assert_allclose(out[real], ref[real], atol=1e-5, rtol=1e-5)


def test_log_buckets_match_hf():
    from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

    from samp_jax.disentangled import log_bucket_positions

    s = 512
    pos = torch.arange(s)
    rel = pos[:, None] - pos[None, :]
    for buckets, max_position in ((256, 512), (8, 16), (32, 128)):
        ref = make_log_bucket_position(rel, buckets, max_position).long().numpy()
        np.testing.assert_array_equal(log_bucket_positions(s, buckets, max_position), ref)


def test_config_reads_deberta_v3_options():
    cfg = EncoderConfig.from_hf_config(dict(
        model_type="deberta-v2", vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, max_position_embeddings=512, relative_attention=True, max_relative_positions=-1,
        position_buckets=256, pos_att_type="p2c|c2p", share_att_key=True, norm_rel_ebd="layer_norm",
        position_biased_input=False, type_vocab_size=0, pooler_hidden_size=768, pooler_hidden_act="gelu"))
    opts = cfg.deberta
    assert opts is not None and (opts.max_relative_positions, opts.attention_span) == (512, 256)
    assert opts.pos_att_type == ("c2p", "p2c") and opts.scale_factor == 3 and opts.embedding_size == 768
    assert cfg.layer_norm_eps == 1e-7 and not cfg.has_token_types
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    assert "deberta" not in EncoderConfig("bert", 100, 32, 2, 4, 64).to_dict()


@pytest.mark.parametrize("key, value, message", [
    ("conv_kernel_size", 3, "conv_kernel_size=3"),
    ("share_att_key", False, "share_att_key=false"),
    ("relative_attention", False, "relative_attention=false"),
    ("pos_att_type", ["c2p", "p2p"], "names ['p2p']"),
    ("norm_rel_ebd", "batch_norm", "norm_rel_ebd='batch_norm'"),
    ("pooler_hidden_act", "swish9", "pooler_hidden_act='swish9'"),
    ("pooler_hidden_size", 48, "pooler_hidden_size=48"),
    ("position_buckets", "8", "position_buckets='8'"),
    ("position_biased_input", "no", "position_biased_input='no'"),
    ("max_relative_positions", 5, "max_relative_positions=5 must exceed position_buckets // 2 \\+ 1 = 5"),
])
def test_config_errors_name_the_key(key, value, message):
    hf = dict(model_type="deberta-v2", vocab_size=400, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=64, **DEBERTA_V3)
    hf[key] = value
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        EncoderConfig.from_hf_config(hf)


def test_stored_options_are_checked():
    cfg = EncoderConfig.from_hf_config(dict(model_type="deberta-v2", vocab_size=400, hidden_size=32,
                                            num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                                            **DEBERTA_V3))
    stored = cfg.to_dict()
    with pytest.raises(ValueError, match="unknown DeBERTa options \\['conv'\\]"):
        EncoderConfig.from_dict({**stored, "deberta": {**stored["deberta"], "conv": 3}})
    with pytest.raises(ValueError, match="pos_att_type=7 must be a list"):
        EncoderConfig.from_dict({**stored, "deberta": {**stored["deberta"], "pos_att_type": 7}})
    with pytest.raises(ValueError, match="a deberta-v2 EncoderConfig needs its DeBERTa options"):
        EncoderConfig.from_dict({**stored, "deberta": None})
    with pytest.raises(ValueError, match="DeBERTa options given for model_type='bert'"):
        EncoderConfig.from_dict({**stored, "model_type": "bert"})


def test_multi_label_head_matches_hf(tmp_path):
    labels = ("sports", "politics", "tech", "health")
    hf = make_hf_model(tmp_path, "DebertaV2ForSequenceClassification", labels=labels,
                       problem_type="multi_label_classification")
    model = samp_jax.load(tmp_path)
    assert model.task.kind == "multi_label_classification" and model.task.labels == labels
    ids, mask, types = _batch(hf, 0)
    np.testing.assert_allclose(np.asarray(model(ids, mask, types)), hf_forward(hf, ids, mask, types), atol=1e-5)


# bf16 keeps 8 significant bits: the tiny model's hidden state (|h| up to ~3.2) is rounded to steps of
# 2^-6 = 0.016 at the top of its range, 0.008 at most from the last cast alone; two layers of bf16 GEMM
# inputs and residual stream add the rest (measured: 0.025 max, 4e-3 relative Frobenius error). The bounds
# sit ~2.5x above: 0.06 is under four bf16 steps at |h| = 3, 1e-2 is ~5 bf16 unit roundoffs (2^-9).
# fp16 has 3 more mantissa bits (measured 0.0028 and 5e-4): bounds 8x tighter.
@pytest.mark.parametrize("plan, max_abs, rel", [("bf16", 0.06, 1e-2), ("fp16", 0.0075, 1.25e-3)])
def test_half_precision_within_rounding(tmp_path, plan, max_abs, rel):
    hf = make_hf_model(tmp_path, "DebertaV2Model")
    ids, mask, types = _batch(hf, 0)
    ref = hf_forward(hf, ids, mask, types)
    out = np.asarray(samp_jax.load(tmp_path, plan=plan)(ids, mask, types))
    real = mask.astype(bool)
    diff = (out - ref)[real]
    assert np.abs(diff).max() < max_abs, np.abs(diff).max()
    assert np.linalg.norm(diff) / np.linalg.norm(ref[real]) < rel


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A tiny DeBERTa-v3-shaped model, max-calibrated on random batches; evaluation batches of other ids."""
    from convert import convert_hf_checkpoint
    from samp_jax.calibration import calibrate_batches
    from samp_jax.model import SampModel

    folder = tmp_path_factory.mktemp("deberta")
    make_hf_model(folder, "DebertaV2ForSequenceClassification")
    ckpt = convert_hf_checkpoint(folder)
    batches = [random_batch(400, [12, 9, 5, 12, 3, 8], SEQ, pad_id=0, seed=s) for s in range(4)]
    ckpt.scales = calibrate_batches(SampModel(ckpt, "fp32"), batches, "max", progress=False)
    return ckpt, random_batch(400, [12, 10, 6, 12, 4, 11, 7, 2], SEQ, pad_id=0, seed=99)


def _embeddings(model, batch):
    from samp_jax.pooling import DEFAULT_POOLING, embed_hidden

    ids, mask, types = batch
    return np.asarray(embed_hidden(model.hidden_states(ids, mask, types), mask, DEFAULT_POOLING))


@pytest.mark.parametrize("plan", list(MIN_COSINE))
def test_every_mode_stays_close_to_float(calibrated, plan):
    """Every plan of tests/test_quantized_modes.py, all layers in that mode, within its cosine bound.

    The tiny random model has no outlier channels, so it loses far less than MiniLM (measured min cosine:
    full_fp8 0.9985, full_int8 0.9999, the rest above 0.99998); that its 8-bit GEMMs ran shows as an output
    unlike the fp16 plan's, whose compute dtype they share (fp16 itself reproduces bit for bit).
    """
    from samp_jax.model import SampModel

    ckpt, batch = calibrated
    reference = _embeddings(SampModel(ckpt, "fp32"), batch)
    emb = _embeddings(SampModel(ckpt, plan), batch)
    cos = np.sum(emb * reference, axis=-1)
    assert cos.min() >= MIN_COSINE[plan], f"{plan}: min cosine {cos.min():.4f}"
    if plan not in ("fp16", "bf16"):
        assert np.abs(emb - _embeddings(SampModel(ckpt, "fp16"), batch)).max() > 1e-4


def test_mixed_plan_runs_layerwise_as_whole(calibrated):
    """A mixed plan with an 8-bit embedding (codes into a full_* layer 0): the per-piece compilation that
    `samp-jax tune` measures gives the whole model's output, head included."""
    from samp_jax.layerwise import LayerwiseModel
    from samp_jax.model import SampModel

    ckpt, (ids, mask, types) = calibrated
    plan = "full_int8:0,ffn_fp8:1,embedding:int8,probs:int8"
    whole = np.asarray(SampModel(ckpt, plan)(ids, mask, types))
    np.testing.assert_allclose(np.asarray(LayerwiseModel(ckpt, plan)(ids, mask, types)), whole, atol=1e-4)
    assert np.abs(whole - np.asarray(SampModel(ckpt, "fp32")(ids, mask, types))).max() > 1e-4


@pytest.mark.parametrize("overrides", [
    dict(embedding_size=16),  # embed_proj: 16 -> 32
    dict(position_biased_input=True, type_vocab_size=2),  # DeBERTa-v2's absolute positions too
    dict(pos_att_type=["c2p"], position_buckets=-1, norm_rel_ebd="none"),  # one term, no log buckets
])
def test_other_options_match_hf(tmp_path, overrides):
    hf = make_hf_model(tmp_path, "DebertaV2ForTokenClassification", overrides=overrides)
    ids, mask, types = _batch(hf, hf.config.type_vocab_size)
    ref = hf_forward(hf, ids, mask, types)
    out = np.asarray(samp_jax.load(tmp_path, plan="fp32")(ids, mask, types))
    real = mask.astype(bool)
    np.testing.assert_allclose(out[real], ref[real], atol=1e-5, rtol=1e-5)


# The kernel path on the GPU (run there: `python -m pytest -q -m gpu tests/test_family_deberta.py`): a
# DeBERTa-v3-shaped model whose GEMMs the Mosaic kernels take, its attention kept on XLA (docs/kernels.md,
# "DeBERTa's disentangled attention"). Bounds as tests/test_gpu_parity.py's kernel path.
KERNEL_PLANS = ["fp16", "ffn_int8", "full_int8", "full_int8,dtype:fp32", "full_fp8,dtype:fp32"]


def _gpu():
    import jax

    try:
        return jax.devices("gpu")[0]
    except RuntimeError:
        return None


@pytest.fixture(scope="module")
def kernel_setup(tmp_path_factory):
    import jax

    from convert import convert_hf_checkpoint
    from samp_jax.calibration import calibrate_batches
    from samp_jax.model import SampModel

    folder = tmp_path_factory.mktemp("gpu_kernel_deberta")
    make_hf_model(folder, "DebertaV2Model", seed=5, overrides=dict(
        hidden_size=256, num_attention_heads=4, intermediate_size=512, position_buckets=256,
        max_relative_positions=512, max_position_embeddings=512))
    ckpt = convert_hf_checkpoint(folder)
    batch = random_batch(400, [128, 70, 128, 5], 128, pad_id=0, seed=4)
    with jax.default_device(jax.devices("cpu")[0]):
        ckpt.scales = calibrate_batches(SampModel(ckpt, "fp32"), [batch], progress=False)
    return ckpt, batch


@pytest.mark.gpu
@pytest.mark.skipif(_gpu() is None, reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("plan", KERNEL_PLANS)
def test_kernel_path_on_gpu_matches_cpu(kernel_setup, monkeypatch, plan):
    import jax

    from samp_jax.model import SampModel
    from tests.conftest import count_kernel_calls

    ckpt, (ids, mask, types) = kernel_setup
    calls = count_kernel_calls(monkeypatch)
    real = mask.astype(bool)
    with jax.default_device(jax.devices("cpu")[0]):
        cpu = np.asarray(SampModel(ckpt, plan).hidden_states(ids, mask, types), np.float64)[real]
        fp32 = np.asarray(SampModel(ckpt, "fp32").hidden_states(ids, mask, types), np.float64)[real]
    with jax.default_device(_gpu()):
        gpu = np.asarray(SampModel(ckpt, plan).hidden_states(ids, mask, types), np.float64)[real]
    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))  # noqa: E731
    err, quant_err, gpu_err = rel(gpu, cpu), rel(cpu, fp32), rel(gpu, fp32)
    print(f"deberta kernel path {plan}: GPU vs CPU {err:.2e}, plan vs fp32 {quant_err:.2e} (GPU {gpu_err:.2e}), "
          f"kernels {sorted(set(calls))}")
    assert not {"triton attention", "triton 8-bit attention"} & set(calls)
    if plan == "fp16":
        assert "mosaic float gemm" in calls
        assert err < 3e-3
        return
    assert "mosaic gemm" in calls
    assert err < 0.5 * quant_err, (err, quant_err)
    assert gpu_err < 1.05 * quant_err, (gpu_err, quant_err)


def test_amax_import_maps_deberta_keys(calibrated):
    """A pytorch-quantization state dict of a DeBERTa-v2 model (`deberta.` prefix, query_proj/key_proj/value_proj)
    fills every point and GEMM, and the plan built from it runs."""
    from convert.amax_import import import_amax
    from samp_jax.model import SampModel
    from samp_jax.quant.points import GEMMS, POINTS

    ckpt, (ids, mask, types) = calibrated
    cfg = ckpt.config
    linears = {"attention.self.query_proj": cfg.hidden_size, "attention.self.key_proj": cfg.hidden_size,
               "attention.self.value_proj": cfg.hidden_size, "attention.output.dense": cfg.hidden_size,
               "intermediate.dense": cfg.intermediate_size, "output.dense": cfg.hidden_size}
    state = {}
    for i in range(cfg.num_layers):
        for module, width in linears.items():
            state[f"deberta.encoder.layer.{i}.{module}._input_quantizer._amax"] = np.float32(4.0)
            state[f"deberta.encoder.layer.{i}.{module}._weight_quantizer._amax"] = np.full(width, 0.5, np.float32)
        for bmm in "qkva":
            state[f"deberta.encoder.layer.{i}.attention.self.matmul_{bmm}_input_quantizer._amax"] = np.float32(8.0)
    scales, ignored = import_amax(state, cfg)
    assert ignored == []
    assert set(scales.activations) == {p.key(i) for i in range(cfg.num_layers) for p in POINTS}
    assert set(scales.weights) == {g.key(i) for i in range(cfg.num_layers) for g in GEMMS}
    ckpt = dataclasses.replace(ckpt, scales=scales)
    assert np.isfinite(np.asarray(SampModel(ckpt, "full_int8,probs:int8")(ids, mask, types))).all()


def test_masked_lm_checkpoint_serves_its_encoder(tmp_path, caplog):
    """DebertaV2ForMaskedLM converts to the bare encoder: its LM head and the position table DeBERTa-v3 does not
    read (written by some checkpoints; Hugging Face skips it on load) are dropped and reported."""
    from safetensors.numpy import load_file, save_file

    hf = make_hf_model(tmp_path, "DebertaV2ForMaskedLM")
    state = load_file(tmp_path / "model.safetensors")
    state["deberta.embeddings.position_embeddings.weight"] = np.zeros((128, 32), np.float32)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    model = samp_jax.load(tmp_path, plan="fp32")
    assert model.task.kind == "encoder"
    assert "deberta.embeddings.position_embeddings.weight" in caplog.text and "cls.predictions" in caplog.text
    ids, mask, types = _batch(hf, 0)
    ref = hf_forward(hf.deberta, ids, mask, types)
    real = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(model(ids, mask, types))[real], ref[real], atol=1e-5, rtol=1e-5)


def test_conversion_errors_name_the_checkpoint_keys(tmp_path):
    from safetensors.numpy import load_file, save_file

    make_hf_model(tmp_path, "DebertaV2ForSequenceClassification")
    state = load_file(tmp_path / "model.safetensors")
    del state["deberta.encoder.rel_embeddings.weight"], state["pooler.dense.bias"]
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError) as e:
        samp_jax.load(tmp_path)
    assert "params/encoder/rel_embeddings needs ['deberta.encoder.rel_embeddings.weight']" in str(e.value)
    assert "params/head/pooler/bias needs ['pooler.dense.bias']" in str(e.value)


def test_cross_encoder_pairs_and_saved_checkpoint(tmp_path, minilm_dir):
    """Pairs through a tokenizer that writes token types (as DeBERTa-v3's does), which a model without a type
    table ignores, as Hugging Face's does; the converted checkpoint saved and loaded again gives the same."""
    from transformers import AutoTokenizer

    from convert import convert_hf_checkpoint

    hf = make_hf_model(tmp_path / "hf", "DebertaV2ForSequenceClassification", labels=("different", "paraphrase"),
                       tokenizer_from=minilm_dir, overrides=dict(vocab_size=30522))
    pairs = [("The company said profits rose.", "Profits increased, the firm reported."),
             ("He plays piano.", "The weather is cold today and the wind is strong.")]
    enc = AutoTokenizer.from_pretrained(minilm_dir)([a for a, _ in pairs], [b for _, b in pairs], padding=True,
                                                    return_tensors="np")
    assert enc["token_type_ids"].any()
    logits = hf_forward(hf, enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    convert_hf_checkpoint(tmp_path / "hf", tmp_path / "ckpt")
    for source in (tmp_path / "hf", tmp_path / "ckpt"):
        preds = samp_jax.load(source).predict(pairs)
        got = [[p["scores"]["different"], p["scores"]["paraphrase"]] for p in preds]
        np.testing.assert_allclose(got, probs, atol=1e-5)


@pytest.mark.parametrize("qtype", ["int8", "fp8"])
def test_dequantized_qk_is_the_8bit_gemms_weight(qtype):
    """full_* layers project the relative embeddings with the Q/K columns the packed 8-bit QKV GEMM multiplies by."""
    import jax.numpy as jnp

    from pallas_kernels import pack_weight
    from samp_jax.disentangled import dequantized_qk
    from samp_jax.quant.qarray import quantize_weight

    rng = np.random.default_rng(0)
    h = 16
    kernel, bias = rng.standard_normal((h, 3 * h)).astype(np.float32), rng.standard_normal(3 * h).astype(np.float32)
    w = quantize_weight(jnp.asarray(kernel), qtype)
    x_scale = jnp.float32(0.037)
    packed = pack_weight(w.values, w.scale, jnp.asarray(bias), x_scale=x_scale, qtype=qtype)
    got_kernel, got_bias = dequantized_qk(packed, x_scale, h)
    want = np.asarray(w.values, np.float32) * np.asarray(w.scale, np.float32)
    np.testing.assert_allclose(np.asarray(got_kernel), want[:, : 2 * h], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(got_bias), bias[: 2 * h])
    assert np.abs(np.asarray(got_kernel) - kernel[:, : 2 * h]).max() < 0.1 * np.abs(kernel).max()
