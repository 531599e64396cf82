"""The table of quantization points is complete: every point a plan needs is built, observed and stored,
and the modules that build, observe, store and import scales read it rather than spelling names."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from convert import convert_hf_checkpoint
from convert.amax_import import import_amax
from samp_jax.model import SampModel
from samp_jax.plan import LayerMode, Plan
from samp_jax.quant import points
from samp_jax.quant.build import build_params
from samp_jax.quant.points import GEMMS, POINTS, gemms_for, points_for
from samp_jax.quant.scales import Scales
from tests.conftest import make_hf_model, random_batch

NUM_LAYERS = 2


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("points_bert")
    make_hf_model(folder, "BertForSequenceClassification", seed=4)
    return convert_hf_checkpoint(folder)


def _all_scales() -> Scales:
    rng = np.random.default_rng(0)
    return Scales({p.key(i): float(rng.uniform(0.5, 4)) for i in range(NUM_LAYERS) for p in POINTS})


def _leaves(tree, prefix: str = "") -> set[str]:
    """Paths of the parameter dicts' entries that are not dicts (arrays, packed weights)."""
    out = set()
    for k, v in tree.items():
        out |= _leaves(v, f"{prefix}{k}/") if isinstance(v, dict) else {f"{prefix}{k}"}
    return out


def test_the_module_docstring_is_the_table():
    assert points.describe() in points.__doc__


def test_every_gemm_reads_and_writes_points_of_its_own_modes():
    for gemm in GEMMS:
        assert set(gemm.families) <= set(gemm.input_point.families), gemm
        assert all(set(gemm.families) <= set(p.families) for p in gemm.output_points), gemm
    assert [p.name for p in points.QKV.output_points] == ["attention/q", "attention/k", "attention/v"]
    for p in POINTS:
        assert p.gemm_input is None or p.gemm_input in points.GEMM_BY_NAME
        assert p.gemm_output is None or p.gemm_output in points.GEMM_BY_NAME


@pytest.mark.parametrize("probs", ["uint8", "int8", "float"])
@pytest.mark.parametrize("mode", [m for m in LayerMode if m.quantizes_ffn])
def test_every_point_a_mode_needs_is_built(ckpt, mode, probs):
    """Each needed point's scale lands in every scale parameter the table names, each quantized GEMM is packed,
    and the built layer holds no scale the table does not name."""
    plan = Plan.uniform(mode, NUM_LAYERS, probs=probs)
    built = build_params(ckpt.params, ckpt.config, plan, _all_scales())["encoder"]
    for i in range(NUM_LAYERS):
        layer = _leaves(built[f"layer_{i}"])
        need = points_for(mode, probs)
        expected = {s for p in need for s in p.scale_params}
        if plan.input_codes(i + 1):  # the LayerNorm closing this layer writes the next one's input codes
            expected.add(points.NEXT_INPUT_SCALE)
        assert {leaf for leaf in layer if leaf.endswith("_scale")} == expected
        packed = {leaf.removesuffix("/packed") for leaf in layer if leaf.endswith("/packed")}
        assert packed == {g.name for g in gemms_for(mode)}
    assert (points.EMBEDDING_INPUT_SCALE in _leaves(built)) == (plan.embedding != "float")
    assert {p.name for p in need} == ({"attention_output", "ffn/activation"} if mode.family == "ffn" else
                                      {p.name for p in POINTS if p.probs in (None, probs)})


def test_every_needed_point_is_observed_and_stored(ckpt, tmp_path):
    """The float model sows exactly the table's points in every layer; calibrated scales hold them all and
    round-trip through the scales file under `act/<key>`, and the LayerNorm-written ones per channel under
    `channel/<key>`."""
    from safetensors import safe_open

    from samp_jax.calibration import calibrate_batches

    model = SampModel(ckpt, "fp32")
    ids, mask, types = random_batch(ckpt.config.vocab_size, [9, 16, 4], 16, ckpt.config.pad_token_id)
    seen = model.observe(ids, mask, types)
    assert set(seen) == {p.key(i) for i in range(NUM_LAYERS) for p in POINTS}
    assert seen[points.PROBS.key(0)].shape == (3, ckpt.config.num_heads, 16, 16)
    scales = calibrate_batches(model, [(ids, mask, types)], progress=False)
    assert set(scales.activations) == set(seen)
    scales.save(tmp_path / "scales.safetensors")
    with safe_open(str(tmp_path / "scales.safetensors"), framework="numpy") as f:
        assert set(f.keys()) == {f"act/{k}" for k in seen} | {
            f"channel/{p.key(i)}" for i in range(NUM_LAYERS) for p in POINTS if p.name in points.CHANNEL_POINTS}
    assert Scales.load(tmp_path / "scales.safetensors").activations == scales.activations
    for mode in LayerMode:
        for probs in ("uint8", "int8", "float"):
            assert {p.key(0) for p in points_for(mode, probs)} <= set(scales.activations)


def test_a_quantized_model_refuses_to_observe(ckpt):
    ckpt = dataclasses.replace(ckpt, scales=_all_scales())
    model = SampModel(ckpt, "ffn_int8")
    with pytest.raises(ValueError, match="observe runs a float plan, this model's is ffn_int8; use model.float32"):
        model.observe(np.ones((1, 4), np.int32))
    assert model.float32().plan.to_string() == "fp32"


def test_the_names_the_encoder_reads_come_from_the_table():
    assert points.INPUT.scale_param("attention") == "input_scale"
    assert points.ATTENTION_OUTPUT.scale_param("ffn") == "input_scale"
    assert points.ATTENTION_OUTPUT.scale_param("attention") == "output_scale"
    assert points.param_in(points.NEXT_INPUT_SCALE, "ffn") == "next_input_scale"
    assert points.param_in(points.EMBEDDING_INPUT_SCALE, "embeddings") == "output_scale"
    with pytest.raises(ValueError, match="'ffn/activation' has no scale parameter in 'ffn'"):
        points.ACTIVATION.scale_param("ffn")
    with pytest.raises(ValueError, match="parameter 'ffn/next_input_scale' belongs to 'ffn', not 'attention'"):
        points.param_in(points.NEXT_INPUT_SCALE, "attention")


def test_sown_values_outside_the_table_and_unknown_keys_are_errors():
    assert points.observed_key(("encoder", "layer_3", "attention", "q")) == "layer_3/attention/q"
    assert points.observed_key(("encoder", "layer_0", "input")) == "layer_0/input"
    with pytest.raises(ValueError, match="the value sown at encoder/layer_1/attention/scores is no quantization point"):
        points.observed_key(("encoder", "layer_1", "attention", "scores"))
    with pytest.raises(ValueError, match="'layer_1/attention/scores' names no quantization point"):
        Scales({"layer_1/attention/scores": 1.0})
    with pytest.raises(ValueError, match="'layer_\u0663/input' names no quantization point"):
        Scales({"layer_\u0663/input": 1.0})
    with pytest.raises(ValueError, match="'layer_0/attention/query' names no quantized GEMM"):
        Scales({}, {"layer_0/attention/query": np.ones(4, np.float32)})
    assert points.parse_key("layer_12/ffn/activation") == (12, points.ACTIVATION)
    assert points.parse_gemm_key("layer_2/attention/qkv") == (2, points.QKV)


def test_an_amax_import_lands_on_every_point_and_gemm(ckpt):
    """A pytorch-quantization state dict with every quantizer fills every point and every GEMM's weight amax."""
    cfg = ckpt.config
    linears = {"attention.self.query": cfg.hidden_size, "attention.self.key": cfg.hidden_size,
               "attention.self.value": cfg.hidden_size, "attention.output.dense": cfg.hidden_size,
               "intermediate.dense": cfg.intermediate_size, "output.dense": cfg.hidden_size}
    state = {}
    for i in range(NUM_LAYERS):
        for module, width in linears.items():
            state[f"bert.encoder.layer.{i}.{module}._input_quantizer._amax"] = np.float32(2.0)
            state[f"bert.encoder.layer.{i}.{module}._weight_quantizer._amax"] = np.full(width, 0.5, np.float32)
        for bmm in "qkva":
            state[f"bert.encoder.layer.{i}.attention.self.matmul_{bmm}_input_quantizer._amax"] = np.float32(3.0)
    scales, ignored = import_amax(state, cfg)
    assert ignored == []
    assert set(scales.activations) == {p.key(i) for i in range(NUM_LAYERS) for p in POINTS}
    assert set(scales.weights) == {g.key(i) for i in range(NUM_LAYERS) for g in GEMMS}
    assert all(scales.weights[g.key(0)].shape == (g.out_features(cfg),) for g in GEMMS)
