"""Packed batches (several sequences to a row, `samp_jax.packing`) against the padded layout, sequence by sequence.

On the XLA path the plans' packed outputs equal the padded ones to float32 rounding (a token's row of each GEMM
and LayerNorm does not depend on its neighbours, and the keys a query may not see add exact zeros to its
softmax sums: the 16- and 8-bit plans measure bit for bit); the kernel path (interpreted here) within its own
tolerance.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pallas_kernels as ops
from convert import convert_hf_checkpoint
from samp_jax.calibration import calibrate, calibrate_batches
from samp_jax.model import SampModel
from samp_jax.packing import pack, place, segment_positions
from samp_jax.positions import position_ids_for

from .conftest import FALLBACK_SENTENCES, count_kernel_calls, kernel_sized_bert, make_hf_model, random_batch

LENGTHS = [5, 17, 3, 40, 9, 22, 12, 2, 60, 31, 7]
PLANS = ["fp32", "fp16", "full_int8", "full_fp8", "ffn_int8", "full_int8,probs:float",
         "full_int8:0,fp16:1,embedding:int8"]


def _sequences(lengths, seed=0, with_types=True):
    rng = np.random.default_rng(seed)
    ids = [[int(t) for t in rng.integers(5, 300, n)] for n in lengths]
    types = [[0] * (n // 2) + [1] * (n - n // 2) for n in lengths] if with_types else None
    return ids, types


def _padded(ids, types, pad_id):
    s = max(len(x) for x in ids)
    pid = np.full((len(ids), s), pad_id, np.int32)
    mask, ty = np.zeros_like(pid), np.zeros_like(pid)
    for i, x in enumerate(ids):
        pid[i, : len(x)], mask[i, : len(x)] = x, 1
        if types is not None:
            ty[i, : len(x)] = types[i]
    return pid, mask, ty


# ---- the layout ----------------------------------------------------------------------------------------
def test_place_first_fit_longest_first_slots_left_to_right():
    at = place([3, 2, 7, 4], width=8, per_row=2)
    # 7 opens row 0; 4 opens row 1; 3 joins it (4 + 3 <= 8); 2 fits nowhere with a free slot: row 2
    assert at.rows == 3
    assert at.row.tolist() == [1, 2, 0, 1] and at.start.tolist() == [4, 0, 0, 0] and at.slot.tolist() == [1, 0, 0, 0]


def _first_fit(lengths, width, per_row):
    """First fit, longest first, scanning every row: the plain rule `place` must follow."""
    rows, row, start = [], {}, {}
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):  # stable: ties keep their order
        r = next((j for j, (room, n) in enumerate(rows) if room >= lengths[i] and n < per_row), len(rows))
        if r == len(rows):
            rows.append((width, 0))
        row[i], start[i] = r, width - rows[r][0]
        rows[r] = (rows[r][0] - lengths[i], rows[r][1] + 1)
    return [row[i] for i in range(len(lengths))], [start[i] for i in range(len(lengths))], len(rows)


def test_place_equals_first_fit_over_every_row():
    rng = np.random.default_rng(0)
    for _ in range(300):
        width, per_row = int(rng.choice([16, 64, 128])), int(rng.integers(1, 9))
        lengths = rng.integers(1, rng.integers(2, width + 1), int(rng.integers(1, 120))).tolist()
        at = place(lengths, width, per_row)
        assert (at.row.tolist(), at.start.tolist(), at.rows) == _first_fit(lengths, width, per_row)


def test_pack_rows_segments_types_and_way_back():
    ids, types = _sequences([3, 2, 7, 4])
    b = pack(ids, types, width=8, per_row=2, rows=4)
    assert b.shape == (4, 8) and b.max_per_row == 2 and b.fill == 16 / 32
    np.testing.assert_array_equal(b.segment_ids[1], [1, 1, 1, 1, 2, 2, 2, 0])
    np.testing.assert_array_equal(b.segment_ids[3], 0)  # a padding row
    for i, x in enumerate(ids):
        np.testing.assert_array_equal(b.tokens(b.input_ids, i), x)
        np.testing.assert_array_equal(b.tokens(b.token_type_ids, i), types[i])
    per_slot = np.arange(4 * 2).reshape(4, 2)
    assert b.sequences(per_slot).tolist() == [3, 4, 0, 2]


@pytest.mark.parametrize("bad, match", [
    (dict(ids=[[1] * 9]), "sequence 0 has 9 tokens; each needs 1..width=8"),
    (dict(ids=[[1], []]), "sequence 1 has 0 tokens"),
    (dict(ids=[[1, 2]], types=[[0]]), "token types must match"),
    (dict(ids=[[1] * 8, [1] * 8], rows=1), "2 sequences need 2 rows of 8, more than rows=1"),
])
def test_pack_errors_name_the_value(bad, match):
    with pytest.raises(ValueError, match=match):
        pack(bad.pop("ids"), width=8, **bad)


@pytest.mark.parametrize("model_type, pad", [("bert", 0), ("mpnet", 1), ("roberta", 1)])
def test_positions_restart_at_each_sequence(model_type, pad):
    from types import SimpleNamespace

    cfg = SimpleNamespace(model_type=model_type, pad_token_id=pad)  # what both position functions read
    ids, _ = _sequences([4, 7, 2], seed=1)
    b = pack(ids, width=16, pad_id=pad)
    got = np.asarray(segment_positions(cfg, jnp.asarray(b.segment_ids)))
    pid, _, _ = _padded(ids, None, pad)
    want = np.asarray(position_ids_for(cfg, jnp.asarray(pid)))
    for i, x in enumerate(ids):
        np.testing.assert_array_equal(b.tokens(got, i), want[i, : len(x)])
    assert (got[b.segment_ids == 0] == pad).all()


# ---- every plan and family, XLA path ------------------------------------------------------------------
@pytest.fixture(scope="module")
def bert_ner(tmp_path_factory, minilm_dir):
    folder = tmp_path_factory.mktemp("bert_ner")
    make_hf_model(folder, "BertForTokenClassification", tokenizer_from=minilm_dir)
    ckpt = convert_hf_checkpoint(folder)
    ckpt.scales = calibrate(SampModel(ckpt, "fp32"), FALLBACK_SENTENCES, "max", progress=False)
    return ckpt


@pytest.mark.parametrize("plan", PLANS)
def test_every_plan_packed_equals_padded(bert_ner, plan):
    model = SampModel(bert_ner, plan)
    ids, types = _sequences(LENGTHS)
    b = model.pack(ids, types)
    assert b.shape == (2, 128)
    pid, mask, ty = _padded(ids, types, 0)
    want_hidden, want_logits = np.asarray(model.hidden_states(pid, mask, ty)), np.asarray(model(pid, mask, ty))
    hidden, logits = np.asarray(model.run_packed("hidden", b)), np.asarray(model.run_packed("head", b))
    d = np.concatenate([np.abs(b.tokens(hidden, i) - want_hidden[i, : len(x)]).max(-1) for i, x in enumerate(ids)])
    dl = np.concatenate([np.abs(b.tokens(logits, i) - want_logits[i, : len(x)]).max(-1) for i, x in enumerate(ids)])
    # float32 sums may take another order (XLA's CPU dot blocks by the row count: fp32 measures 5e-7); a 16-bit or
    # 8-bit plan rounds that away, so its codes agree but where a value sits at a rounding tie (none measured)
    assert d.max() <= 1e-5 or ((d > 1e-5).mean() <= 0.01 and d.max() < 5e-2), (d.max(), (d > 1e-5).sum())
    assert dl.max() <= 1e-5 or ((dl > 1e-5).mean() <= 0.01 and dl.max() < 5e-2), (dl.max(), (dl > 1e-5).sum())


@pytest.mark.parametrize("arch", ["BertForSequenceClassification", "MPNetForSequenceClassification",
                                  "RobertaForSequenceClassification", "ElectraForSequenceClassification",
                                  "DistilBertForSequenceClassification"])
def test_families_sequence_heads_per_slot(tmp_path, arch):
    make_hf_model(tmp_path, arch)
    model = SampModel(convert_hf_checkpoint(tmp_path), "fp32")
    ids, types = _sequences(LENGTHS, with_types=arch.startswith("Bert"))
    b = model.pack(ids, types)
    pid, mask, ty = _padded(ids, types, model.config.pad_token_id)
    np.testing.assert_allclose(b.sequences(model.run_packed("head", b)), np.asarray(model(pid, mask, ty)), atol=1e-5)


@pytest.mark.parametrize("mode", ["mean", "cls", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"])
def test_embeddings_per_slot_every_packable_pooling(tmp_path, mode):
    make_hf_model(tmp_path, "MPNetModel")
    model = SampModel(convert_hf_checkpoint(tmp_path), "fp32")
    model.pooling = dataclasses.replace(model.pooling, mode=mode)
    ids, _ = _sequences(LENGTHS, with_types=False)
    b = model.pack(ids)
    pid, mask, ty = _padded(ids, None, model.config.pad_token_id)
    want = np.asarray(model._run_bucketed("embed", pid, mask, ty))
    np.testing.assert_allclose(b.sequences(model.run_packed("embed", b)), want, atol=2e-7)
    unnormalized = np.asarray(model._pooled(model.hidden_states(pid, mask, ty), mask))
    np.testing.assert_allclose(b.sequences(model._unnormalized_packed(b)), unnormalized, atol=2e-6, rtol=1e-6)


def test_what_cannot_run_packed_says_why(tmp_path):
    make_hf_model(tmp_path / "d", "DebertaV2Model")
    model = SampModel(convert_hf_checkpoint(tmp_path / "d"), "fp32")
    with pytest.raises(ValueError, match="model_type='deberta-v2' runs padded only"):
        model.run_packed("hidden", model.pack(*_sequences([3, 4])))
    make_hf_model(tmp_path / "m", "MPNetModel")
    model = SampModel(convert_hf_checkpoint(tmp_path / "m"), "fp32")
    model.pooling = dataclasses.replace(model.pooling, mode="max")
    with pytest.raises(ValueError, match="pooling mode='max' runs padded only"):
        model.run_packed("embed", model.pack(_sequences([3, 4])[0]))
    assert not model.packs_better([3, 4, 50])


# ---- texts in: predict and embed pack where it pays ----------------------------------------------------
def test_predict_packed_equals_padded_and_auto_packs_mixed_lengths(bert_ner, real_sentences):
    model = SampModel(bert_ner, "full_int8")
    texts = real_sentences + [" ".join(real_sentences[:3])]
    assert model.predict(texts, packing=True, batch_size=64) == model.predict(texts, packing=False, batch_size=64)
    lengths = [len(e.ids) for e in model.tokenizer.encode(texts)]
    assert model.packs_better(lengths)  # arrival-order lengths: a third of the padded tokens are real
    assert not model.packs_better([128] * 8)  # full rows: nothing to gain


def test_the_cheap_bound_never_skips_a_packing_that_pays(bert_ner):
    """`_may_pay` (checked before packing) is a bound: where it says no, the real packing would not pay either."""
    model = SampModel(bert_ner, "fp32")
    rng = np.random.default_rng(0)
    skipped = 0
    for _ in range(300):
        lengths = rng.integers(1, rng.integers(2, 129), rng.integers(1, 80)).tolist()
        real = model.pack([[5] * n for n in lengths]).input_ids.size
        if not model._may_pay(lengths):
            skipped += 1
            assert not model._pays(real, lengths), lengths
    assert 0 < skipped < 300  # both answers occur
    assert not model._may_pay([12])  # one text: its padded row is as tight as a packed one


def test_similarity_and_embed_packed(minilm_dir, real_sentences):
    model = SampModel(convert_hf_checkpoint(minilm_dir), "fp32")
    a = model.embed(real_sentences, packing=True, batch_size=64)
    np.testing.assert_allclose(a, model.embed(real_sentences, packing=False, batch_size=64), atol=1e-6)
    np.testing.assert_allclose(model.embed(real_sentences, packing=True, normalize=False),
                               model.embed(real_sentences, packing=False, normalize=False), atol=2e-5, rtol=1e-5)


# ---- the kernel path, interpreted ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def kernel_bert(tmp_path_factory):
    ck = kernel_sized_bert(tmp_path_factory.mktemp("kernel_bert"), seed=0)
    batches = [random_batch(30000, [32, 20], 32, 0, seed=s) for s in range(2)]
    return dataclasses.replace(ck, scales=calibrate_batches(SampModel(ck, "fp32", kernels="xla"), batches,
                                                            progress=False))


@pytest.mark.parametrize("plan, kernel", [("fp16", "triton attention"), ("full_int8", "triton 8-bit attention")])
def test_attention_kernels_in_the_packed_model(kernel_bert, monkeypatch, plan, kernel):
    """The model hands the segment ids to the attention kernels (interpreted), which attend within each sequence:
    packed on the kernels against padded on XLA, each sequence within the kernel path's own tolerance
    (test_kernel_path). The GEMMs run on XLA here (interpreting them takes a minute a forward pass; they see
    rows, never segments); the whole kernel path runs packed on the GPU (test_gpu_parity)."""
    from pallas_kernels.matmul import api as matmul_api
    from pallas_kernels.quantized_matmul import api as quantized_matmul_api

    calls = count_kernel_calls(monkeypatch)
    for registry in (matmul_api._REGISTRY, matmul_api._PARTIAL_REGISTRY, quantized_matmul_api._PACKED_REGISTRY,
                     quantized_matmul_api._PARTIAL_REGISTRY):
        monkeypatch.delitem(registry, "mosaic")
    ids, types = _sequences([20, 12, 30, 2, 9, 17], seed=3)
    pid, mask, ty = _padded(ids, types, 0)
    want = np.asarray(SampModel(kernel_bert, plan, kernels="xla").hidden_states(pid, mask, ty), np.float64)
    fp32 = np.asarray(SampModel(kernel_bert, "fp32", kernels="xla").hidden_states(pid, mask, ty), np.float64)
    with ops.interpret_kernels():
        model = SampModel(kernel_bert, plan)
        b = model.pack(ids, types)
        hidden = np.asarray(model.run_packed("hidden", b), np.float64)
    assert set(calls) == {kernel}, calls
    rel = lambda a, w: float(np.linalg.norm(a - w) / np.linalg.norm(w))  # noqa: E731
    for i, x in enumerate(ids):
        n = len(x)
        assert rel(b.tokens(hidden, i), want[i, :n]) < max(0.3 * rel(want[i, :n], fp32[i, :n]), 2e-3), i


@pytest.mark.gpu
@pytest.mark.skipif(jax.default_backend() != "gpu", reason="compiled kernels need an NVIDIA GPU; run through the "
                    "device tool (bench/gpu_suite.sh), see bench/RESULTS.md")
@pytest.mark.parametrize("plan", ["fp16", "full_int8", "full_fp8"])
def test_compiled_kernel_path_packed_against_padded(kernel_bert, plan):
    """The whole kernel path compiled (Mosaic GEMMs, Triton attention with segments): packed rows of 128 against
    the padded layout on the same kernels, sequence by sequence, within the kernel path's tolerance."""
    ids, types = _sequences([20, 12, 30, 2, 9, 17, 64, 100, 5], seed=4)
    pid, mask, ty = _padded(ids, types, 0)
    model = SampModel(kernel_bert, plan)
    b = model.pack(ids, types)
    hidden = np.asarray(model.run_packed("hidden", b), np.float64)
    want = np.asarray(model.hidden_states(pid, mask, ty), np.float64)
    fp32 = np.asarray(SampModel(kernel_bert, "fp32", kernels="xla").hidden_states(pid, mask, ty), np.float64)
    rel = lambda a, w: float(np.linalg.norm(a - w) / np.linalg.norm(w))  # noqa: E731
    for i, x in enumerate(ids):
        n = len(x)
        assert rel(b.tokens(hidden, i), want[i, :n]) < max(0.3 * rel(want[i, :n], fp32[i, :n]), 2e-3), i
