"""`smooth:` plans (samp_jax.quant.smoothing): the migration is exact in float arithmetic, calibration keeps each
LayerNorm-written point's per-channel range, the built layers dequantize their residual per channel, and on
the real MiniLM a smoothed full_int8 is closer to fp32 than the per-tensor one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from samp_jax.model import SampModel
from samp_jax.plan import Plan
from samp_jax.quant import smoothing
from samp_jax.quant.points import ACTIVATION, ATTENTION_OUTPUT, CHANNEL_POINTS, INPUT
from samp_jax.quant.scales import Scales
from tests.conftest import random_batch


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, minilm_dir):
    """A tiny random BERT calibrated with max on random ids."""
    import samp_jax
    from samp_jax.calibration import calibrate_batches
    from tests.conftest import converted_tiny

    folder = converted_tiny(tmp_path_factory, minilm_dir, "BertModel", "smooth", seed=3)
    model = samp_jax.load(folder, plan="fp32", kernels="xla")
    batches = [random_batch(400, [12, 7, 9], 16, 0, seed=s) for s in range(2)]
    scales = calibrate_batches(model, batches, progress=False)
    return model.checkpoint, scales, batches


def test_factors_follow_smoothquant_and_floor_dead_channels():
    amax, w = np.array([4.0, 1.0, 0.0]), np.array([[1.0, -0.25], [0.5, 0.5], [2.0, 0.0]])
    s = smoothing.factors(amax, w, 0.5)
    want = np.sqrt(np.array([4.0, 1.0, 4.0 * smoothing.FLOOR])) / np.sqrt(np.array([1.0, 0.5, 2.0]))
    np.testing.assert_allclose(s, want, rtol=1e-6)
    np.testing.assert_allclose(smoothing.factors(amax, w, 1.0)[:2], amax[:2], rtol=1e-6)


def test_calibration_keeps_the_per_channel_range_of_each_layernorm_written_point(tiny):
    ckpt, scales, batches = tiny
    assert sorted(scales.channels) == sorted(f"layer_{i}/{name}" for i in range(2) for name in CHANNEL_POINTS)

    model = SampModel(ckpt, plan="fp32", kernels="xla")
    peak = {}
    for ids, mask, types in batches:
        for key, value in model.observe(ids, mask, types).items():
            if key in scales.channels:
                real = np.asarray(value)[np.asarray(mask).astype(bool)]
                peak[key] = np.maximum(peak.get(key, 0), np.abs(real).max(axis=0))
    for key, want in peak.items():
        np.testing.assert_array_equal(scales.channels[key], want.astype(np.float32))
        assert scales.activations[key] == pytest.approx(float(want.max()), rel=1e-6)  # max: the channels' max


def test_the_migration_is_exact_in_float_arithmetic(tiny):
    """LayerNorm(x) / s times (s * W) is LayerNorm(x) times W, for each smoothed point and the GEMM reading it."""
    ckpt, scales, _ = tiny
    plan = Plan.parse("full_int8,smooth:0.5", 2)
    params, migrated, divisors = smoothing.migrate(ckpt.params, ckpt.config, plan, scales)
    enc, was = params["encoder"], ckpt.params["encoder"]
    rng = np.random.default_rng(0)
    for i in range(2):
        for point, ln, gemm in ((INPUT, "embeddings/layer_norm" if i == 0 else f"layer_{i - 1}/ffn/layer_norm",
                                 f"layer_{i}/attention/qkv"),
                                (ATTENTION_OUTPUT, f"layer_{i}/attention/layer_norm", f"layer_{i}/ffn/intermediate")):
            s = divisors[point.key(i)]
            assert s.shape == (32,) and np.all(s > 0)
            norm = rng.standard_normal((5, 32))

            def ln_out(tree, ln=ln, norm=norm):
                p = tree
                for k in ln.split("/"):
                    p = p[k]
                return norm * np.asarray(p["scale"], np.float64) + np.asarray(p["bias"], np.float64)

            def kernel(tree, gemm=gemm):
                p = tree
                for k in gemm.split("/"):
                    p = p[k]
                return np.asarray(p["kernel"], np.float64)

            np.testing.assert_allclose(ln_out(enc) * s, ln_out(was), rtol=1e-5, atol=1e-6)  # the LayerNorm writes x / s
            np.testing.assert_allclose(ln_out(enc) @ kernel(enc), ln_out(was) @ kernel(was), rtol=1e-5, atol=1e-5)
            assert migrated.activations[point.key(i)] == pytest.approx(float(np.max(scales.channels[point.key(i)] / s)),
                                                                      rel=1e-6)
        # the activation: written by ffn/intermediate with per-column output scales, read by ffn/output
        s = divisors[ACTIVATION.key(i)]
        act = rng.standard_normal((5, 64))
        out_now, out_was = (np.asarray(t[f"layer_{i}"]["ffn"]["output"]["kernel"], np.float64) for t in (enc, was))
        np.testing.assert_allclose((act / s) @ out_now, act @ out_was, rtol=1e-5, atol=1e-5)
    assert migrated.activations[INPUT.key(0)] != scales.activations[INPUT.key(0)]


def test_built_layers_dequantize_their_residual_per_channel(tiny):

    ckpt, scales, batches = tiny
    ckpt = dataclasses.replace(ckpt, scales=scales)
    model = SampModel(ckpt, plan="full_int8:1,smooth:0.5", kernels="xla")
    enc = model._params["encoder"]  # noqa: SLF001  (what the modules read)
    assert "residual_scale" not in enc["layer_0"]["attention"]
    for module in ("attention", "ffn"):
        assert np.asarray(enc["layer_1"][module]["residual_scale"]).shape == (32,)
    inv_out = np.asarray(enc["layer_1"]["ffn"]["intermediate"]["packed"].vectors)[-1]  # 1 / output scale per column
    assert inv_out.shape == (64,) and np.unique(inv_out).size > 1
    plain = SampModel(ckpt, plan="full_int8:1", kernels="xla")
    ids, mask, types = batches[0]
    out, ref = np.asarray(model(ids, mask, types)), np.asarray(plain(ids, mask, types))
    assert np.all(np.isfinite(out)) and not np.array_equal(out, ref)


def test_what_a_smooth_plan_lacks_is_named(tiny, tmp_path_factory, minilm_dir):

    ckpt, scales, _ = tiny
    bare = dataclasses.replace(ckpt, scales=Scales(scales.activations, method="imported:modelopt"))
    with pytest.raises(ValueError, match=r"per-channel activation ranges.*layer_0/input"):
        SampModel(bare, plan="full_int8,smooth:0.5", kernels="xla")
    with pytest.raises(ValueError, match=r"smooth:2 must be a migration strength alpha in \[0, 1\]"):
        Plan.parse("full_int8,smooth:2", 2)
    with pytest.raises(ValueError, match="has none"):
        Plan.parse("ffn_int8,smooth:0.5", 2)
    with pytest.raises(ValueError, match=r"per-channel amax for .layer_0/attention/probs."):
        Scales(scales.activations, channels={"layer_0/attention/probs": np.ones(32)})
    with pytest.raises(ValueError, match=r"channel 1 = -1"):
        Scales(scales.activations, channels={"layer_0/input": np.array([1.0, -1.0])})


def test_scales_keep_their_channels_through_the_file(tiny, tmp_path):
    _, scales, _ = tiny
    scales.save(tmp_path / "scales.safetensors")
    back = Scales.load(tmp_path / "scales.safetensors")
    assert sorted(back.channels) == sorted(scales.channels)
    assert all(np.array_equal(back.channels[k], v) for k, v in scales.channels.items())


def test_plans_without_smooth_read_and_write_as_before():
    plan = Plan.parse("full_int8:0-1", 2)
    assert "smooth" not in plan.to_dict() and str(plan) == "full_int8"
    smoothed = Plan.parse("full_int8, smooth:0.50", 2)
    assert str(smoothed) == "full_int8,smooth:0.5" and smoothed.to_dict()["smooth"] == "0.5"
    assert Plan.parse(str(smoothed), 2) == smoothed == Plan.from_dict(smoothed.to_dict())
    assert [smoothed.smooths(i) for i in range(2)] == [True, True]
    assert not Plan.parse("full_int8:0,fp16:1,smooth:1", 2).smooths(1)


def test_smoothing_brings_the_real_minilm_closer_to_fp32(minilm_dir, real_sentences):
    """On all-MiniLM-L6-v2 (max calibration on 12 real sentences), full_int8 with smooth:0.75 gives embeddings
    nearer the fp32 ones than per-tensor full_int8 does."""
    import samp_jax
    from samp_jax.calibration import calibrate

    fp32 = samp_jax.load(minilm_dir, plan="fp32", kernels="xla")
    ckpt = dataclasses.replace(fp32.checkpoint, scales=calibrate(fp32, real_sentences, progress=False))
    ref = SampModel(ckpt, plan="fp32", kernels="xla").embed(real_sentences)
    err = {}
    for plan in ("full_int8", "full_int8,smooth:0.75"):
        got = SampModel(ckpt, plan=plan, kernels="xla").embed(real_sentences)
        err[plan] = float(np.mean(1 - np.sum(got * ref, axis=1)))
    assert err["full_int8,smooth:0.75"] < 0.5 * err["full_int8"], err


@pytest.mark.parametrize("arch", ["DebertaV2Model", "ModernBertModel"])
def test_families_whose_dataflow_cannot_take_it_refuse_it(tmp_path_factory, minilm_dir, arch):
    from samp_jax.checkpoint import load_checkpoint
    from tests.conftest import converted_tiny

    config = load_checkpoint(converted_tiny(tmp_path_factory, minilm_dir, arch, f"refuse_{arch}", seed=2)).config
    plan = Plan.uniform("full_int8", config.num_layers, smooth="0.5")
    with pytest.raises(ValueError, match=f"smooth: is not supported for model_type {config.model_type!r}"):
        smoothing.check(plan, config, None)


def test_electras_projection_writes_layer_0s_smoothed_input(tmp_path_factory, minilm_dir):
    """ELECTRA's layer-0 codes come from the embedding projection, not a LayerNorm: its columns and bias take
    the divisors."""
    from samp_jax.calibration import calibrate_batches
    from samp_jax.checkpoint import load_checkpoint
    from tests.conftest import converted_tiny

    ckpt = load_checkpoint(converted_tiny(tmp_path_factory, minilm_dir, "ElectraModel", "smooth_electra", seed=4))
    assert ckpt.config.has_embedding_projection
    scales = calibrate_batches(SampModel(ckpt, "fp32", kernels="xla"), [random_batch(400, [9, 5], 12, 0, seed=1)],
                               progress=False)
    params, _, divisors = smoothing.migrate(ckpt.params, ckpt.config, Plan.parse("full_int8,smooth:1", 2), scales)
    s = divisors[INPUT.key(0)]
    now, was = params["encoder"]["embeddings"]["project"], ckpt.params["encoder"]["embeddings"]["project"]
    np.testing.assert_allclose(np.asarray(now["kernel"]) * s, np.asarray(was["kernel"]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(now["bias"]) * s, np.asarray(was["bias"]), rtol=1e-6, atol=1e-7)
    ids, mask, types = random_batch(400, [9, 5], 12, 0, seed=2)
    out = np.asarray(SampModel(dataclasses.replace(ckpt, scales=scales), "full_int8,smooth:1", kernels="xla")(
        ids, mask, types))
    assert np.all(np.isfinite(out))
