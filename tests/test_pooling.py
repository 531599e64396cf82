"""Sentence-transformers pooling: read at conversion, stored in the checkpoint, applied by embed/predict/similarity.

The reference is sentence-transformers itself: `SentenceTransformer(folder).encode(...)` on tiny random BERT
models saved as sentence-transformers folders, one per pooling mode, with and without a Normalize module.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

import samp_jax
from convert import convert_hf_checkpoint
from samp_jax.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from samp_jax.pooling import DEFAULT_POOLING, POOLING_MODES, Pooling
from tests.conftest import make_hf_model

st = pytest.importorskip("sentence_transformers")

# float32 on both sides; the encoders differ in summation order only
RTOL, ATOL = 1e-4, 2e-5


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, minilm_dir) -> Path:
    folder = tmp_path_factory.mktemp("tiny_bert")
    make_hf_model(folder, "BertModel", tokenizer_from=minilm_dir, seed=3)
    return folder


def save_st_folder(hf_dir: Path, out: Path, mode: str | tuple[str, ...], normalize: bool, dense: bool = False) -> Path:
    """`hf_dir`'s encoder as a sentence-transformers folder: Transformer -> Pooling(mode) [-> Dense] [-> Normalize]."""
    from sentence_transformers import SentenceTransformer, models

    transformer = models.Transformer(str(hf_dir))
    dim = transformer.get_embedding_dimension()
    modules = [transformer, models.Pooling(dim, pooling_mode=mode)]
    if dense:
        modules.append(models.Dense(dim, 8))
    if normalize:
        modules.append(models.Normalize())
    SentenceTransformer(modules=modules, device="cpu").save(str(out))
    return out


def st_encode(folder: Path, texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu").encode(texts, convert_to_numpy=True, batch_size=5)


@pytest.mark.parametrize("normalize", [True, False], ids=["normalize", "raw"])
@pytest.mark.parametrize("mode", POOLING_MODES)
def test_embeddings_equal_sentence_transformers(tiny_bert, tmp_path, real_sentences, mode, normalize):
    folder = save_st_folder(tiny_bert, tmp_path / "st", mode, normalize)
    model = samp_jax.load(folder)
    assert model.pooling == Pooling(mode, normalize=normalize)
    want = st_encode(folder, real_sentences)
    got = model.embed(real_sentences, batch_size=5)  # several batches, each padded to its bucket
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(model.predict(real_sentences), want, rtol=RTOL, atol=ATOL)
    # pair similarity: sentence-transformers' cosine of the two embeddings, normalized or not
    pairs = list(zip(real_sentences[:6], real_sentences[6:]))
    cos = np.sum(want[:6] * want[6:], -1) / (np.linalg.norm(want[:6], axis=-1) * np.linalg.norm(want[6:], axis=-1))
    np.testing.assert_allclose(model.similarity(pairs), cos, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(model.predict(pairs), cos, rtol=RTOL, atol=ATOL)


def test_pooling_survives_save_and_load(tiny_bert, tmp_path, real_sentences):
    folder = save_st_folder(tiny_bert, tmp_path / "st", "cls", normalize=False)
    save_checkpoint(convert_hf_checkpoint(folder), tmp_path / "ckpt")
    meta = json.loads((tmp_path / "ckpt" / CHECKPOINT_FILE).read_text())
    assert meta["pooling"] == {"mode": "cls", "normalize": False, "include_prompt": True}
    model = samp_jax.load(tmp_path / "ckpt")
    assert model.pooling == Pooling("cls", normalize=False)
    np.testing.assert_allclose(model.embed(real_sentences[:4]), st_encode(folder, real_sentences[:4]),
                               rtol=RTOL, atol=ATOL)


def test_legacy_pooling_config(tiny_bert, tmp_path, real_sentences):
    """sentence-transformers before 6 wrote `pooling_mode_*_tokens` flags and `word_embedding_dimension`."""
    folder = save_st_folder(tiny_bert, tmp_path / "st", "max", normalize=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": True, "pooling_mode_lasttoken": False}))
    shutil.rmtree(folder / "2_Normalize")  # older folders have no Normalize config either
    modules = json.loads((folder / "modules.json").read_text())
    modules[2]["type"] = "sentence_transformers.models.Normalize"
    (folder / "modules.json").write_text(json.dumps(modules))
    model = samp_jax.load(folder)
    assert model.pooling == Pooling("weightedmean", normalize=True)
    np.testing.assert_allclose(model.embed(real_sentences), st_encode(folder, real_sentences), rtol=RTOL, atol=ATOL)


def test_real_minilm_matches_sentence_transformers(minilm_dir, real_sentences):
    """The embedded all-MiniLM-L6-v2 (legacy config, mean + Normalize) gives what sentence-transformers gives."""
    model = samp_jax.load(minilm_dir)
    assert model.pooling == DEFAULT_POOLING == Pooling("mean", normalize=True)
    got = model.embed(real_sentences)
    want = st_encode(minilm_dir, real_sentences)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_no_pooling_configuration_keeps_mean_normalize_and_says_so_once(tiny_bert, tmp_path, real_sentences, caplog):
    with caplog.at_level(logging.WARNING):
        model = samp_jax.load(tiny_bert)  # a plain Hugging Face folder: no modules.json
        model.embed(real_sentences[:3])
        model.embed(real_sentences[3:6])
    said = [r for r in caplog.records if "no sentence-transformers pooling configuration" in r.getMessage()]
    assert len(said) == 1 and "mean-pooled and L2-normalized" in said[0].getMessage()
    assert model.pooling == DEFAULT_POOLING
    # the same numbers as an explicit mean + Normalize folder
    folder = save_st_folder(tiny_bert, tmp_path / "st", "mean", normalize=True)
    np.testing.assert_allclose(model.embed(real_sentences), st_encode(folder, real_sentences), rtol=RTOL, atol=ATOL)


def test_checkpoint_without_pooling_record_is_mean_normalized(tiny_bert, tmp_path, real_sentences):
    """Checkpoints converted before pooling was stored load as they did: mean pooling, L2-normalized."""
    st_folder = save_st_folder(tiny_bert, tmp_path / "st", "cls", normalize=False)
    save_checkpoint(convert_hf_checkpoint(st_folder), tmp_path / "ckpt")
    file = tmp_path / "ckpt" / CHECKPOINT_FILE
    meta = json.loads(file.read_text())
    del meta["pooling"]
    file.write_text(json.dumps(meta))
    assert load_checkpoint(tmp_path / "ckpt").pooling is None
    model = samp_jax.load(tmp_path / "ckpt")
    assert model.pooling == DEFAULT_POOLING
    mean_folder = save_st_folder(tiny_bert, tmp_path / "mean", "mean", normalize=True)
    np.testing.assert_allclose(model.embed(real_sentences[:4]), st_encode(mean_folder, real_sentences[:4]),
                               rtol=RTOL, atol=ATOL)


def test_dense_module_is_refused_by_name(tiny_bert, tmp_path):
    folder = save_st_folder(tiny_bert, tmp_path / "st", "mean", normalize=True, dense=True)
    with pytest.raises(ValueError, match=r"modules\.json: module 2 type='sentence_transformers\..*Dense'.*Dense projection"):
        convert_hf_checkpoint(folder)


def test_concatenated_poolings_are_refused(tiny_bert, tmp_path):
    folder = save_st_folder(tiny_bert, tmp_path / "st", ("cls", "mean"), normalize=False)
    with pytest.raises(ValueError, match=r"pooling_mode=\['cls', 'mean'\] concatenates several poolings"):
        convert_hf_checkpoint(folder)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True,
                                                                  "pooling_mode_max_tokens": True}))
    with pytest.raises(ValueError, match=r"pooling_mode_cls_token=true, pooling_mode_max_tokens=true"):
        convert_hf_checkpoint(folder)


@pytest.mark.parametrize("config, message", [
    ({"pooling_mode": "median"}, r"pooling_mode='median' is not one of"),
    ({"pooling_mode_cls_token": "yes"}, r"pooling_mode_cls_token='yes' must be true or false"),
    ({"pooling_mode": "cls", "embedding_dimension": 64}, r"embedding_dimension=64 differs from the encoder's hidden_size=32"),
    ({"pooling_mode": "cls", "include_prompt": 0}, r"include_prompt=0 must be true or false"),
])
def test_bad_pooling_values_are_named(tiny_bert, tmp_path, config, message):
    folder = save_st_folder(tiny_bert, tmp_path / "st", "cls", normalize=False)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        convert_hf_checkpoint(folder)


def test_bad_modules_are_named(tiny_bert, tmp_path):
    folder = save_st_folder(tiny_bert, tmp_path / "st", "cls", normalize=False)
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps(modules[:1]))
    with pytest.raises(ValueError, match=r"modules \['Transformer'\] are not Transformer -> Pooling"):
        convert_hf_checkpoint(folder)
    (folder / "modules.json").write_text(json.dumps(modules + [{"path": "", "type": "my_package.Whitening"}]))
    with pytest.raises(ValueError, match=r"module 2 type='my_package.Whitening'.*a module samp-jax does not run"):
        convert_hf_checkpoint(folder)
    (folder / "modules.json").write_text("[{")
    with pytest.raises(ValueError, match=r"corrupt JSON in .*modules\.json"):
        convert_hf_checkpoint(folder)


def test_stored_pooling_is_validated(tiny_bert, tmp_path):
    st_folder = save_st_folder(tiny_bert, tmp_path / "st", "cls", normalize=False)
    save_checkpoint(convert_hf_checkpoint(st_folder), tmp_path / "ckpt")
    file = tmp_path / "ckpt" / CHECKPOINT_FILE
    meta = json.loads(file.read_text())
    meta["pooling"]["mode"] = "firsttoken"
    file.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"samp_jax\.json: pooling mode='firsttoken' is not one of"):
        load_checkpoint(tmp_path / "ckpt")


def test_tuner_and_server_pool_as_the_model_does(tiny_bert, tmp_path, real_sentences):
    """The layerwise tuner's `embed` (pooled, normalized) and serving's `pooled` (normalize=False) use the stored mode."""
    from samp_jax.layerwise import LayerwiseModel
    from samp_jax.serving.forwards import Forwards
    from samp_jax.serving.jobs import POOLED

    folder = save_st_folder(tiny_bert, tmp_path / "st", "lasttoken", normalize=False)
    ckpt = convert_hf_checkpoint(folder)
    model = samp_jax.load(folder)
    raw = model.embed(real_sentences[:4])
    unit = raw / np.linalg.norm(raw, axis=-1, keepdims=True)
    np.testing.assert_allclose(model.embed(real_sentences[:4], normalize=True), unit, rtol=RTOL, atol=ATOL)
    b = model.tokenizer.pad(model.tokenizer.encode(real_sentences[:4]))
    layerwise = LayerwiseModel(ckpt, "fp32", kernels="xla").compiled("embed", *b.input_ids.shape)
    np.testing.assert_allclose(np.asarray(layerwise(b.input_ids, b.attention_mask, b.token_type_ids))[:4], unit,
                               rtol=RTOL, atol=ATOL)
    pooled = Forwards({"m": model}).get("m", POOLED, *b.input_ids.shape)
    np.testing.assert_allclose(np.asarray(pooled(b.input_ids, b.attention_mask, b.token_type_ids))[:4], raw,
                               rtol=RTOL, atol=ATOL)
