"""The real all-MiniLM-L6-v2 against Hugging Face PyTorch's BertModel on real sentences."""

from __future__ import annotations

import numpy as np
import pytest

import samp_jax


@pytest.fixture(scope="module")
def hf_reference(minilm_dir, real_sentences):
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, BertModel

    tok = AutoTokenizer.from_pretrained(minilm_dir)
    batch = tok(real_sentences, padding=True, return_tensors="pt")
    model = BertModel.from_pretrained(minilm_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state.numpy()
    inputs = {k: batch[k].numpy() for k in ("input_ids", "attention_mask", "token_type_ids")}
    assert (inputs["attention_mask"] == 0).any(), "the batch must contain padding"
    return inputs, hidden


def _run(minilm_dir, plan, inputs):
    model = samp_jax.load(minilm_dir, plan=plan)
    return np.asarray(model(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]))


def test_fp32_matches_hf_within_1e4(minilm_dir, hf_reference):
    inputs, ref = hf_reference
    out = _run(minilm_dir, "fp32", inputs)
    assert out.shape == ref.shape
    # Every position, padding included: padded positions are computed like HF's.
    assert np.abs(out - ref).max() < 1e-4


@pytest.mark.parametrize(
    "plan, max_abs, rel",
    [
        # bf16 keeps 8 significant bits: the hidden state (|h| up to ~6.2) is rounded
        # to steps of 2^-5 = 0.031 at the top of its range when it is written, so the
        # final cast alone costs up to 0.016; six layers of bf16 residual stream add
        # about as much again. 0.06 is two bf16 steps at |h| = 6; the relative
        # Frobenius error is bounded at 2e-2 (~5 bf16 unit roundoffs of 2^-9).
        ("bf16", 0.06, 2e-2),
        # fp16 has 3 more mantissa bits: bounds 8x tighter.
        ("fp16", 0.0075, 2.5e-3),
    ],
)
def test_half_precision_within_rounding(minilm_dir, hf_reference, plan, max_abs, rel):
    inputs, ref = hf_reference
    out = _run(minilm_dir, plan, inputs)
    real = inputs["attention_mask"].astype(bool)  # padded rows carry no meaning in half precision
    diff = (out - ref)[real]
    assert np.abs(diff).max() < max_abs
    assert np.linalg.norm(diff) / np.linalg.norm(ref[real]) < rel


def test_embeddings_and_similarity_match_sentence_transformers_recipe(minilm_dir, hf_reference, real_sentences):
    """Mean pooling over real tokens + L2 normalization, as all-MiniLM-L6-v2's pipeline does."""
    inputs, ref = hf_reference
    m = inputs["attention_mask"][..., None].astype(np.float64)
    pooled = (ref * m).sum(1) / m.sum(1)
    expected = pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)

    model = samp_jax.load(minilm_dir)
    emb = model.predict(real_sentences)  # bare encoder + texts -> embeddings
    assert emb.shape == expected.shape
    np.testing.assert_allclose(emb, expected, atol=2e-5)

    pairs = list(zip(real_sentences[:6], real_sentences[6:]))
    sims = model.predict(pairs)  # bare encoder + pairs -> cosine similarities
    np.testing.assert_allclose(sims, np.sum(expected[:6] * expected[6:], axis=-1), atol=2e-5)


def test_batch_and_bucket_padding_do_not_change_results(minilm_dir, real_sentences):
    model = samp_jax.load(minilm_dir)
    together = model.embed(real_sentences, batch_size=5)
    alone = np.stack([model.embed([s])[0] for s in real_sentences[:3]])
    np.testing.assert_allclose(together[:3], alone, atol=1e-5)
