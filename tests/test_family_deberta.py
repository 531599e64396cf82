"""DeBERTa-v2/v3 (`model_type: deberta-v2`) against Hugging Face PyTorch on tiny random models."""

from __future__ import annotations

import numpy as np
import pytest

import samp_jax
from samp_jax.config import EncoderConfig
from tests.conftest import DEBERTA_V3, make_hf_model, random_batch

torch = pytest.importorskip("torch")

LENGTHS = [12, 7, 3, 12]
SEQ = 12
ARCHS = ["DebertaV2Model", "DebertaV2ForSequenceClassification", "DebertaV2ForTokenClassification"]


def _hf_forward(hf_model, ids, mask, types):
    kwargs = dict(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long),
                  token_type_ids=torch.tensor(types, dtype=torch.long))
    with torch.no_grad():
        out = hf_model(**kwargs)
    return (out.logits if hasattr(out, "logits") else out.last_hidden_state).numpy()


def _batch(hf, type_vocab_size: int):
    ids, mask, types = random_batch(hf.config.vocab_size, LENGTHS, SEQ, pad_id=0)
    return ids, mask, types if type_vocab_size else np.zeros_like(types)


@pytest.mark.parametrize("type_vocab_size", [0, 2])
@pytest.mark.parametrize("arch", ARCHS)
def test_fp32_matches_hf(tmp_path, arch, type_vocab_size):
    """Every real token's output (padded positions differ by design: samp_jax/disentangled.py says why)."""
    hf = make_hf_model(tmp_path, arch, overrides=dict(type_vocab_size=type_vocab_size))
    ids, mask, types = _batch(hf, type_vocab_size)
    ref = _hf_forward(hf, ids, mask, types)
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
])
def test_config_errors_name_the_key(key, value, message):
    hf = dict(model_type="deberta-v2", vocab_size=400, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=64, **DEBERTA_V3)
    hf[key] = value
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        EncoderConfig.from_hf_config(hf)
