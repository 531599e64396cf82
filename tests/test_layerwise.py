"""`LayerwiseModel` (compiled per layer mode, for sweeps) computes what the served executable computes."""

from __future__ import annotations

import numpy as np
import pytest

from convert import convert_hf_checkpoint
from samp_jax.calibration import calibrate_batches
from samp_jax.layerwise import LayerwiseModel, _layer_fn
from samp_jax.model import SampModel
from tests.conftest import make_hf_model, random_batch

PLANS = ["fp16", "full_int8:0,fp16:1", "ffn_fp8:0,full_fp8:1", "full_int8", "full_int8,smooth:0.5"]


@pytest.fixture(scope="module", params=["BertForSequenceClassification", "MPNetForTokenClassification"])
def calibrated(request, tmp_path_factory):
    import dataclasses

    root = tmp_path_factory.mktemp("layerwise")
    make_hf_model(root, request.param, seed=5)
    ckpt = convert_hf_checkpoint(root)
    vocab = ckpt.config.vocab_size
    ids, mask, types = random_batch(vocab, [16, 11, 7, 3], 16, ckpt.config.pad_token_id, seed=1)
    batch = (ids, mask, types if ckpt.config.has_token_types else np.zeros_like(types))
    scales = calibrate_batches(SampModel(ckpt, "fp32", kernels="xla"), [batch], progress=False)
    return dataclasses.replace(ckpt, scales=scales), batch


@pytest.mark.parametrize("plan", PLANS)
def test_layerwise_matches_the_compiled_plan(calibrated, plan):
    ckpt, (ids, mask, types) = calibrated
    whole = np.asarray(SampModel(ckpt, plan, kernels="xla")(ids, mask, types))
    piecewise = np.asarray(LayerwiseModel(ckpt, plan, kernels="xla")(ids, mask, types))
    assert piecewise.shape == whole.shape
    # Both are fp16 pipelines: they differ by at most the rounding of a hidden state at a layer boundary
    # (measured: <= 3e-5 of the largest logit; two of these plans differ from each other by 7e-3 to 4e-2).
    scale = np.abs(whole).max()
    np.testing.assert_allclose(piecewise, whole, atol=1e-3 * scale, rtol=0)
    agree = np.mean(piecewise.argmax(-1) == whole.argmax(-1))
    assert agree >= 0.95, f"{plan}: only {agree:.0%} of predictions agree"


def test_one_compiled_function_per_layer_mode_and_next_input(calibrated):
    ckpt, (ids, mask, types) = calibrated
    _layer_fn.cache_clear()
    for plan in ("full_int8:0,fp16:1", "fp16:0,full_int8:1", "full_int8", "fp16"):
        LayerwiseModel(ckpt, plan, kernels="xla")(ids, mask, types)
    # (fp16 | full_int8) x (next layer reads float | int8 codes), whatever the plan
    assert _layer_fn.cache_info().currsize == 4
    LayerwiseModel(ckpt, "full_int8:0,fp16:1", kernels="xla")(ids, mask, types)
    assert _layer_fn.cache_info().currsize == 4


def test_predict_on_texts_runs_padded_where_packing_would_pay(tmp_path, minilm_dir, real_sentences):
    """`predict` packs mixed-length batches where that pays; a LayerwiseModel must pad them instead (it
    measures plans on padded batches), and answer as the served model does."""
    make_hf_model(tmp_path, "BertForSequenceClassification", tokenizer_from=minilm_dir, seed=2)
    ckpt = convert_hf_checkpoint(tmp_path)
    texts = real_sentences[:8] + [" ".join(real_sentences[:4])]  # one long text: packing would pay
    served = SampModel(ckpt, "fp16", kernels="xla")
    lengths = [len(e.ids) for e in served.tokenizer.encode(texts)]
    assert served.packs_better(lengths)
    layerwise = LayerwiseModel(ckpt, "fp16", kernels="xla")
    assert not layerwise.packs_better(lengths)
    got, want = layerwise.predict(texts, batch_size=16), served.predict(texts, batch_size=16, packing=False)
    assert [g["label"] for g in got] == [w["label"] for w in want]
    np.testing.assert_allclose([g["score"] for g in got], [w["score"] for w in want], atol=1e-3)
