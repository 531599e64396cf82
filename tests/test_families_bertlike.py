"""RoBERTa, XLM-RoBERTa, ELECTRA and DistilBERT against Hugging Face PyTorch on tiny random models.

Each family's tiny model (`make_hf_model`: 2 layers, hidden 32, 4 heads; ELECTRA's embeddings 16 wide,
so that `embeddings_project` is exercised) runs a batch with padding; RoBERTa and XLM-R pad with id 1
and number positions from 2, counted over the real tokens.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import samp_jax
from convert import convert_hf_checkpoint
from samp_jax.calibration import calibrate_batches
from samp_jax.config import SUPPORTED_MODEL_TYPES, EncoderConfig
from samp_jax.model import SampModel
from tests.conftest import hf_forward, make_hf_model, random_batch
from tests.test_quantized_modes import MIN_COSINE

torch = pytest.importorskip("torch")

LENGTHS = [12, 7, 3, 12]
SEQ = 12
FAMILIES = {"roberta": "Roberta", "xlm-roberta": "XLMRoberta", "electra": "Electra", "distilbert": "DistilBert"}
PAD = {"roberta": 1, "xlm-roberta": 1, "electra": 0, "distilbert": 0}
HEADS = ("Model", "ForSequenceClassification", "ForTokenClassification")


def _batch(family: str, vocab: int, seed: int = 0):
    """ids, mask and token types (None where the family has one type or none: all zeros, as its tokenizer gives)."""
    ids, mask, types = random_batch(vocab, LENGTHS, SEQ, pad_id=PAD[family], seed=seed)
    return ids, mask, types if family == "electra" else None


def _bf16_tolerance(ref: np.ndarray) -> float:
    """Four units in the last place (ulp) of bfloat16 at the largest reference magnitude.

    bfloat16 keeps 8 significant bits, so one rounding of an output moves it by up to half an ulp at its
    magnitude; the two layers round every GEMM output, residual sum and LayerNorm input, and the worst
    error measured over the families and heads was under 2 ulps of the largest value (0.027 on hidden
    states of magnitude 3.4, where the ulp is 2**-6; 0.0006 on logits of magnitude 0.13). A wrong weight,
    position or head moves outputs by the order of the values themselves, far past 4 ulps.
    """
    top = float(np.abs(ref).max())
    return 4 * 2.0 ** (np.floor(np.log2(top)) - 7)


CASES = [(family, head) for family in FAMILIES for head in HEADS]


@pytest.mark.parametrize("family, head", CASES)
def test_fp32_and_bf16_match_hf(tmp_path, family, head):
    hf = make_hf_model(tmp_path, FAMILIES[family] + head)
    ids, mask, types = _batch(family, hf.config.vocab_size)
    ref = hf_forward(hf, ids, mask, types)
    out = np.asarray(samp_jax.load(tmp_path, plan="fp32")(ids, mask, types))
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)
    bf16 = np.asarray(samp_jax.load(tmp_path, plan="bf16")(ids, mask, types))
    np.testing.assert_allclose(bf16, ref, atol=_bf16_tolerance(ref), rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_multi_label_matches_hf(tmp_path, family):
    labels = ("sports", "politics", "tech", "health")
    hf = make_hf_model(tmp_path, FAMILIES[family] + "ForSequenceClassification", labels=labels,
                       problem_type="multi_label_classification")
    model = samp_jax.load(tmp_path)
    assert model.task.kind == "multi_label_classification" and model.task.labels == labels
    ids, mask, types = _batch(family, hf.config.vocab_size)
    logits = hf_forward(hf, ids, mask, types)
    np.testing.assert_allclose(np.asarray(model(ids, mask, types)), logits, atol=1e-5)
    decoded = model.decode_sequence(logits[0])
    np.testing.assert_allclose([decoded["scores"][name] for name in labels], 1 / (1 + np.exp(-logits[0])), rtol=1e-6)


@pytest.mark.parametrize("arch, overrides", [
    ("ElectraModel", dict(embedding_size=32)),  # no embeddings_project
    ("ElectraForSequenceClassification", dict(hidden_act="relu")),  # the head's GELU is not hidden_act
    ("DistilBertForSequenceClassification", dict(activation="relu")),
    ("DistilBertModel", dict(sinusoidal_pos_embds=True)),  # the (fixed) table is in the weights like a learned one
    ("RobertaForTokenClassification", dict(pad_token_id=3, max_position_embeddings=132)),  # positions from 4
])
def test_config_variants_match_hf(tmp_path, arch, overrides):
    hf = make_hf_model(tmp_path, arch, overrides=overrides)
    family = next(f for f, name in FAMILIES.items() if arch.startswith(name))
    ids, mask, types = _batch(family, hf.config.vocab_size)
    if "pad_token_id" in overrides:
        ids[mask == 0] = overrides["pad_token_id"]
    model = samp_jax.load(tmp_path, plan="fp32")
    if arch == "ElectraModel":
        assert not model.config.has_embedding_projection
    np.testing.assert_allclose(np.asarray(model(ids, mask, types)), hf_forward(hf, ids, mask, types), atol=1e-5)


@pytest.mark.parametrize("arch, dropped", [
    ("ElectraForPreTraining", "discriminator_predictions."),
    ("DistilBertForMaskedLM", "vocab_projector."),
    ("RobertaForMaskedLM", "lm_head."),
])
def test_pretraining_checkpoints_serve_as_bare_encoders(tmp_path, caplog, arch, dropped):
    hf = make_hf_model(tmp_path, arch)
    family = next(f for f, name in FAMILIES.items() if arch.startswith(name))
    ids, mask, types = _batch(family, hf.config.vocab_size)
    with caplog.at_level("WARNING"):
        model = samp_jax.load(tmp_path, plan="fp32")
    assert model.task.kind == "encoder" and dropped in caplog.text
    base = getattr(hf, hf.base_model_prefix)
    np.testing.assert_allclose(np.asarray(model(ids, mask, types)), hf_forward(base, ids, mask, types), atol=1e-5)


# ---- every quantized plan, through the same encoder and quantization points --------------------------


@pytest.fixture(scope="module", params=list(FAMILIES))
def calibrated(request, tmp_path_factory):
    """A family's tiny bare encoder, calibrated (max) on the batches it is then compared on."""
    family = request.param
    folder = tmp_path_factory.mktemp(family)
    hf = make_hf_model(folder, FAMILIES[family] + "Model")
    ckpt = convert_hf_checkpoint(folder)
    batches = [_batch(family, hf.config.vocab_size, seed) for seed in range(3)]
    batches = [(ids, mask, np.zeros_like(ids) if types is None else types) for ids, mask, types in batches]
    ckpt.scales = calibrate_batches(SampModel(ckpt, "fp32"), batches, "max", progress=False)
    return family, ckpt, batches, {plan: _hidden(SampModel(ckpt, plan), batches) for plan in ("fp32", "fp16")}


def _hidden(model: SampModel, batches) -> list[np.ndarray]:
    return [np.asarray(model.hidden_states(*batch), np.float64) for batch in batches]


def _pooled(h: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean-pooled, L2-normalized sentence vectors, as `SampModel.embed` makes them."""
    v = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.mark.parametrize("plan", list(MIN_COSINE))
def test_every_plan_stays_within_its_cosine_bound(calibrated, plan):
    family, ckpt, batches, float_hidden = calibrated
    hidden = _hidden(SampModel(ckpt, plan), batches)
    cos = np.concatenate([np.sum(_pooled(h, b[1]) * _pooled(ref, b[1]), axis=-1)
                          for h, ref, b in zip(hidden, float_hidden["fp32"], batches)])
    assert cos.min() >= MIN_COSINE[plan], f"{family} {plan}: min cosine {cos.min():.4f}"
    if plan not in ("fp16", "bf16"):
        # Quantization really happened. The tiny random models lose little (pooled cosine ~0.99999: their FFN
        # adds little to the residual stream), so the check compares hidden states with the fp16 plan, which
        # computes in the same dtype without quantizing: ffn_int8 differs from it by 5e-3, full_fp8 by 0.25.
        diff = max(np.abs((h - f)[b[1] == 1]).max() for h, f, b in zip(hidden, float_hidden["fp16"], batches))
        assert diff > 1e-3, f"{family} {plan}: {diff=:.2g} from fp16"


def test_mixed_plan_with_8bit_embedding_runs_on_electra_projection(tmp_path):
    """An 8-bit embedding before a full_* layer 0: ELECTRA quantizes after embeddings_project, with layer 0's input scale."""
    hf = make_hf_model(tmp_path, "ElectraModel")
    ckpt = convert_hf_checkpoint(tmp_path)
    batch = random_batch(hf.config.vocab_size, LENGTHS, SEQ, pad_id=0)
    ckpt.scales = calibrate_batches(SampModel(ckpt, "fp32"), [batch], "max", progress=False)
    ref = _pooled(_hidden(SampModel(ckpt, "fp32"), [batch])[0], batch[1])
    for plan in ("full_int8:0,fp16:1,embedding:int8", "fp16:0,full_fp8:1,embedding:fp8"):
        cos = np.sum(_pooled(_hidden(SampModel(ckpt, plan), [batch])[0], batch[1]) * ref, axis=-1)
        assert cos.min() >= MIN_COSINE["full_int8"], f"{plan}: min cosine {cos.min():.4f}"


# ---- configs and conversion errors ------------------------------------------------------------------


def test_family_configs_read_their_own_keys():
    roberta = EncoderConfig.from_hf_config(dict(
        model_type="roberta", vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1))
    assert (roberta.position_offset, roberta.max_seq_len, roberta.type_vocab_size) == (2, 512, 1)
    distil = EncoderConfig.from_hf_config(dict(
        model_type="distilbert", vocab_size=30522, dim=768, n_layers=6, n_heads=12, hidden_dim=3072,
        activation="gelu", max_position_embeddings=512, sinusoidal_pos_embds=False, pad_token_id=0))
    assert (distil.hidden_size, distil.num_layers, distil.num_heads, distil.intermediate_size) == (768, 6, 12, 3072)
    assert not distil.has_token_types and distil.layer_norm_eps == 1e-12 and distil.max_seq_len == 512
    electra = EncoderConfig.from_hf_config(dict(
        model_type="electra", vocab_size=30522, embedding_size=128, hidden_size=256, num_hidden_layers=12,
        num_attention_heads=4, intermediate_size=1024, type_vocab_size=2))
    assert electra.embedding_dim == 128 and electra.has_embedding_projection
    assert EncoderConfig.from_dict(electra.to_dict()) == electra


_DISTIL = dict(model_type="distilbert", vocab_size=100, dim=32, n_layers=1, n_heads=4, hidden_dim=64)
_ROBERTA = dict(model_type="roberta", vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                intermediate_size=64, pad_token_id=1, max_position_embeddings=20)
_ELECTRA = {**_ROBERTA, "model_type": "electra", "embedding_size": 16, "pad_token_id": 0}


@pytest.mark.parametrize("hf, message", [
    ({**_DISTIL, "dim": 0}, "dim=0 must be positive"),
    ({**_DISTIL, "n_heads": 5}, "dim=32 is not a multiple of n_heads=5"),
    ({**_DISTIL, "activation": "mish"}, "unsupported activation='mish'"),
    ({**_DISTIL, "sinusoidal_pos_embds": "yes"}, "sinusoidal_pos_embds='yes' must be true or false"),
    ({k: v for k, v in _DISTIL.items() if k != "hidden_dim"}, "lacks required key 'hidden_dim'"),
    ({**_ROBERTA, "pad_token_id": None}, "pad_token_id=None"),
    ({**_ROBERTA, "pad_token_id": 100, "max_position_embeddings": 200}, r"pad_token_id=100 is outside \[0, vocab_size=100\)"),
    ({**_ROBERTA, "max_position_embeddings": 2}, "max_position_embeddings=2 must be above 2"),
    ({**_ROBERTA, "position_embedding_type": "relative_key"}, "position_embedding_type='relative_key'"),
    ({**_ROBERTA, "model_type": "xlm-roberta", "num_hidden_layers": 1.5}, "num_hidden_layers=1.5 must be an integer"),
    ({**_ELECTRA, "embedding_size": 0}, "embedding_size=0 must be positive"),
    ({**_ELECTRA, "embedding_size": "16"}, "embedding_size='16' must be an integer"),
])
def test_bad_family_config_values_are_named(hf, message):
    with pytest.raises(ValueError, match=message):
        EncoderConfig.from_hf_config(hf)


def test_unknown_model_type_lists_every_supported_one():
    with pytest.raises(ValueError, match="model_type='gpt2'") as e:
        EncoderConfig.from_hf_config({"model_type": "gpt2"})
    assert all(repr(t) in str(e.value) for t in ("bert", "mpnet", *FAMILIES))
    assert set(FAMILIES) <= set(SUPPORTED_MODEL_TYPES)


def test_unknown_architecture_lists_the_supported_ones(tmp_path):
    make_hf_model(tmp_path, "RobertaModel")
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "architectures": ["RobertaForQuestionAnswering"]}))
    with pytest.raises(ValueError, match="unsupported architecture 'RobertaForQuestionAnswering'") as e:
        convert_hf_checkpoint(tmp_path)
    for prefix in ("Bert", "MPNet", *FAMILIES.values()):
        for kind in HEADS:
            assert f"{prefix}{kind}," in str(e.value) or f"{prefix}{kind} " in str(e.value), (prefix, kind)
    assert "ElectraForPreTraining" in str(e.value)


def _edit_weights(folder, edit) -> None:
    from safetensors.numpy import load_file, save_file

    path = folder / "model.safetensors"
    state = load_file(path)
    edit(state)
    save_file(state, path)


def test_missing_and_misshaped_weights_are_named(tmp_path):
    make_hf_model(tmp_path, "DistilBertForSequenceClassification")
    _edit_weights(tmp_path, lambda s: s.pop("distilbert.transformer.layer.1.ffn.lin2.weight"))
    with pytest.raises(ValueError, match=r"params/encoder/layer_1/ffn/output/kernel needs "
                                         r"\['distilbert\.transformer\.layer\.1\.ffn\.lin2\.weight'\], absent"):
        convert_hf_checkpoint(tmp_path)

    electra = tmp_path / "electra"
    make_hf_model(electra, "ElectraForTokenClassification")
    _edit_weights(electra, lambda s: s.update({"electra.embeddings_project.weight": np.zeros((32, 8), np.float32)}))
    with pytest.raises(ValueError, match=r"params/encoder/embeddings/project/kernel expects shape \(16, 32\), got "
                                         r"\(8, 32\) from \{'electra\.embeddings_project\.weight': \(32, 8\)\}"):
        convert_hf_checkpoint(electra)


def test_leftover_head_keys_are_named_as_the_checkpoint_spells_them(tmp_path):
    make_hf_model(tmp_path, "DistilBertForTokenClassification")
    _edit_weights(tmp_path, lambda s: s.update({"pre_classifier.weight": np.zeros((32, 32), np.float32)}))
    with pytest.raises(ValueError, match=r"map to no parameter of this distilbert token_classification model: "
                                         r"\['pre_classifier\.weight'\]"):
        convert_hf_checkpoint(tmp_path)


@pytest.mark.parametrize("hf", [{**_ROBERTA, "model_type": "xlm-roberta"}, _ELECTRA], ids=["xlm-roberta", "electra"])
def test_pytorch_amax_imports_under_the_family_prefix(hf):
    """XLM-R's keys sit under `roberta.`; ELECTRA's `embeddings_project` quantizer is not one samp-jax uses."""
    from convert.amax_import import import_amax

    config = EncoderConfig.from_hf_config(hf)
    prefix = "roberta." if hf["model_type"] == "xlm-roberta" else "electra."
    state = {f"{prefix}embeddings_project.input_quantizer._amax": np.array(1.0, np.float32)}
    for mod, width in (("attention.self.query", 32), ("attention.self.key", 32), ("attention.self.value", 32),
                       ("attention.output.dense", 32), ("intermediate.dense", 64), ("output.dense", 32)):
        state[f"{prefix}encoder.layer.0.{mod}.input_quantizer._amax"] = np.array(2.0, np.float32)
        state[f"{prefix}encoder.layer.0.{mod}.weight_quantizer._amax"] = np.full((width, 1), 0.1, np.float32)
    scales, ignored = import_amax(state, config)
    assert scales.activations["layer_0/input"] == 2.0 and "layer_0/ffn/activation" in scales.activations
    assert ignored == [f"{prefix}embeddings_project.input_quantizer._amax"]


def test_distilbert_amax_imports_from_its_own_layer_names():
    from convert.amax_import import import_amax

    config = EncoderConfig.from_hf_config({**_DISTIL, "n_layers": 2})
    state = {"pre_classifier._input_quantizer._amax": np.array(1.0, np.float32)}
    for i in range(2):
        for mod, width in (("attention.q_lin", 32), ("attention.k_lin", 32), ("attention.v_lin", 32),
                           ("attention.out_lin", 32), ("ffn.lin1", 64), ("ffn.lin2", 32)):
            state[f"distilbert.transformer.layer.{i}.{mod}._input_quantizer._amax"] = np.array(2.0 + i, np.float32)
            state[f"distilbert.transformer.layer.{i}.{mod}._weight_quantizer._amax"] = np.full((width, 1), 0.1, np.float32)
    scales, ignored = import_amax(state, config)
    assert scales.activations["layer_1/input"] == 3.0 and scales.weights["layer_0/attention/qkv"].shape == (96,)
    assert ignored == ["pre_classifier._input_quantizer._amax"]
    state.pop("distilbert.transformer.layer.1.ffn.lin2._weight_quantizer._amax")
    with pytest.raises(ValueError, match=r"layer 1 has some weight_quantizer amax entries but lacks "
                                         r"\['distilbert\.transformer\.layer\.1\.ffn\.lin2\._weight_quantizer\._amax'\]"):
        import_amax(state, config)


# ---- texts in: the tokenizer front end pads with the family's pad id ------------------------------


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _hf_on_encodings(hf, encodings) -> np.ndarray:
    """HF logits for each encoding alone (no padding), as a reference independent of our batching."""
    return np.concatenate([hf_forward(hf, np.array([e.ids]), np.ones((1, len(e.ids)), np.int64)) for e in encodings])


def test_roberta_predict_on_texts_and_pairs_matches_hf(tmp_path, real_sentences):
    """A byte-level BPE tokenizer with RoBERTa's post-processor (<s> a </s></s> b </s>, token types all 0):
    `predict` pads with id 1 and numbers positions over the real tokens, as Hugging Face does."""
    from tokenizers import ByteLevelBPETokenizer, Tokenizer
    from tokenizers.processors import RobertaProcessing

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(real_sentences, vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                            show_progress=False)
    bpe.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    hf = make_hf_model(tmp_path, "RobertaForSequenceClassification")
    bpe.save(str(tmp_path / "tokenizer.json"))
    tok = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    model = samp_jax.load(tmp_path)
    texts, pairs = real_sentences[:5], list(zip(real_sentences[:3], real_sentences[3:6]))  # the shortest
    for items, encodings in ((texts, tok.encode_batch(texts)), (pairs, tok.encode_batch(pairs))):
        assert not any(t for e in encodings for t in e.type_ids)
        assert len({len(e.ids) for e in encodings}) > 1 and max(len(e.ids) for e in encodings) <= model.config.max_seq_len
        probs = _softmax(_hf_on_encodings(hf, encodings))
        preds = model.predict(items)
        got = np.array([[p["scores"][name] for name in ("neg", "pos", "neutral")] for p in preds])
        np.testing.assert_allclose(got, probs, atol=1e-5)


def test_distilbert_predict_on_pairs_ignores_token_types(tmp_path, minilm_dir):
    """A BERT tokenizer gives the second text type 1; DistilBERT has no token types, and Hugging Face's
    tokenizer does not return them for it: the model reads the pair's ids alone."""
    from transformers import AutoTokenizer

    hf = make_hf_model(tmp_path, "DistilBertForSequenceClassification", tokenizer_from=minilm_dir,
                       overrides=dict(vocab_size=30522))
    pairs = [("The company said profits rose.", "Profits increased, the firm reported."),
             ("He plays piano.", "The weather is cold today and the wind is strong.")]
    enc = AutoTokenizer.from_pretrained(minilm_dir)([a for a, _ in pairs], [b for _, b in pairs], padding=True,
                                                    return_tensors="np")
    assert enc["token_type_ids"].any()
    probs = _softmax(hf_forward(hf, enc["input_ids"], enc["attention_mask"]))
    preds = samp_jax.load(tmp_path).predict(pairs)
    got = np.array([[p["scores"][name] for name in ("neg", "pos", "neutral")] for p in preds])
    np.testing.assert_allclose(got, probs, atol=1e-5)


@pytest.mark.parametrize("arch", ["ElectraForSequenceClassification", "RobertaForTokenClassification",
                                  "DistilBertForSequenceClassification"])
def test_layerwise_sweeps_compute_the_compiled_plan(tmp_path, arch):
    """`samp-jax tune` measures plans piecewise (`LayerwiseModel`); the embedding piece holds ELECTRA's projection."""
    from samp_jax.layerwise import LayerwiseModel

    hf = make_hf_model(tmp_path, arch)
    family = next(f for f, name in FAMILIES.items() if arch.startswith(name))
    ckpt = convert_hf_checkpoint(tmp_path)
    ids, mask, types = _batch(family, hf.config.vocab_size)
    types = np.zeros_like(ids) if types is None else types
    ckpt.scales = calibrate_batches(SampModel(ckpt, "fp32", kernels="xla"), [(ids, mask, types)], progress=False)
    for plan in ("full_int8:0,fp16:1,embedding:int8", "ffn_fp8:0,full_fp8:1"):
        whole = np.asarray(SampModel(ckpt, plan, kernels="xla")(ids, mask, types))
        piecewise = np.asarray(LayerwiseModel(ckpt, plan, kernels="xla")(ids, mask, types))
        # as test_layerwise: both fp16 pipelines, apart by at most a hidden state's rounding at a layer boundary
        np.testing.assert_allclose(piecewise, whole, atol=1e-3 * np.abs(whole).max(), rtol=0)
