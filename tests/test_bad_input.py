"""Each bad input gets a ValueError/FileNotFoundError naming the value, never a silent answer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import samp_jax
from convert import convert_hf_checkpoint
from convert.hf_to_flax import convert_state_dict
from convert.hf_weights import read_state_dict
from samp_jax.checkpoint import expected_param_shapes
from samp_jax.config import EncoderConfig
from samp_jax.heads import TaskSpec
from tests.conftest import make_hf_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, minilm_dir):
    folder = tmp_path_factory.mktemp("tiny_bert")
    make_hf_model(folder, "BertForSequenceClassification", tokenizer_from=minilm_dir)
    return folder


@pytest.fixture(scope="module")
def model(tiny_dir):
    return samp_jax.load(tiny_dir)


@pytest.fixture(scope="module")
def mpnet_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_mpnet")
    make_hf_model(folder, "MPNetModel")
    return samp_jax.load(folder)


def test_good_call_runs(model):
    assert np.asarray(model(np.ones((2, 5), np.int64))).shape == (2, 3)


@pytest.mark.parametrize(
    "ids, message",
    [
        (np.array([[101, 30522, 102]]), r"input_ids\[0, 1\]=30522 is outside \[0, 30522\)"),
        (np.array([[101, -1, 102]]), r"input_ids\[0, 1\]=-1 is outside"),
        (np.array([[1.0, 2.0]]), "input_ids must hold integers, got dtype=float64"),
        (np.array([True, False])[None], "input_ids must hold integers, got dtype=bool"),
        (np.array([101, 102]), r"must be 2-D \[batch, seq\], got shape \(2,\)"),
        (np.zeros((0, 4), np.int32), r"empty batch: input_ids.shape=\(0, 4\)"),
        (np.zeros((2, 0), np.int32), "empty sequences"),
        (np.ones((1, 129), np.int32), "sequence length 129 exceeds the model's maximum 128"),
        # np.asarray([]) is float64: an empty list was reported as a dtype
        ([], r"input_ids is empty: input_ids.shape=\(0,\)"),
        ([[]], r"empty sequences: input_ids.shape=\(1, 0\)"),
        ([[1, 2], [3]], r"input_ids=\[\[1, 2\], \[3\]\] is not a rectangular array of integers"),
        (None, "input_ids=None: pass token ids"),
        ("hello world", "input_ids='hello world' is text"),
        (np.int64(7), r"input_ids=np.int64\(7\) must be a 2-D \[batch, seq\] array, got int64"),
        (np.array([[101, None]], dtype=object), r"input_ids\[0, 1\]=None is not an integer"),
        (np.ones((1, 2, 3), np.int32), r"must be 2-D \[batch, seq\], got shape \(1, 2, 3\)"),
        # past int64: checked as Python ints, never cast first
        ([[101, 2**70]], r"input_ids\[0, 1\]=1180591620717411303424 is outside \[0, 30522\)"),
        # past int32: 2**32 + 5 would wrap to 5 if cast before the range check
        (np.array([[101, 2**32 + 5]]), r"input_ids\[0, 1\]=4294967301 is outside \[0, 30522\)"),
        (np.array([[101, 2**63 + 5]], np.uint64), r"input_ids\[0, 1\]=9223372036854775813 is outside"),
    ],
)
def test_bad_ids(model, ids, message):
    with pytest.raises(ValueError, match=message):
        model(ids)


def test_other_integer_layouts_give_the_same_answer(model):
    ids = np.array([[101, 7592, 2088, 102]], np.int32)
    want = np.asarray(model(ids))
    for same in (ids.astype(np.uint64), ids.astype(np.int16), ids.tolist(), np.array(ids.tolist(), dtype=object)):
        np.testing.assert_array_equal(np.asarray(model(same)), want)


def test_bad_mask_and_types(model):
    ids = np.ones((2, 4), np.int32)
    with pytest.raises(ValueError, match=r"attention_mask.shape=\(2, 3\) != input_ids.shape=\(2, 4\)"):
        model(ids, np.ones((2, 3), np.int32))
    with pytest.raises(ValueError, match=r"attention_mask\[1, 2\]=2 is outside \[0, 2\)"):
        model(ids, np.array([[1, 1, 1, 1], [1, 1, 2, 0]]))
    with pytest.raises(ValueError, match="attention_mask row 1 has no real token"):
        model(ids, np.array([[1, 1, 0, 0], [0, 0, 0, 0]]))
    with pytest.raises(ValueError, match=r"token_type_ids.shape=\(1, 4\) != input_ids.shape=\(2, 4\)"):
        model(ids, None, np.zeros((1, 4), np.int32))
    with pytest.raises(ValueError, match=r"token_type_ids\[0, 3\]=2 is outside \[0, 2\) \(type_vocab_size=2\)"):
        model(ids, None, np.array([[0, 0, 1, 2], [0, 0, 0, 0]]))
    with pytest.raises(ValueError, match="attention_mask must hold integers, got dtype=float32"):
        model(ids, np.ones((2, 4), np.float32))
    # a float mask is refused whatever its values: 0.0/1.0 is one .astype(int) away, 0.5 has no meaning
    with pytest.raises(ValueError, match=r"got dtype=float64 \(0/1 or booleans; cast a float mask with .astype\(int\)\)"):
        model(ids, np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"attention_mask=\[\[1, 1\], \[1\]\] is not a rectangular array"):
        model(ids, [[1, 1], [1]])
    with pytest.raises(ValueError, match="token_type_ids must hold integers, got dtype=bool"):
        model(ids, None, np.zeros((2, 4), bool))
    # a boolean mask is a mask
    np.testing.assert_allclose(np.asarray(model(ids, np.ones((2, 4), bool))), np.asarray(model(ids)))


def test_mpnet_rejects_token_types_and_positions_past_its_table(mpnet_model):
    ids = np.full((1, 4), 7, np.int32)
    with pytest.raises(ValueError, match="mpnet model has no token types"):
        mpnet_model(ids, None, np.array([[0, 1, 1, 1]]))
    mpnet_model(ids, None, np.zeros((1, 4), np.int32))  # zeros are fine
    with pytest.raises(ValueError, match="sequence length 129 exceeds the model's maximum 128 "
                                         r"\(max_position_embeddings=130\)"):
        mpnet_model(np.full((1, 129), 7, np.int32))


def test_predict_bad_inputs(model):
    with pytest.raises(ValueError, match="empty batch"):
        model.predict([])
    with pytest.raises(ValueError, match="more than max_length=128"):
        model.predict(["word " * 300])
    with pytest.raises(ValueError, match="batch_size=0 must be a positive integer"):
        model.predict(["fine"], batch_size=0)


# ---- checkpoint folders ------------------------------------------------------

def test_missing_folder_and_files(tmp_path, tiny_dir):
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        samp_jax.load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="neither a samp-jax checkpoint .* nor a Hugging Face folder"):
        samp_jax.load(tmp_path)
    broken = tmp_path / "no_weights"
    shutil.copytree(tiny_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights in .*no_weights: expected model.safetensors"):
        samp_jax.load(broken)


def test_corrupt_files(tmp_path, tiny_dir):
    bad = tmp_path / "bad_weights"
    shutil.copytree(tiny_dir, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt safetensors file .*model.safetensors"):
        samp_jax.load(bad)

    bad_cfg = tmp_path / "bad_config"
    shutil.copytree(tiny_dir, bad_cfg)
    (bad_cfg / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt JSON in .*config.json"):
        samp_jax.load(bad_cfg)

    bad_tok = tmp_path / "bad_tokenizer"
    shutil.copytree(tiny_dir, bad_tok)
    (bad_tok / "tokenizer.json").write_text('{"version": "1.0", "model": 3}')
    with pytest.raises(ValueError, match="corrupt tokenizer file .*tokenizer.json"):
        samp_jax.load(bad_tok)


def test_corrupt_pickle_is_refused_without_running_it(tmp_path, tiny_dir):
    import pickle

    target = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(target), "w"))

    bad = tmp_path / "evil"
    bad.mkdir()
    shutil.copy(tiny_dir / "config.json", bad / "config.json")
    (bad / "pytorch_model.bin").write_bytes(pickle.dumps({"x": Exploit()}))
    with pytest.raises(ValueError, match="corrupt or unsafe PyTorch checkpoint"):
        samp_jax.load(bad)
    assert not target.exists()


def test_unknown_and_unsupported_architectures(tmp_path, tiny_dir):
    other = tmp_path / "gpt"
    shutil.copytree(tiny_dir, other)
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    with pytest.raises(ValueError, match=r"unsupported model_type='gpt2'.*supported: \('bert', 'mpnet'[^)]*\)"):
        samp_jax.load(other)
    (other / "config.json").write_text(json.dumps({**cfg, "architectures": ["BertForQuestionAnswering"]}))
    with pytest.raises(ValueError, match="unsupported architecture 'BertForQuestionAnswering'"):
        samp_jax.load(other)


def _tiny_state(tiny_dir):
    cfg = EncoderConfig.from_hf_config(tiny_dir)
    task = TaskSpec("sequence_classification", ("neg", "pos", "neutral"))
    return read_state_dict(tiny_dir), cfg, task, expected_param_shapes(cfg, task)


def test_missing_unexpected_and_misshaped_keys_name_both_sides(tiny_dir):
    state, cfg, task, shapes = _tiny_state(tiny_dir)
    convert_state_dict(state, cfg, task, shapes)  # the intact one converts

    missing = {k: v for k, v in state.items() if k != "bert.encoder.layer.1.attention.self.key.weight"}
    with pytest.raises(ValueError, match=r"params/encoder/layer_1/attention/qkv/kernel needs "
                                         r"\['bert.encoder.layer.1.attention.self.key.weight'\], absent"):
        convert_state_dict(missing, cfg, task, shapes)

    extra = {**state, "bert.encoder.layer.1.adapter.weight": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match=r"map to no parameter .*\['bert.encoder.layer.1.adapter.weight'\]"):
        convert_state_dict(extra, cfg, task, shapes)

    wrong = {**state, "classifier.weight": np.zeros((5, 32), np.float32)}
    with pytest.raises(ValueError, match=r"params/head/classifier/kernel expects shape \(32, 3\), got \(32, 5\) "
                                         r"from \{'classifier.weight': \(5, 32\)\}"):
        convert_state_dict(wrong, cfg, task, shapes)


def test_converted_checkpoint_damage_is_reported(tmp_path, tiny_dir):
    out = tmp_path / "ckpt"
    convert_hf_checkpoint(tiny_dir, out)
    samp_jax.load(out)

    meta = json.loads((out / "samp_jax.json").read_text())
    (out / "samp_jax.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ValueError, match="format_version|version=99"):
        samp_jax.load(out)
    (out / "samp_jax.json").write_text(json.dumps(meta))

    # a config that no longer fits the stored parameters
    (out / "samp_jax.json").write_text(json.dumps({**meta, "encoder": {**meta["encoder"], "intermediate_size": 48}}))
    with pytest.raises(ValueError, match=r"params/encoder/layer_0/ffn/intermediate/kernel has shape \(32, 64\), "
                                         r"the config implies \(32, 48\)"):
        samp_jax.load(out)
    (out / "samp_jax.json").write_text(json.dumps(meta))

    for f in (out / "params").rglob("*"):
        if f.is_file() and "METADATA" not in f.name and f.name != "commit_success.txt":
            f.write_bytes(b"\x00garbage" * 7)
    with pytest.raises((ValueError, FileNotFoundError), match="corrupt parameter checkpoint"):
        samp_jax.load(out)

    shutil.rmtree(out / "params")
    with pytest.raises(FileNotFoundError, match="missing parameter folder"):
        samp_jax.load(out)


def _with_config(tmp_path, tiny_dir, name, **change):
    folder = tmp_path / name
    shutil.copytree(tiny_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **change}))
    return folder


@pytest.mark.parametrize(
    "change, message",
    [
        # converted, then every padded batch gathered past the embedding table: NaN outputs
        (dict(pad_token_id=30522), r"pad_token_id=30522 is outside \[0, vocab_size=30522\)"),
        (dict(num_attention_heads=0), "num_attention_heads=0 must be positive"),
        (dict(hidden_size=None), "hidden_size=None must be an integer"),
        # a string was indexed: "unsupported architecture 'B'"
        (dict(architectures="BertForSequenceClassification"),
         r"architectures='BertForSequenceClassification' must be a list of class names"),
        (dict(architectures=[None]), r"architectures=\[None\] must be a list of class names"),
        # int() of a key: "invalid literal for int() with base 10: 'neg'", naming no key
        (dict(id2label={"neg": "0", "pos": "1", "neutral": "2"}), "id2label key 'neg' is not a label id"),
        (dict(id2label={"0": "neg", "1": "pos", "3": "neutral"}), r"id2label ids \[0, 1, 3\] must be 0 to 2"),
        (dict(id2label=["neg", "pos", "neutral"]), r"id2label=\['neg', 'pos', 'neutral'\] must map label ids"),
        (dict(id2label=None, num_labels=0), "num_labels=0 must be a positive integer"),
        (dict(id2label=None, num_labels="3"), "num_labels='3' must be a positive integer"),
        (dict(problem_type="multilabel"), "unknown problem_type='multilabel'"),
        # the classifier's width disagrees with the labels: the converter names both sides
        (dict(id2label={"0": "neg", "1": "pos"}),
         r"(?s)classifier/kernel expects shape \(32, 2\), got \(32, 3\).*id2label/num_labels name 2 labels"),
    ],
)
def test_bad_hf_configs_are_named_at_conversion(tmp_path, tiny_dir, change, message):
    with pytest.raises(ValueError, match=message):
        convert_hf_checkpoint(_with_config(tmp_path, tiny_dir, "bad", **change))


def test_stored_config_is_checked_on_load(tmp_path, tiny_dir):
    out = tmp_path / "ckpt"
    convert_hf_checkpoint(tiny_dir, out)
    meta = json.loads((out / "samp_jax.json").read_text())
    (out / "samp_jax.json").write_text(json.dumps({**meta, "encoder": {**meta["encoder"], "pad_token_id": 30522}}))
    with pytest.raises(ValueError, match=r"pad_token_id=30522 is outside \[0, vocab_size=30522\)"):
        samp_jax.load(out)
