"""The attention kernels' tile choice for BERT-base (12 heads of 64) on an H100's 132 SMs, pinned as data."""

from __future__ import annotations

import pytest

from pallas_kernels.attention.triton import pick_config

# (qtype, batch, seq) -> (block_q, block_k, num_warps, num_stages, int_qk, heads)
BERT_BASE_H100 = {
    ("float", 1, 32): (16, 32, 4, 1, False, 1),
    ("float", 1, 128): (16, 128, 4, 1, False, 1),
    ("float", 1, 512): (128, 64, 8, 1, False, 1),
    ("float", 8, 32): (32, 32, 4, 1, False, 1),
    ("float", 8, 128): (128, 128, 8, 1, False, 1),
    ("float", 8, 512): (128, 64, 8, 1, False, 1),
    ("float", 32, 32): (32, 32, 4, 1, False, 1),
    ("float", 32, 128): (128, 128, 8, 1, False, 1),
    ("float", 32, 512): (128, 64, 8, 3, False, 2),
    ("float", 128, 32): (32, 32, 4, 2, False, 2),
    ("float", 128, 128): (128, 128, 8, 2, False, 2),
    ("float", 128, 512): (128, 64, 8, 3, False, 2),
    ("int8", 1, 32): (16, 32, 4, 1, True, 1),
    ("int8", 1, 128): (16, 128, 4, 1, True, 1),
    ("int8", 1, 512): (128, 64, 8, 1, True, 1),
    ("int8", 8, 32): (32, 32, 4, 1, True, 1),
    ("int8", 8, 128): (128, 128, 8, 1, True, 1),
    ("int8", 8, 512): (128, 64, 8, 1, True, 1),
    ("int8", 32, 32): (32, 32, 4, 1, True, 1),
    ("int8", 32, 128): (128, 128, 8, 1, True, 1),
    ("int8", 32, 512): (128, 64, 8, 1, True, 1),
    ("int8", 128, 32): (32, 32, 4, 1, True, 1),
    ("int8", 128, 128): (128, 128, 8, 3, True, 2),
    ("int8", 128, 512): (128, 64, 8, 1, True, 1),
    ("fp8", 1, 32): (16, 32, 4, 1, False, 1),
    ("fp8", 1, 128): (16, 128, 4, 1, False, 1),
    ("fp8", 1, 512): (128, 64, 8, 1, False, 1),
    ("fp8", 8, 32): (32, 32, 4, 1, False, 1),
    ("fp8", 8, 128): (128, 128, 4, 1, False, 1),
    ("fp8", 8, 512): (128, 64, 8, 1, False, 1),
    ("fp8", 32, 32): (32, 32, 4, 1, False, 1),
    ("fp8", 32, 128): (128, 128, 4, 1, False, 1),
    ("fp8", 32, 512): (128, 64, 8, 1, False, 1),
    ("fp8", 128, 32): (32, 32, 4, 1, False, 1),
    ("fp8", 128, 128): (128, 128, 4, 2, False, 2),
    ("fp8", 128, 512): (128, 64, 8, 1, False, 1),
}

# other head dims, odd sequence and head counts: (qtype, seq, head dim, heads, batch) -> as above
OTHER_H100 = {
    ("float", 37, 32, 12, 8): (64, 64, 4, 1, False, 1),
    ("int8", 37, 32, 12, 8): (64, 64, 4, 1, True, 1),
    ("fp8", 37, 32, 12, 8): (64, 64, 4, 1, False, 1),
    ("float", 130, 64, 12, 32): (128, 64, 8, 1, False, 1),
    ("int8", 130, 64, 12, 32): (128, 64, 8, 1, True, 1),
    ("fp8", 130, 64, 12, 32): (128, 64, 8, 1, False, 1),
    ("float", 100, 16, 4, 2): (16, 128, 4, 1, False, 1),
    ("int8", 100, 16, 4, 2): (16, 128, 4, 1, False, 1),
    ("fp8", 100, 16, 4, 2): (16, 128, 4, 1, False, 1),
    ("float", 128, 64, 13, 128): (128, 128, 8, 1, False, 1),
    ("int8", 128, 64, 13, 128): (128, 128, 8, 1, True, 1),
    ("fp8", 128, 64, 13, 128): (128, 128, 4, 1, False, 1),
    ("float", 64, 32, 12, 64): (64, 64, 4, 1, False, 1),
    ("int8", 64, 32, 12, 64): (64, 64, 4, 1, True, 1),
    ("fp8", 64, 32, 12, 64): (64, 64, 4, 1, False, 1),
    ("float", 64, 64, 12, 256): (64, 64, 4, 2, False, 2),
    ("int8", 64, 64, 12, 256): (64, 64, 4, 1, True, 1),
    ("fp8", 64, 64, 12, 256): (64, 64, 4, 1, False, 1),
}


@pytest.mark.parametrize("qtype, b, s", sorted(BERT_BASE_H100))
def test_bert_base_choice_on_h100(qtype, b, s):
    q = None if qtype == "float" else qtype
    cfg = pick_config(s, 64, quant=q is not None, qtype=q, n=12, b=b)
    assert (cfg.block_q, cfg.block_k, cfg.num_warps, cfg.num_stages, cfg.int_qk, cfg.heads) == BERT_BASE_H100[qtype, b, s]


@pytest.mark.parametrize("qtype, s, d, n, b", sorted(OTHER_H100))
def test_other_shapes_on_h100(qtype, s, d, n, b):
    q = None if qtype == "float" else qtype
    cfg = pick_config(s, d, quant=q is not None, qtype=q, n=n, b=b)
    assert (cfg.block_q, cfg.block_k, cfg.num_warps, cfg.num_stages, cfg.int_qk, cfg.heads) == OTHER_H100[qtype, s, d, n, b]
