"""bench/_models.py's copies for a machine the weights cannot reach: the configs-only folder holds no weights,
and the random weights drawn into it have the real model's names, shapes and dtype (fp16), not its values."""

from __future__ import annotations

import numpy as np
from safetensors.numpy import load_file

from bench._models import configs_copy, model_dir, random_weights


def test_random_weights_have_the_real_models_names_and_shapes_not_its_values(tmp_path):
    folder = configs_copy("minilm", tmp_path / "minilm")
    assert not (folder / "model.safetensors").exists()
    assert (folder / "tokenizer.json").is_file() and (folder / "1_Pooling" / "config.json").is_file()
    real = load_file(model_dir("minilm") / "model.safetensors")
    drawn = load_file(random_weights(folder, seed=0) / "model.safetensors")
    floats = {k: v for k, v in real.items() if v.dtype.kind == "f"}
    shared = set(floats) & set(drawn)
    assert {k for k in floats if "position_ids" not in k} - shared == set()  # every real weight is drawn
    assert all(drawn[k].shape == floats[k].shape and drawn[k].dtype == np.float16 for k in shared)
    word = "embeddings.word_embeddings.weight"
    assert not np.allclose(drawn[word].astype(np.float32), floats[word], atol=1e-3)
    again = load_file(random_weights(configs_copy("minilm", tmp_path / "again"), seed=0) / "model.safetensors")
    assert all(np.array_equal(again[k], drawn[k]) for k in drawn)  # one seed, one draw
