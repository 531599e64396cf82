"""Our quantized model and calibrators against NVIDIA ModelOpt, the maintained reference."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from convert import convert_hf_checkpoint
from convert.amax_import import import_amax
from samp_jax.model import SampModel
from tests.conftest import make_hf_model

torch = pytest.importorskip("torch")
mtq = pytest.importorskip("modelopt.torch.quantization")


def _sentences(real_sentences, n):
    return (real_sentences * (n // len(real_sentences) + 1))[:n]


@pytest.fixture(scope="module")
def modelopt_int8(tmp_path_factory, minilm_dir, real_sentences):
    """A tiny BertForSequenceClassification calibrated by ModelOpt INT8 (max) on real sentences.

    ModelOpt's default INT8 config quantizes every Linear's input (per tensor) and
    weight (per output channel). We also enable its Q/K/V BMM quantizers, switch
    off the quantizers samp-jax does not model (LayerNorm inputs, pooler,
    classifier), and fake-quantize each residual with the quantizer of the GEMM
    that reads the same tensor: that is SAMP's Fully-Quant data flow (8-bit
    tensors between fused kernels), expressed with ModelOpt's own quantizers.
    """
    import transformers

    folder = tmp_path_factory.mktemp("modelopt_bert")
    make_hf_model(folder, "BertForSequenceClassification", tokenizer_from=minilm_dir, seed=7)
    hf = transformers.BertForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
    float_model = transformers.BertForSequenceClassification.from_pretrained(folder).eval()
    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    calib = tok(_sentences(real_sentences, 24), padding=True, return_tensors="pt")
    evalb = tok(list(reversed(real_sentences)), padding=True, return_tensors="pt")

    cfg = copy.deepcopy(mtq.INT8_DEFAULT_CFG)
    cfg["quant_cfg"] = list(cfg["quant_cfg"]) + [
        {"quantizer_name": "*[qkv]_bmm_quantizer", "cfg": {"num_bits": 8, "axis": None}},
        {"quantizer_name": "*LayerNorm*", "enable": False},
        {"quantizer_name": "*pooler*", "enable": False},
        {"quantizer_name": "*classifier*", "enable": False},
    ]
    q = mtq.quantize(hf, cfg, lambda m: m(**calib))
    for layer in q.bert.encoder.layer:
        layer.attention.output.register_forward_pre_hook(
            lambda mod, args, qz=layer.attention.self.query.input_quantizer: (args[0], qz(args[1])))
        layer.output.register_forward_pre_hook(
            lambda mod, args, qz=layer.intermediate.dense.input_quantizer: (args[0], qz(args[1])))
    with torch.no_grad():
        ref = q(**evalb).logits.numpy()
        fp = float_model(**evalb).logits.numpy()
    amax = {k: v for k, v in q.state_dict().items() if k.endswith("._amax")}
    inputs = tuple(evalb[k].numpy() for k in ("input_ids", "attention_mask", "token_type_ids"))
    return folder, amax, inputs, ref, fp


def test_full_int8_with_imported_scales_matches_modelopt_fake_quant(modelopt_int8):
    folder, amax, inputs, ref, fp = modelopt_int8
    ckpt = convert_hf_checkpoint(folder)
    ckpt.scales, ignored = import_amax(amax, ckpt.config)
    assert ignored == []
    ours = np.asarray(SampModel(ckpt, "full_int8,probs:float,dtype:fp32")(*inputs))
    quant_effect = np.abs(ref - fp).max()
    assert quant_effect > 1e-3  # the comparison is meaningful: quantization moves the logits
    # Both sides use the same 8-bit grid (same amax, same round-half-even, same
    # clipping); ours accumulates exactly in int32, ModelOpt in float32 on the
    # dequantized values. What remains is float32 summation order (~1e-7
    # relative to the logits) and, rarely, a value on a rounding tie landing on
    # the neighbouring code: 1e-5 is 1% of the quantization effect.
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert np.abs(ours - ref).max() < 0.01 * quant_effect


def test_pytorch_quantization_layout_imports_the_same(modelopt_int8):
    """pytorch-quantization names `_input_quantizer` / `matmul_q_input_quantizer` (the PyPI
    package is a placeholder, so its layout is written from ModelOpt's values)."""
    folder, amax, *_ = modelopt_int8
    legacy = {}
    for k, v in amax.items():
        k = k.replace(".input_quantizer.", "._input_quantizer.").replace(".weight_quantizer.", "._weight_quantizer.")
        for a, b in (("q_bmm", "matmul_q_input"), ("k_bmm", "matmul_k_input"), ("v_bmm", "matmul_v_input")):
            k = k.replace(f".{a}_quantizer.", f".{b}_quantizer.")
        legacy[k] = v
    config = convert_hf_checkpoint(folder).config
    modern, _ = import_amax(amax, config)
    old, _ = import_amax(legacy, config)
    assert old.method == "imported:pytorch-quantization" and modern.method == "imported:modelopt"
    assert old.activations == modern.activations
    assert old.weights.keys() == modern.weights.keys()
    for k in old.weights:
        np.testing.assert_array_equal(old.weights[k], modern.weights[k])


class TestCalibratorsMatchModelOpt:
    """Each calibrator on the same tensors as ModelOpt's (max, histogram percentile/MSE/entropy)."""

    @pytest.fixture(scope="class")
    def batches(self):
        rng = np.random.default_rng(0)
        # heavy-tailed activations; later batches widen the histogram range
        return [rng.standard_t(4, size=(8, 64, 96)).astype(np.float32) * s for s in (1.0, 1.7, 0.8)]

    @pytest.fixture(scope="class")
    def collected(self, batches):
        from modelopt.torch.quantization.calib import HistogramCalibrator as MOHist

        from samp_jax.calibration.calibrators import HistogramCalibrator

        theirs, ours = MOHist(num_bits=8, axis=None, unsigned=False), HistogramCalibrator()
        for b in batches:
            theirs.collect(torch.tensor(b))
            ours.collect(b)
        return theirs, ours

    def test_histogram_is_identical(self, collected):
        theirs, ours = collected
        np.testing.assert_array_equal(theirs._calib_hist.int().numpy(), ours.hist.astype(int))
        np.testing.assert_allclose(theirs._calib_bin_edges.numpy(), ours.edges, rtol=1e-6)

    def test_max(self, batches):
        from modelopt.torch.quantization.calib import MaxCalibrator as MOMax

        from samp_jax.calibration.calibrators import MaxCalibrator

        theirs, ours = MOMax(num_bits=8, axis=None, unsigned=False), MaxCalibrator()
        for b in batches:
            theirs.collect(torch.tensor(b))
            ours.collect(b)
        assert ours.compute_amax() == pytest.approx(float(theirs.compute_amax()), rel=1e-7)

    @pytest.mark.parametrize("method, kwargs", [
        ("percentile", dict(percentile=99.9)), ("percentile", dict(percentile=99.99)),
        ("percentile", dict(percentile=99.999)), ("entropy", {}),
    ])
    def test_histogram_methods(self, collected, method, kwargs):
        theirs, ours = collected
        # Same histogram, same rule: equal up to float32 vs float64 arithmetic on one edge.
        assert ours.compute_amax(method, **kwargs) == pytest.approx(float(theirs.compute_amax(method, **kwargs)), rel=1e-6)

    def test_mse_matches_the_definition(self, collected, monkeypatch):
        """ModelOpt 0.47 passes `num_bits` into `fake_tensor_quant`'s `bias` slot; with that one
        call fixed, its MSE search and ours pick the same amax."""
        import modelopt.torch.quantization.calib.histogram as histogram
        from modelopt.torch.quantization.tensor_quant import fake_tensor_quant

        theirs, ours = collected
        monkeypatch.setattr(histogram, "fake_tensor_quant",
                            lambda x, amax, num_bits, unsigned: fake_tensor_quant(x, amax, None, num_bits, unsigned))
        assert ours.compute_amax("mse") == pytest.approx(float(theirs.compute_amax("mse")), rel=1e-6)
