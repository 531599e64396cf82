from __future__ import annotations

import pytest

from samp_jax.config import EncoderConfig, bert_base, minilm_l6


def test_minilm_config_from_hf(minilm_dir):
    cfg = EncoderConfig.from_hf_config(minilm_dir)
    assert cfg == minilm_l6()
    assert (cfg.head_dim, cfg.max_seq_len, cfg.layer_norm_eps) == (32, 512, 1e-12)


def test_mpnet_config_positions_and_token_types():
    hf = dict(model_type="mpnet", vocab_size=30527, hidden_size=768, num_hidden_layers=12,
              num_attention_heads=12, intermediate_size=3072, max_position_embeddings=514,
              layer_norm_eps=1e-5, relative_attention_num_buckets=32, pad_token_id=1)
    cfg = EncoderConfig.from_hf_config(hf)
    assert cfg.max_seq_len == 512 and cfg.position_offset == 2 and cfg.pad_token_id == 1
    assert not cfg.has_token_types and cfg.relative_attention_num_buckets == 32
    assert cfg.layer_norm_eps == 1e-5


def test_unknown_architecture_lists_supported():
    with pytest.raises(ValueError, match=r"model_type='gpt2'.*supported: \('bert', 'mpnet'\)"):
        EncoderConfig.from_hf_config({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(position_embedding_type="relative_key"), "position_embedding_type='relative_key'"),
        (dict(hidden_act="mish"), "hidden_act='mish'"),
        (dict(num_attention_heads=5), "not a multiple of num_heads=5"),
    ],
)
def test_bad_config_values_are_named(change, message):
    hf = dict(model_type="bert", vocab_size=100, hidden_size=32, num_hidden_layers=1,
              num_attention_heads=4, intermediate_size=64)
    with pytest.raises(ValueError, match=message):
        EncoderConfig.from_hf_config({**hf, **change})


def test_missing_config_key_is_named():
    with pytest.raises(ValueError, match="'intermediate_size'"):
        EncoderConfig.from_hf_config(dict(model_type="bert", vocab_size=10, hidden_size=8,
                                          num_hidden_layers=1, num_attention_heads=2))


def test_config_round_trip():
    cfg = bert_base()
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown EncoderConfig fields"):
        EncoderConfig.from_dict({**cfg.to_dict(), "rotary": True})
