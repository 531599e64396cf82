"""The attention kernels' tile choice, pinned as data on an H100's 132 SMs, and what the kernels take, on shapes alone."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from pallas_kernels.flash.config import AttentionConfig, check_config, pick_config, supports, unsupported

H100_SMS = 132

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
    cfg = pick_config(s, 64, None if qtype == "float" else qtype, n=12, b=b, sms=H100_SMS)
    assert (cfg.block_q, cfg.block_k, cfg.num_warps, cfg.num_stages, cfg.int_qk, cfg.heads) == BERT_BASE_H100[qtype, b, s]


@pytest.mark.parametrize("qtype, s, d, n, b", sorted(OTHER_H100))
def test_other_shapes_on_h100(qtype, s, d, n, b):
    cfg = pick_config(s, d, None if qtype == "float" else qtype, n=n, b=b, sms=H100_SMS)
    assert (cfg.block_q, cfg.block_k, cfg.num_warps, cfg.num_stages, cfg.int_qk, cfg.heads) == OTHER_H100[qtype, s, d, n, b]


def test_head_loop_only_with_programs_to_spare():
    """Two heads per program where at least 4 programs per SM remain after the loop halves them, and the head count
    is even."""
    assert pick_config(128, 64, n=12, b=128, sms=H100_SMS).heads == 2  # 1536 programs -> 768
    assert pick_config(128, 64, "int8", n=12, b=128, sms=H100_SMS).heads == 2
    assert pick_config(128, 64, n=12, b=1, sms=H100_SMS).heads == 1
    assert pick_config(128, 64, "int8", n=12, b=8, sms=H100_SMS).heads == 1
    assert pick_config(128, 64, n=13, b=128, sms=H100_SMS).heads == 1  # an odd head count: no pairs


def test_fewer_query_rows_at_small_batch():
    for qtype in (None, "int8", "fp8"):
        one = pick_config(128, 64, qtype, n=12, b=1, sms=H100_SMS)  # 12 programs of 128 rows
        assert (one.block_q, one.block_k, one.num_warps, one.heads) == (16, 128, 4, 1)
        assert pick_config(128, 64, qtype, n=12, b=4, sms=H100_SMS).block_q == 64  # 48 programs -> 96
        for b in (8, 128):  # 96 programs of 128 rows and more: whole blocks
            assert pick_config(128, 64, qtype, n=12, b=b, sms=H100_SMS).block_q == 128


def test_program_thresholds_follow_the_sm_count():
    """768 programs: under 4 per SM after a head loop on 132 SMs, over it on 66; 48 programs: over half of 66 SMs."""
    assert pick_config(128, 64, n=12, b=64, sms=H100_SMS).heads == 1
    assert pick_config(128, 64, n=12, b=64, sms=66).heads == 2
    assert pick_config(128, 64, n=12, b=4, sms=H100_SMS).block_q == 64
    assert pick_config(128, 64, n=12, b=4, sms=66).block_q == 128


def _qkv(b, s, n, d, dtype):
    return jax.ShapeDtypeStruct((b, s, 3, n, d), dtype)


@pytest.mark.parametrize("b, s, n, d", [(1, 1, 1, 16), (3, 37, 4, 32), (128, 512, 12, 64), (2, 130, 2, 128)])
def test_takes_half_or_8bit_qkv_up_to_512_keys(b, s, n, d):
    bias = jax.ShapeDtypeStruct((1, n, s, s), jnp.float32)
    for dtype in (jnp.bfloat16, jnp.float16):
        assert supports(_qkv(b, s, n, d, dtype)) and supports(_qkv(b, s, n, d, dtype), bias)
    assert supports(_qkv(b, s, n, d, jnp.int8), qtype="int8")
    assert supports(_qkv(b, s, n, d, jnp.float8_e4m3fn), jax.ShapeDtypeStruct((b, n, s, s), jnp.float32), qtype="fp8")


@pytest.mark.parametrize("qkv, bias, qtype, why", [
    (_qkv(1, 8, 1, 16, jnp.float32), None, None, "takes bf16/fp16 Q, K, V, not float32"),
    (_qkv(1, 8, 1, 16, jnp.int8), None, "fp8", "takes fp8 codes, not qkv.dtype=int8"),
    (_qkv(1, 513, 1, 16, jnp.bfloat16), None, None, "sequence 513 > 512"),
    (_qkv(1, 8, 1, 8, jnp.bfloat16), None, None, "head dim 8 is not a power of two >= 16 (tensor-core dot tiles)"),
    (_qkv(1, 8, 1, 48, jnp.int8), None, "int8", "head dim 48 is not a power of two >= 16 (tensor-core dot tiles)"),
    (_qkv(2, 8, 1, 16, jnp.float16), jax.ShapeDtypeStruct((3, 1, 8, 8), jnp.float32), None, "bias batch 3"),
])
def test_declines_with_a_reason(qkv, bias, qtype, why):
    assert not supports(qkv, bias, qtype=qtype)
    assert unsupported(qkv, bias, qtype=qtype) == why


def test_explicit_configs_are_checked():
    with pytest.raises(ValueError, match="heads=5 does not divide the 2 heads"):
        check_config(AttentionConfig(16, 16, heads=5), 2, 16)
    with pytest.raises(ValueError, match="block_k=24 is not a power of two"):
        check_config(AttentionConfig(16, 24), 1, 16)
    with pytest.raises(ValueError, match="int_qk=True needs int8 Q and K, not fp8"):
        check_config(AttentionConfig(16, 16, int_qk=True), 1, 32, qtype="fp8")
    with pytest.raises(ValueError, match="int_qk=True needs a head dim >= 32, not 16"):
        check_config(AttentionConfig(16, 16, int_qk=True), 1, 16, qtype="int8")
