"""The encoder on its kernel path (Pallas kernels, interpreted here) against its own plain-XLA path."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

import pallas_kernels as ops
from convert import convert_hf_checkpoint
from pallas_kernels.attention import api as attention_api
from pallas_kernels.quantized_attention import api as quantized_attention_api
from pallas_kernels.quantized_matmul import api as quantized_matmul_api
from samp_jax.calibration import calibrate_batches
from samp_jax.model import SampModel

from .conftest import random_batch


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    import torch
    import transformers

    torch.manual_seed(0)
    # head dim 64 and widths that fill the kernels' tiles, so no op falls back to XLA
    cfg = transformers.BertConfig(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512)
    folder = tmp_path_factory.mktemp("kernel_bert")
    transformers.BertModel(cfg).eval().save_pretrained(folder)
    ck = convert_hf_checkpoint(folder)
    batches = [random_batch(30000, [32, 20], 32, 0, seed=s) for s in range(2)]
    scales = calibrate_batches(SampModel(ck, "fp32", kernels="xla"), batches, progress=False)
    return dataclasses.replace(ck, scales=scales)


def _counting(monkeypatch, registry: dict, name: str, label: str, calls: list) -> None:
    fn = registry[name]

    def counted(*a, **k):
        out = fn(*a, **k)  # a kernel that declines raises before it is counted
        calls.append(label)
        return out

    monkeypatch.setitem(registry, name, counted)


@pytest.mark.parametrize("plan, used", [
    ("fp16", {"triton attention"}),
    ("ffn_int8", {"triton attention", "mosaic gemm"}),
    ("full_int8", {"triton 8-bit attention", "mosaic gemm"}),
])
def test_kernel_path_matches_xla_path(ckpt, monkeypatch, plan, used):
    calls: list = []
    _counting(monkeypatch, attention_api._PACKED_REGISTRY, "triton", "triton attention", calls)
    _counting(monkeypatch, quantized_attention_api._PACKED_REGISTRY, "triton", "triton 8-bit attention", calls)
    _counting(monkeypatch, quantized_matmul_api._PACKED_REGISTRY, "mosaic", "mosaic gemm", calls)
    ids, mask, types = random_batch(30000, [32, 11], 32, 0, seed=5)
    fp32 = np.asarray(SampModel(ckpt, "fp32", kernels="xla").hidden_states(ids, mask, types), np.float64)
    xla = np.asarray(SampModel(ckpt, plan, kernels="xla").hidden_states(ids, mask, types), np.float64)
    with ops.interpret_kernels():
        ours = np.asarray(SampModel(ckpt, plan, kernels="auto").hidden_states(ids, mask, types), np.float64)
    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))
    # the kernels were called (dispatch falls back to XLA when a kernel declines an input)
    assert set(calls) == used, calls
    # differences between two correct paths: float32 sums in another order, and for 8-bit plans a
    # requantized code at a rounding tie that moves one step; both well under the plan's own error
    quant_err = rel(xla, fp32)
    assert rel(ours, xla) < max(0.1 * quant_err, 2e-3), (rel(ours, xla), quant_err)
    jax.clear_caches()
