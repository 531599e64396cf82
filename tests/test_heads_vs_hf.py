"""MPNet and the task heads against Hugging Face PyTorch on tiny random models."""

from __future__ import annotations

import numpy as np
import pytest

import samp_jax
from tests.conftest import hf_forward, make_hf_model, random_batch

torch = pytest.importorskip("torch")

LENGTHS = [12, 7, 3, 12]
SEQ = 12


@pytest.mark.parametrize(
    "arch",
    ["BertModel", "BertForSequenceClassification", "BertForTokenClassification",
     "MPNetModel", "MPNetForSequenceClassification", "MPNetForTokenClassification"],
)
def test_fp32_matches_hf(tmp_path, arch):
    hf = make_hf_model(tmp_path, arch)
    cfg = hf.config
    pad = 1 if arch.startswith("MPNet") else 0
    ids, mask, types = random_batch(cfg.vocab_size, LENGTHS, SEQ, pad_id=pad)
    if arch.startswith("MPNet"):
        types = None  # MPNet has no token types
    ref = hf_forward(hf, ids, mask, types)
    model = samp_jax.load(tmp_path, plan="fp32")
    out = np.asarray(model(ids, mask, types))
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-5, rtol=1e-5)


def test_mpnet_relative_position_buckets_match_hf():
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    from samp_jax.positions import relative_position_buckets

    s = 512
    pos = torch.arange(s)
    rel = pos[None, :] - pos[:, None]
    ref = MPNetEncoder.relative_position_bucket(rel, num_buckets=32).numpy()
    np.testing.assert_array_equal(relative_position_buckets(s, 32), ref)


def test_multi_label_head_uses_sigmoid_and_thresholds(tmp_path):
    labels = ("sports", "politics", "tech", "health")
    hf = make_hf_model(tmp_path, "BertForSequenceClassification", labels=labels,
                       problem_type="multi_label_classification")
    model = samp_jax.load(tmp_path)
    assert model.task.kind == "multi_label_classification"
    ids, mask, types = random_batch(hf.config.vocab_size, LENGTHS, SEQ, pad_id=0)
    logits = hf_forward(hf, ids, mask, types)
    np.testing.assert_allclose(np.asarray(model(ids, mask, types)), logits, atol=1e-5)

    probs = 1 / (1 + np.exp(-logits[0]))
    thresholds = [float(np.median(probs))] * len(labels)
    from samp_jax.model import SampModel

    model.task = model.task.with_thresholds(thresholds)
    assert isinstance(model, SampModel)
    decoded = model.decode_sequence(logits[0])
    assert decoded["labels"] == [name for name, p in zip(labels, probs) if p >= thresholds[0]]
    np.testing.assert_allclose([decoded["scores"][name] for name in labels], probs, rtol=1e-6)


def test_cross_encoder_on_pairs_matches_hf(tmp_path, minilm_dir):
    """Sentence-pair classification: the tokenizer's pair encoding and token types reach the model."""
    from transformers import AutoTokenizer

    hf = make_hf_model(tmp_path, "BertForSequenceClassification", labels=("different", "paraphrase"),
                       tokenizer_from=minilm_dir)
    pairs = [("The company said profits rose.", "Profits increased, the firm reported."),
             ("He plays piano.", "The weather is cold today and the wind is strong.")]
    tok = AutoTokenizer.from_pretrained(minilm_dir)
    enc = tok([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="np")
    assert enc["token_type_ids"].any()
    logits = hf_forward(hf, enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)

    preds = samp_jax.load(tmp_path).predict(pairs)
    for pred, p in zip(preds, probs):
        assert pred["label"] == ("different", "paraphrase")[int(np.argmax(p))]
        np.testing.assert_allclose([pred["scores"]["different"], pred["scores"]["paraphrase"]], p, atol=1e-5)


@pytest.mark.parametrize("favoured, expect_span", [("I-PER", True), ("O", False)])
def test_ner_predict_decodes_words_to_character_spans(tmp_path, minilm_dir, favoured, expect_span):
    """A classifier bias that forces one tag: I-PER on every word is one PER span over the
    whole text (IOB1 reading), O everywhere is no span."""
    labels = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
    hf = make_hf_model(tmp_path, "BertForTokenClassification", labels=labels, tokenizer_from=minilm_dir)
    with torch.no_grad():
        hf.classifier.bias[labels.index(favoured)] += 1000.0
    hf.save_pretrained(tmp_path)
    text = "  Angela Merkel visited Washington-based reporters."
    [spans] = samp_jax.load(tmp_path).predict([text])
    if not expect_span:
        assert spans == []
        return
    assert len(spans) == 1
    span = spans[0]
    assert span["entity"] == "PER"
    assert (span["start"], span["end"]) == (2, len(text))
    assert span["text"] == text.strip() == text[span["start"] : span["end"]]
    assert span["score"] == pytest.approx(1.0)


def test_pytorch_bin_loads_like_safetensors(tmp_path):
    a, b = tmp_path / "st", tmp_path / "bin"
    make_hf_model(a, "BertForTokenClassification", seed=3)
    make_hf_model(b, "BertForTokenClassification", seed=3, safe=False)
    assert (b / "pytorch_model.bin").is_file() and not (b / "model.safetensors").exists()
    ids, mask, types = random_batch(30522, LENGTHS, SEQ, pad_id=0)
    np.testing.assert_array_equal(
        np.asarray(samp_jax.load(a)(ids, mask, types)), np.asarray(samp_jax.load(b)(ids, mask, types))
    )
