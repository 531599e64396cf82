"""Tiles and launch shape of the flash-attention kernels (float and 8-bit), and which inputs they take.

attention/README.md states the rule and the measurements behind it.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from jax.experimental import pallas as pl

from pallas_kernels._platform import device_properties
from pallas_kernels.quant_types import QTYPES
from pallas_kernels.triton_rows import next_pow2

MAX_SEQ = 512
# an int8 dot over a shorter K compiles but returns wrong sums (H100, jax 0.11.2, head dim 16: relative error 0.42)
INT_DOT_K = 32
_HALF = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    """Tiles and launch shape; `block_k >= S` makes the 8-bit kernel one pass."""

    block_q: int
    block_k: int
    num_warps: int = 4
    num_stages: int = 2
    int_qk: bool = False  # int8 Q @ K^T as an int8 dot (int8 plans, head dim >= 32)
    heads: int = 1  # heads per program, in a loop (a divisor of the head count)


def pick_config(s: int, d: int, qtype: str | None = None, *, n: int = 1, b: int = 1,
                sms: int | None = None) -> AttentionConfig:
    """Tiles for `b` sequences of `s` keys, `n` heads of dim `d`, float (`qtype=None`) or 8-bit Q/K/V, on a
    device of `sms` SMs (default: this device's).

    Up to 128 keys: square blocks of `next_pow2(S)` clamped to 16..128 (16: the tensor-core dot's minimum), one
    key block (the 8-bit kernel in one pass); 128-row blocks on 8 warps, but fp8 on 4. Longer sequences: 128
    query rows on 8 warps, keys in blocks of 64 (the 8-bit kernel in two passes). int8 Q @ K^T runs as an int8
    dot where the head dim reaches the int8 tensor-core instruction's K of 32.

    Two heads per program, in a pipelined loop (Triton's `num_stages`, so one head's loads overlap the other's
    softmax), where `n` is even and at least 4 programs per SM remain after the loop halves them: the float
    kernel at every length, the 8-bit ones at 128 keys (3 stages for int8, 2 for fp8). Where the programs
    would number under half the SMs, `fewer_query_rows` halves the query blocks instead (never both).
    """
    sms = device_properties().sm_count if sms is None else sms
    loop_programs = 4 * sms  # programs left after a head loop halves them: 2 resident per SM, 2 to overlap
    quant = qtype is not None
    int_qk = qtype == "int8" and d >= INT_DOT_K

    def looped(cfg: AttentionConfig, stages: int) -> AttentionConfig:  # two heads per program where that pays
        if n % 2 or b * n * pl.cdiv(s, cfg.block_q) < 2 * loop_programs:
            return cfg
        return dataclasses.replace(cfg, heads=2, num_stages=stages)

    if s <= 128:
        blk = max(16, next_pow2(s))
        if blk < 128:  # the 8-bit kernels at 32 and 64 keys take no head loop
            cfg = AttentionConfig(blk, blk, 4, 1, int_qk=int_qk)
        elif not quant:
            cfg = AttentionConfig(128, 128, 8, 1)
        else:
            cfg = AttentionConfig(128, 128, 4, 1) if qtype == "fp8" else AttentionConfig(128, 128, 8, 1, int_qk=int_qk)
        cfg = fewer_query_rows(cfg, s, n * b, sms // 2)
        return cfg if quant and blk < 128 else looped(cfg, 2 if not quant or qtype == "fp8" else 3)
    if not quant:
        return looped(AttentionConfig(128, 64, 8, 1), 3)
    return AttentionConfig(128, 64, 8, 1, int_qk=int_qk)


def fewer_query_rows(cfg: AttentionConfig, s: int, sequences_x_heads: int, few_programs: int) -> AttentionConfig:
    """`cfg` with query blocks halved (down to 16 rows, on 4 warps) while its programs number under
    `few_programs`: at batch 1 the 12 heads of 128 rows are 12 programs on 132 SMs, each forming all its
    16384 logits in turn, while more, smaller programs spread them over the idle SMs."""
    bq = cfg.block_q
    while bq > 16 and sequences_x_heads * pl.cdiv(s, bq) < few_programs:
        bq //= 2
    return cfg if bq == cfg.block_q else dataclasses.replace(cfg, block_q=bq, num_warps=4)


def unsupported(qkv, bias=None, *, qtype: str | None = None) -> str | None:
    """Why the kernels cannot take this packed `[B, S, 3, N, D]` QKV (float, or `qtype` codes) and bias (anything
    with `.shape` and `.dtype`, such as `jax.ShapeDtypeStruct`), or None where they can."""
    b, s, _, _, d = qkv.shape
    dtype = jnp.dtype(qkv.dtype)
    if qtype is None and dtype not in _HALF:
        return f"takes bf16/fp16 Q, K, V, not {dtype}"
    if qtype is not None and dtype != jnp.dtype(QTYPES[qtype][0]):
        return f"takes {qtype} codes, not qkv.dtype={dtype}"
    if s > MAX_SEQ:
        return f"sequence {s} > {MAX_SEQ}"
    if d < 16 or d % 16 or d != next_pow2(d):
        return f"head dim {d} is not a power of two >= 16 (tensor-core dot tiles)"
    if bias is not None and bias.shape[0] not in (1, b):
        return f"bias batch {bias.shape[0]}"
    return None


def supports(qkv, bias=None, *, qtype: str | None = None) -> bool:
    """Whether the kernels take this QKV and bias (see `unsupported`)."""
    return unsupported(qkv, bias, qtype=qtype) is None


def check_config(config: AttentionConfig, n: int, d: int, *, qtype: str | None = None) -> None:
    """Raises ValueError for a config that cannot run on `n` heads of dim `d` (a caller's explicit config)."""
    if config.heads < 1 or n % config.heads:
        raise ValueError(f"attention config: heads={config.heads} does not divide the {n} heads")
    for name in ("block_q", "block_k"):
        v = getattr(config, name)
        if v < 16 or v != next_pow2(v):
            raise ValueError(f"attention config: {name}={v} is not a power of two >= 16")
    if config.int_qk and qtype != "int8":
        raise ValueError(f"attention config: int_qk=True needs int8 Q and K, not {qtype or 'float'} ones")
    if config.int_qk and d < INT_DOT_K:
        raise ValueError(f"attention config: int_qk=True needs a head dim >= {INT_DOT_K}, not {d}")
