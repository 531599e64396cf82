"""The encoder on its kernel path (Pallas kernels, interpreted here) against its own plain-XLA path."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

import pallas_kernels as ops
from samp_jax.calibration import calibrate_batches
from samp_jax.model import SampModel

from .conftest import count_kernel_calls, kernel_sized_bert, random_batch


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    ck = kernel_sized_bert(tmp_path_factory.mktemp("kernel_bert"), seed=0)
    batches = [random_batch(30000, [32, 20], 32, 0, seed=s) for s in range(2)]
    scales = calibrate_batches(SampModel(ck, "fp32", kernels="xla"), batches, progress=False)
    return dataclasses.replace(ck, scales=scales)


@pytest.mark.parametrize("plan, used", [
    ("fp16", {"triton attention", "mosaic float gemm"}),
    ("ffn_int8", {"triton attention", "mosaic gemm", "mosaic float gemm"}),
    ("full_int8", {"triton 8-bit attention", "mosaic gemm"}),
])
def test_kernel_path_matches_xla_path(ckpt, monkeypatch, plan, used):
    calls = count_kernel_calls(monkeypatch)
    ids, mask, types = random_batch(30000, [32, 11], 32, 0, seed=5)
    fp32 = np.asarray(SampModel(ckpt, "fp32", kernels="xla").hidden_states(ids, mask, types), np.float64)
    xla = np.asarray(SampModel(ckpt, plan, kernels="xla").hidden_states(ids, mask, types), np.float64)
    with ops.interpret_kernels():
        ours = np.asarray(SampModel(ckpt, plan, kernels="auto").hidden_states(ids, mask, types), np.float64)
    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))
    # the kernels were called (dispatch falls back to XLA when a kernel declines an input)
    assert set(calls) == used, calls
    # differences between two correct paths: float32 sums in another order, and for 8-bit plans a
    # requantized code at a rounding tie that moves one step; both well under the plan's own error. The
    # requantizing FFN1 epilogue's GELU (activations.gelu_scaled, within HALF_GELU_ERROR of the erf) moves codes
    # within that of a tie: full_int8 measures 0.20 of its error; a skipped quantization ~1.0
    quant_err = rel(xla, fp32)
    assert rel(ours, xla) < max(0.3 * quant_err, 2e-3), (rel(ours, xla), quant_err)
    jax.clear_caches()


@pytest.mark.parametrize("plan", ["full_int8", "ffn_fp8", "ffn_int8:0,full_int8:1", "fp16:0,full_fp8:1"])
def test_no_quantize_op_between_kernels(ckpt, monkeypatch, plan):
    """8-bit activations are written by the kernel before (embedding, LayerNorm, GEMM epilogue, attention),
    never by a separate quantize op; a float path through the same layers does call it."""
    import samp_jax.embeddings as embeddings
    import samp_jax.encoder as encoder

    calls = []

    def counted(*a, **k):
        calls.append(a[0].shape)
        return quantize_values(*a, **k)

    quantize_values = encoder.quantize_values
    # every module of the encoder that can write codes with a separate op
    for module in (encoder, embeddings):
        monkeypatch.setattr(module, "quantize_values", counted)
    ids, mask, types = random_batch(30000, [32, 11], 32, 0, seed=5)
    SampModel(ckpt, plan, kernels="xla").hidden_states(ids, mask, types)
    assert calls == [], f"{plan}: separate quantize ops on {calls}"
    SampModel(ckpt, "fp16,embedding:int8", kernels="xla").hidden_states(ids, mask, types)
    assert calls, "the counter saw no quantize op where one is expected (the embedding's simulated quantization)"


def test_each_distinct_kernel_launch_is_traced_once(ckpt, monkeypatch):
    """Both layers call the same kernels at the same shapes: each distinct launch is traced (and lowered) once
    per executable, not once per layer (pallas_kernels/_launch.py: on the H100 this is most of a compile)."""
    import importlib

    gemm_launch, triton_rows, flash_program = map(importlib.import_module, (
        "pallas_kernels.gemm.launch", "pallas_kernels.triton_rows", "pallas_kernels.flash.program"))
    traced: dict[str, int] = {}
    for module, name in ((gemm_launch, "_gemm_call"), (triton_rows, "_row_call"), (flash_program, "_attention_call")):
        launcher = getattr(module, name)

        def counted(*a, _fn=launcher, _name=name, **k):
            traced[_name] = traced.get(_name, 0) + 1
            return _fn(*a, **k)

        monkeypatch.setattr(module, name, counted)  # a new function: nothing is cached for it yet
    model = SampModel(ckpt, "full_int8", kernels="auto")
    assert model.config.num_layers == 2
    ids = jax.ShapeDtypeStruct((2, 32), np.int32)
    with ops.interpret_kernels():
        jax.jit(lambda p, i, m, t: model._forward("hidden", p, i, m, t)).lower(model._params, ids, ids, ids)
    # QKV, output, FFN1 and FFN2 GEMMs; one attention; row kernels: the embedding, the two residual LayerNorms
    # that write codes (the H100's tile choice splits the attention-out GEMM's K = 256 in two and FFN2's
    # K = 512 in four, so they sum 2 and 4 partial products), and the last one, which writes floats.
    # Traced per layer, these would be 8, 2 and 5.
    assert traced == {"_gemm_call": 4, "_attention_call": 1, "_row_call": 4}, traced
