"""The model's public seams: a compiled forward pass that carries its parameters, calibration through a hook
any model can provide, and a library core that never imports the converter."""

from __future__ import annotations

import subprocess
import sys

import jax
import numpy as np
import pytest

import samp_jax
from samp_jax.calibration import Observable, calibrate, calibrate_batches
from samp_jax.compiled import CompiledForward
from samp_jax.layerwise import LayerwiseModel
from tests.conftest import REPO, make_hf_model, random_batch


@pytest.fixture(scope="module")
def model(tmp_path_factory, minilm_dir):
    folder = tmp_path_factory.mktemp("seams_bert")
    make_hf_model(folder, "BertForSequenceClassification", tokenizer_from=minilm_dir, seed=6)
    return samp_jax.load(folder)  # a Hugging Face folder, converted on the fly


@pytest.fixture(scope="module")
def batch(model):
    return random_batch(model.config.vocab_size, [32, 11], 32, model.config.pad_token_id, seed=1)


@pytest.mark.parametrize("kind", ["head", "hidden"])
def test_a_compiled_forward_equals_the_models_call_bitwise(model, batch, kind):
    ids, mask, types = batch
    forward = model.compiled(kind, *ids.shape)
    assert isinstance(forward, CompiledForward) and forward.shape == ids.shape and forward.kind == kind
    call = model if kind == "head" else model.hidden_states
    want = np.asarray(call(ids, mask, types))  # (2, 32) is a bucket shape: the same executable
    np.testing.assert_array_equal(np.asarray(forward(ids, mask, types)), want)
    # what a profiler takes: the raw executable and its argument tuple
    assert isinstance(forward.executable, jax.stages.Compiled)
    np.testing.assert_array_equal(np.asarray(forward.executable(*forward.args(ids, mask, types))), want)
    assert model.compiled(kind, *ids.shape).executable is forward.executable  # built once


def test_a_layerwise_compiled_forward_runs_its_pieces(model, batch):
    ids, mask, types = batch
    layerwise = LayerwiseModel(model.checkpoint, "fp32", kernels="xla")
    forward = layerwise.compiled("head", *ids.shape)
    np.testing.assert_array_equal(np.asarray(forward(ids, mask, types)), np.asarray(layerwise(ids, mask, types)))


def test_unknown_output_kinds_are_named(model):
    with pytest.raises(ValueError, match=r"unknown output kind 'logits'; known: \('head', 'hidden', 'embed'\)"):
        model.compiled("logits", 1, 8)


class _Observed:
    """A model seen only through calibration's hook."""

    def __init__(self, model):
        self._model = model
        self.config = model.config

    def float32(self):
        return _Observed(self._model.float32())

    def batches(self, items, **kw):
        return self._model.batches(items, **kw)

    def observe(self, input_ids, attention_mask=None, token_type_ids=None):
        return self._model.observe(input_ids, attention_mask, token_type_ids)


def test_calibration_needs_only_the_hook(model, batch, real_sentences):
    hooked = _Observed(model)
    assert isinstance(model, Observable) and isinstance(hooked, Observable)
    want = calibrate_batches(model, [batch], progress=False)
    assert calibrate_batches(hooked, [batch], progress=False).activations == want.activations
    texts = real_sentences[:6]
    assert (calibrate(hooked, texts, batch_size=4, progress=False).activations
            == calibrate(model, texts, batch_size=4, progress=False).activations)


def test_calibration_takes_a_model_not_a_path(tmp_path):
    with pytest.raises(ValueError, match=r"calibration takes a loaded model, got the path '.*ckpt': pass samp_jax.load"):
        calibrate(tmp_path / "ckpt", ["a text"])


def test_the_library_core_never_imports_the_converter():
    probe = ("import sys; import samp_jax.model, samp_jax.tune, samp_jax.calibration, samp_jax.layerwise, "
             "samp_jax.checkpoint, samp_jax.quant.build; print(sorted(m for m in sys.modules if m.split('.')[0] == "
             "'convert'))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
