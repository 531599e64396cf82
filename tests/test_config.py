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
    with pytest.raises(ValueError, match=r"model_type='gpt2'.*supported: \('bert', 'mpnet'[^)]*\)"):
        EncoderConfig.from_hf_config({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})


_TINY_BERT = dict(model_type="bert", vocab_size=100, hidden_size=32, num_hidden_layers=1,
                 num_attention_heads=4, intermediate_size=64)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(position_embedding_type="relative_key"), "position_embedding_type='relative_key'"),
        (dict(hidden_act="mish"), "hidden_act='mish'"),
        (dict(hidden_act=None), "hidden_act=None"),
        (dict(num_attention_heads=5), "hidden_size=32 is not a multiple of num_attention_heads=5"),
        # a pad id past the embedding table converted, then every padded batch gave NaN
        (dict(pad_token_id=100), r"pad_token_id=100 is outside \[0, vocab_size=100\)"),
        (dict(pad_token_id=-1), "pad_token_id=-1 must be non-negative"),
        (dict(pad_token_id=True), "pad_token_id=True must be an integer, not bool"),
        # the modulo by num_heads ran before the positivity check: ZeroDivisionError
        (dict(num_attention_heads=0), "num_attention_heads=0 must be positive"),
        (dict(num_hidden_layers=-2), "num_hidden_layers=-2 must be positive"),
        (dict(intermediate_size=0), "intermediate_size=0 must be positive"),
        (dict(vocab_size=2**40), r"vocab_size=1099511627776 must be below 2\*\*31"),
        (dict(max_position_embeddings=0), "max_position_embeddings=0 must be positive"),
        (dict(type_vocab_size=-1), "type_vocab_size=-1 must be non-negative"),
        # JSON null: TypeError from int(None), naming nothing
        (dict(hidden_size=None), "hidden_size=None must be an integer, not NoneType"),
        (dict(max_position_embeddings=None), "max_position_embeddings=None must be an integer"),
        (dict(layer_norm_eps=None), "layer_norm_eps=None must be a finite number > 0"),
        # strings: "12" converted silently, "abc" said "invalid literal for int()" without the key
        (dict(num_hidden_layers="12"), "num_hidden_layers='12' must be an integer, not str"),
        (dict(hidden_size="abc"), "hidden_size='abc' must be an integer, not str"),
        (dict(layer_norm_eps="1e-12"), "layer_norm_eps='1e-12' must be a finite number > 0"),
        (dict(hidden_size=32.5), "hidden_size=32.5 must be an integer"),
        (dict(vocab_size=False), "vocab_size=False must be an integer, not bool"),
        (dict(layer_norm_eps=0), "layer_norm_eps=0 must be a finite number > 0"),
        (dict(layer_norm_eps=float("nan")), "layer_norm_eps=nan must be a finite number > 0"),
        (dict(layer_norm_eps=-1e-5), "layer_norm_eps=-1e-05 must be a finite number > 0"),
    ],
)
def test_bad_config_values_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        EncoderConfig.from_hf_config({**_TINY_BERT, **change})


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(max_position_embeddings=2), "max_position_embeddings=2 must be above 2, where mpnet positions start"),
        (dict(vocab_size=1), r"pad_token_id=1 is outside \[0, vocab_size=1\) \(MPNet always pads with id 1\)"),
        (dict(relative_attention_num_buckets=0), "relative_attention_num_buckets=0 must be positive"),
    ],
)
def test_bad_mpnet_values_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        EncoderConfig.from_hf_config({**_TINY_BERT, "model_type": "mpnet", **change})


def test_valid_values_keep_their_meaning():
    cfg = EncoderConfig.from_hf_config({**_TINY_BERT, "hidden_size": 32.0, "pad_token_id": None})
    assert cfg == EncoderConfig("bert", 100, 32, 1, 4, 64)
    assert type(cfg.hidden_size) is int and type(cfg.layer_norm_eps) is float
    # MPNet's padding id is 1 whatever config.json says
    assert EncoderConfig.from_hf_config({**_TINY_BERT, "model_type": "mpnet", "pad_token_id": 7}).pad_token_id == 1


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(pad_token_id=30522), r"pad_token_id=30522 is outside \[0, vocab_size=30522\)"),
        (dict(num_heads=0), "num_heads=0 must be positive"),
        (dict(hidden_size="768"), "hidden_size='768' must be an integer, not str"),
        (dict(layer_norm_eps=None), "layer_norm_eps=None must be a finite number > 0"),
        (dict(position_offset=2), "position_offset=2 is not 0, which every bert model has"),
    ],
)
def test_stored_config_is_checked_on_load(change, message):
    """A checkpoint's samp_jax.json is read through from_dict: the same checks, by field name."""
    with pytest.raises(ValueError, match=message):
        EncoderConfig.from_dict({**bert_base().to_dict(), **change})


def test_stored_config_shape_errors_are_named():
    d = bert_base().to_dict()
    with pytest.raises(ValueError, match=r"lacks required fields \['vocab_size'\]"):
        EncoderConfig.from_dict({k: v for k, v in d.items() if k != "vocab_size"})
    with pytest.raises(ValueError, match="stored as a JSON object, got list"):
        EncoderConfig.from_dict([d])


def test_missing_config_key_is_named():
    with pytest.raises(ValueError, match="'intermediate_size'"):
        EncoderConfig.from_hf_config(dict(model_type="bert", vocab_size=10, hidden_size=8,
                                          num_hidden_layers=1, num_attention_heads=2))


def test_config_round_trip():
    cfg = bert_base()
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown EncoderConfig fields"):
        EncoderConfig.from_dict({**cfg.to_dict(), "rotary": True})
