"""Pallas-Triton flash attention on the packed QKV tensor, float or 8-bit (padded batch, S up to 512).

One program owns `block_q` queries of one (batch, head). It reads its Q rows,
then streams K and V in `block_k` blocks straight out of the QKV GEMM's output
`[B*S, 3*N*D]` (no head transposes, no split copies), keeps the logits and the
softmax statistics in float32 registers and writes the context rows once, in
the `[B*S, N*D]` layout the output projection reads.

Float Q/K/V: one pass with the online softmax (rescaled running sum).

8-bit Q/K/V (`full_*` modes): the reference quantizes the *normalized*
probabilities, so P needs each row's max and sum before it is formed. Where
one key block holds the whole sequence (S <= 128 by default) the kernel forms
the logits once and finishes the row in registers; longer sequences take two
passes over the keys, the first for each row's max and sum, the second to form
P exactly, quantize it and multiply by V. The arithmetic is the same either
way. 8-bit codes are widened to fp16 in registers: int8 and e4m3 values are
exact in fp16 and the tensor core sums their products in float32, so both
products equal the reference's integer sums (up to 2^24, far above 64 * 127 * 255).
With `int_qk` the int8 Q @ K^T runs as an int8 dot into int32, the same integers.

Logits are kept in base 2 (the scale carries log2(e)) so each exponential is
one `ex2.approx.ftz` instruction (triton_math.exp2): `jnp.exp` lowers to
libdevice's accurate expf, about eight instructions per logit, a quarter of the
8-bit kernel's ~30 (ncu on the H100, bench/RESULTS.md), and `jnp.exp2` to an
`ex2.approx` wrapped in three more for subnormal results. The values differ
from exp's by a few float32 ulps, which moves a probability code only at a
rounding tie.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels._launch import StaticPartial, launch
from pallas_kernels._platform import interpreting, on_gpu
from pallas_kernels.attention.base import MASK_VALUE
from pallas_kernels.triton_rows import next_pow2
from pallas_kernels.quant_kernel import RNE_SHIFT, quantize_in_kernel, round_half_even_in_kernel
from pallas_kernels.quant_types import QTYPES
from pallas_kernels.triton_math import exp2, fma

MAX_SEQ = 512
LOG2E = math.log2(math.e)
# programs left after a head loop halves them: 4 per SM of the H100's 132 (2 resident, 2 to overlap)
LOOP_PROGRAMS = 4 * 132
FEW_PROGRAMS = 132 // 2  # under these, smaller query blocks (fewer_query_rows)
# an int8 dot over a shorter K compiles but returns wrong sums (H100, jax 0.11.2, head dim 16: relative error 0.42)
INT_DOT_K = 32
_NT = (((1,), (1,)), ((), ()))  # a @ b.T
_NN = (((1,), (0,)), ((), ()))


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    """Tiles and launch shape; `block_k >= S` makes the 8-bit kernel one pass."""

    block_q: int
    block_k: int
    num_warps: int = 4
    num_stages: int = 2
    int_qk: bool = False  # int8 Q @ K^T as an int8 dot (int8 plans, head dim >= 32)
    heads: int = 1  # heads per program, in a loop (a divisor of the head count)


def pick_config(s: int, d: int, quant: bool, qtype: str | None = None, *, n: int = 1, b: int = 1) -> AttentionConfig:
    """Tiles for S keys, head dim `d`, `n` heads, batch `b`.

    Up to 128 keys: square blocks of `next_pow2(S)` clamped to 16..128 (16: the tensor-core dot's minimum), one
    key block (the 8-bit kernel in one pass). Longer sequences: 128 query rows on 8 warps, keys in blocks of 64
    (the 8-bit kernel in two passes). int8 Q @ K^T runs as an int8 dot where the head dim reaches the int8
    tensor-core instruction's K of 32. Where `n` is even, the float kernel, and the 8-bit ones at 128 keys, loop
    over two heads per program in a pipelined loop (Triton's `num_stages`), so one head's loads overlap the
    other's softmax: a program of one head has nothing to overlap, and 8 warps at ~110 registers leave room for
    only two programs per SM. The loop halves the programs, so it is taken only where at least `LOOP_PROGRAMS`
    remain: at 1 x 128 two heads per program took the float kernel from 0.063 to 0.101 ms (12 launches).

    Measured on the H100 (bench/RESULTS.md, sweeps of sessions 4-11), ms. At 128 x 128 x 12 x 64: float
    0.0539 -> 0.0445 (two heads, two stages); int8 0.0477 -> 0.0396 (two heads, three stages); fp8 0.0459 ->
    0.0425 with 64 query rows on 4 warps, two heads, two stages (128-row fp8 programs on 8 warps got slower with a
    head loop, 0.057); after the flushed exp2 (2026-11-24), 128 rows on 4 warps: 0.0392 -> 0.0366 (int8 on 4
    warps 0.0398 against 0.0370 on 8; three heads on 4 warps, 0.0355, fill exactly one wave at this shape
    only). At 128 x 64 the float kernel went 0.0249 -> 0.0219 and at 128 x 32 0.0101 -> 0.0090 (two
    heads, two stages); the 8-bit ones stayed within 3% of one head. At 32 x 512 the float kernel went 0.130 ->
    0.116 with two heads and three stages; the 8-bit two-pass kernels gained nothing from a head loop (0.187 ->
    0.19-0.32), so they keep one head. Earlier sweeps: 128-row blocks took the float kernel from 0.0645 to
    0.0554; one pass with the int8 dot took the int8 kernel from 0.121 to 0.077; 64-key blocks at 32 x 512
    took the float kernel from 0.207 to 0.140.
    """
    int_qk = qtype == "int8" and d >= INT_DOT_K

    def looped(cfg: AttentionConfig, stages: int) -> AttentionConfig:  # two heads per program where that pays
        if n % 2 or b * n * pl.cdiv(s, cfg.block_q) < 2 * LOOP_PROGRAMS:
            return cfg
        return dataclasses.replace(cfg, heads=2, num_stages=stages)

    if s <= 128:
        blk = max(16, next_pow2(s))
        if blk < 128:  # the 8-bit kernels at 32 and 64 keys gained nothing from a head loop
            cfg = AttentionConfig(blk, blk, 4, 1, int_qk=int_qk)
        elif not quant:
            cfg = AttentionConfig(128, 128, 8, 1)
        else:
            cfg = AttentionConfig(128, 128, 4, 1) if qtype == "fp8" else AttentionConfig(128, 128, 8, 1, int_qk=int_qk)
        # (fewer query rows below 66 programs, a head loop from 1056: never both)
        cfg = fewer_query_rows(cfg, s, n * b)
        return cfg if quant and blk < 128 else looped(cfg, 2 if not quant or qtype == "fp8" else 3)
    if not quant:
        return looped(AttentionConfig(128, 64, 8, 1), 3)
    return AttentionConfig(128, 64, 8, 1, int_qk=int_qk)


def fewer_query_rows(cfg: AttentionConfig, s: int, sequences_x_heads: int) -> AttentionConfig:
    """`cfg` with query blocks halved (down to 16 rows, on 4 warps) while its programs number under
    `FEW_PROGRAMS`: at batch 1 the 12 heads of 128 rows are 12 programs on 132 SMs, each forming all its
    16384 logits in turn. H100 at 128 x 12 x 64 (2026-11-23), ms by rows per program:
      batch 1, float: 0.0051 (128), 0.0039 (64), 0.0031 (32), 0.0028 (16); int8: 0.0044, 0.0036, 0.0037, 0.0032;
      batch 8 (96 programs of 128 rows), float: 0.0056, 0.0056, 0.0060, 0.0073; int8: 0.0046, 0.0051, 0.0063,
      0.0076; fp8 0.0045 at 128 rows against 0.0046 at 64. So only where the SMs would mostly idle."""
    bq = cfg.block_q
    while bq > 16 and sequences_x_heads * pl.cdiv(s, bq) < FEW_PROGRAMS:
        bq //= 2
    return cfg if bq == cfg.block_q else dataclasses.replace(cfg, block_q=bq, num_warps=4)


def _tile(v, dim: int, shape):
    return jax.lax.broadcast_in_dim(v, shape, (dim,))


def _load_rows(ref, rows, ok, col0: int, d: int, wide=None):
    """`[len(rows), d]` tile of a 2-D ref (rows `rows`, columns `col0 .. col0 + d`), masked rows 0.

    With `wide` the tile is widened in registers first (8-bit codes -> fp16). Triton
    cannot splat a fill value into fp8, so those loads leave masked lanes
    undefined and the select after zeroes them.
    """
    shape = (rows.shape[0], d)
    r, c = _tile(rows, 0, shape), _tile(col0 + jax.lax.iota(jnp.int32, d), 1, shape)
    mask = _tile(ok, 0, shape)
    if wide is None:
        return pltriton.load(ref.at[r, c], mask=mask, other=0)
    return jnp.where(mask, pltriton.load(ref.at[r, c], mask=mask).astype(wide), 0)


def _logits(q, k, kpos, valid, s: int, logit_scale, bias_ref, bias_rows, bq: int, bk: int):
    """float32 logits `[bq, bk]` in base 2 (`logit_scale` includes log2(e)): scaled, biased, padding keys at
    MASK_VALUE, keys past S at -inf."""
    if q.dtype == jnp.int8:  # exact int32 sums, the same integers the fp16 dot forms
        x = jax.lax.dot_general(q, k, _NT, preferred_element_type=jnp.int32).astype(jnp.float32) * logit_scale
    else:
        x = jax.lax.dot_general(q, k, _NT, preferred_element_type=jnp.float32) * logit_scale
    if bias_ref is not None:
        shape = (bq, bk)
        ok = _tile(bias_rows >= 0, 0, shape) & _tile(kpos < s, 1, shape)
        x = x + pltriton.load(bias_ref.at[_tile(bias_rows, 0, shape), _tile(kpos, 1, shape)], mask=ok,
                              other=0).astype(jnp.float32) * LOG2E
    x = jnp.where(_tile(valid, 1, (bq, bk)), x, MASK_VALUE)
    return jnp.where(_tile(kpos < s, 1, (bq, bk)), x, -jnp.inf)


def _probability_codes(e, scale, compiled: bool):
    """`round_half_even(e * scale)` as float16 codes, for `0 <= e * scale < 2^22`.

    Compiled: the exact product rounded once, straight onto float32's integer grid, by
    `fma(e, scale, 1.5 * 2^23)`, then the shift taken off: an FFMA and an FADD where a multiply and
    `round_half_even_in_kernel`'s two adds issue three instructions and round twice (the two can differ
    only where the float32 product lands on a rounding tie).
    """
    if not compiled:
        return round_half_even_in_kernel(e * scale, compiled=False).astype(jnp.float16)
    return (fma(e, scale, RNE_SHIFT, compiled) - RNE_SHIFT).astype(jnp.float16)


def _kernel(*refs, s, n, d, bq, bk, scale, bias_batched, has_bias, quant, probs, p_qtype, out_qtype=None,
            int_qk=False, heads=1, compiled=True):
    qkv_ref, mask_ref, *rest = refs
    scale_refs = [rest.pop(0) for _ in range(6)] if quant else None
    bias_ref = rest.pop(0) if has_bias else None
    (o_ref,) = rest
    b, i = pl.program_id(0), pl.program_id(2)
    # what every head of this program shares
    qpos = i * bq + jax.lax.iota(jnp.int32, bq)
    q_ok = qpos < s
    wide = jnp.float16 if quant else None
    qk_wide = None if int_qk else wide
    if quant:  # [1] arrays as stored (no per-call stack of them, a launch each): Q, K, V, P, 1 / P, output
        q_scale, k_scale, v_scale, p_scale, inv_p_scale, out_scale = (r[0] for r in scale_refs)
        logit_scale = q_scale * k_scale * (scale * LOG2E)  # base-2 logits
        inv_out_scale = 1.0 / out_scale  # within 2 ulps (Triton's division): a context code moves only at a tie
    else:
        logit_scale = scale * LOG2E
    row = lambda vec, width: _tile(vec, 0, (bq, width))
    n_blocks = pl.cdiv(s, bk)
    m0 = jnp.full((bq,), -jnp.inf, jnp.float32)
    l0 = jnp.zeros((bq,), jnp.float32)
    acc0 = jnp.zeros((bq, d), jnp.float32)

    def one_head(h):
        q = _load_rows(qkv_ref, b * s + qpos, q_ok, h * d, d, qk_wide)
        # bias is [Bb * N * S, S]; a batch of one is shared by every sequence
        bias_rows = jnp.where(q_ok, ((b if bias_batched else 0) * n + h) * s + qpos, -1) if has_bias else None

        def keys(j):
            kpos = j * bk + jax.lax.iota(jnp.int32, bk)
            k_ok = kpos < s
            valid = pltriton.load(mask_ref.at[b * s + kpos], mask=k_ok, other=0) != 0
            k = _load_rows(qkv_ref, b * s + kpos, k_ok, (n + h) * d, d, qk_wide)
            v = _load_rows(qkv_ref, b * s + kpos, k_ok, (2 * n + h) * d, d, wide)
            return _logits(q, k, kpos, valid, s, logit_scale, bias_ref, bias_rows, bq, bk), v

        if not quant:

            def step(j, carry):  # online softmax: rescale what was summed under the old max
                m, total, acc = carry
                x, v = keys(j)
                m_new = jnp.maximum(m, jnp.max(x, axis=1))
                alpha = exp2(m - m_new, compiled)
                p = exp2(x - row(m_new, bk), compiled)
                acc = acc * row(alpha, d) + jax.lax.dot_general(p.astype(v.dtype), v, _NN,
                                                              preferred_element_type=jnp.float32)
                return m_new, total * alpha + jnp.sum(p, axis=1), acc

            _, total, acc = jax.lax.fori_loop(0, n_blocks, step, (m0, l0, acc0))
            out = acc / row(total, d)
        else:

            def stats(j, carry):
                m, total = carry
                x, _ = keys(j)
                m_new = jnp.maximum(m, jnp.max(x, axis=1))
                return m_new, total * exp2(m - m_new, compiled) + jnp.sum(exp2(x - row(m_new, bk), compiled), axis=1)

            def product(acc, e, v, inv_total):  # P from the exponentials and the row's 1 / sum, quantized, times V
                # P / P's scale in one multiply per element: the row's 1 / sum times 1 / P's scale
                to_codes = row(inv_total if probs == "float" else inv_total * inv_p_scale, bk)
                if probs == "uint8" and p_qtype == "uint8":  # y >= 0; the fixed scale keeps y <= 255 (1 + 2^-22)
                    codes = _probability_codes(e, to_codes, compiled)
                else:
                    y = e * to_codes
                    if probs == "int8":  # a calibrated scale may put P past the top code; a fixed one maps P <= 1 onto it
                        y = jnp.minimum(y, 448.0 if p_qtype == "fp8" else 127.0)
                    if probs == "float":
                        codes = y.astype(jnp.float16)
                    elif p_qtype == "fp8":  # with the fixed scale y <= 448 (1 + 2^-22): it rounds to 448, e4m3's top
                        codes = y.astype(jnp.float8_e4m3fn).astype(jnp.float16)
                    else:  # a calibrated int8 scale, y clipped to 127
                        codes = round_half_even_in_kernel(y, compiled=compiled).astype(jnp.float16)
                return acc + jax.lax.dot_general(codes, v, _NN, preferred_element_type=jnp.float32)

            if n_blocks == 1:  # the whole row in one block: logits formed once, the same arithmetic as two passes
                x, v = keys(0)
                e = exp2(x - row(jnp.max(x, axis=1), bk), compiled)
                acc = product(acc0, e, v, 1.0 / jnp.sum(e, axis=1))
            else:
                m, total = jax.lax.fori_loop(0, n_blocks, stats, (m0, l0))
                inv_total = 1.0 / total

                def second_pass(j, acc):
                    x, v = keys(j)
                    return product(acc, exp2(x - row(m, bk), compiled), v, inv_total)

                acc = jax.lax.fori_loop(0, n_blocks, second_pass, acc0)
            out = acc * (v_scale if probs == "float" else p_scale * v_scale)
            if out_qtype is not None:  # the context as the 8-bit codes the output projection reads
                out = quantize_in_kernel(out, inv_out_scale, out_qtype)
        shape = (bq, d)
        rows, cols = _tile(b * s + qpos, 0, shape), _tile(h * d + jax.lax.iota(jnp.int32, d), 1, shape)
        pltriton.store(o_ref.at[rows, cols], out.astype(o_ref.dtype), mask=_tile(q_ok, 0, shape))

    h0 = pl.program_id(1) * heads  # read outside the loop: the interpreter substitutes program ids at top level
    if heads == 1:
        one_head(h0)
    else:  # several heads per program: Triton's pipeliner can fetch the next head's rows during this one's math
        jax.lax.fori_loop(0, heads, lambda g, c: (one_head(h0 + g), c)[1], 0)


def _check_shapes(qkv, bias, what: str) -> tuple[int, int, int, int]:
    b, s, three, n, d = qkv.shape
    if s > MAX_SEQ:
        raise NotImplementedError(f"{what}: sequence {s} > {MAX_SEQ}")
    if d < 16 or d % 16 or d != next_pow2(d):
        raise NotImplementedError(f"{what}: head dim {d} is not a power of two >= 16 (tensor-core dot tiles)")
    if bias is not None and bias.shape[0] not in (1, b):
        raise NotImplementedError(f"{what}: bias batch {bias.shape[0]}")
    return b, s, n, d


def _check_config(config: AttentionConfig, n: int, d: int, *, qtype: str | None = None) -> None:
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


def _attention_call(*args, kernel, out_shape, grid, config: AttentionConfig, interpret: bool, name: str):
    return pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=grid,
        compiler_params=pltriton.CompilerParams(num_warps=config.num_warps, num_stages=config.num_stages),
        interpret=interpret,
        name=name,
    )(*args)


def _call(qkv, key_mask, bias, scales, *, out_dtype, interpret, name, config, **static):
    b, s, _, n, d = qkv.shape
    bq, bk = config.block_q, config.block_k
    args = [qkv.reshape(b * s, 3 * n * d), key_mask.reshape(b * s).astype(jnp.int32)]
    if scales is not None:
        args += scales
    if bias is not None:
        args.append(bias.reshape(-1, s))
    kernel = StaticPartial(_kernel, s=s, n=n, d=d, bq=bq, bk=bk, has_bias=bias is not None,
                           bias_batched=bias is not None and bias.shape[0] == b, int_qk=config.int_qk, heads=config.heads,
                           compiled=not interpret, **static)
    # one lowering per executable for all layers (_launch)
    out = launch(StaticPartial(_attention_call, kernel=kernel, out_shape=jax.ShapeDtypeStruct((b * s, n * d), out_dtype),
                               grid=(b, n // config.heads, pl.cdiv(s, bq)), config=config, interpret=interpret, name=name), *args)
    return out.reshape(b, s, n, d)


def attention_packed_triton(qkv, key_mask, bias=None, *, scale: float, out_dtype=None,
                            config: AttentionConfig | None = None, interpret: bool = False) -> jax.Array:
    """`attention_packed_reference` as one Pallas-Triton kernel (GPU, or `interpret` on a CPU)."""
    interpret = interpret or interpreting()
    if not interpret and not on_gpu():
        raise NotImplementedError("triton attention runs on a GPU (or with interpret=True)")
    if qkv.dtype not in (jnp.bfloat16, jnp.float16):
        raise NotImplementedError(f"triton attention takes bf16/fp16 Q, K, V, not {qkv.dtype}")
    _check_shapes(qkv, bias, "triton attention")
    config = config or pick_config(qkv.shape[1], qkv.shape[-1], quant=False, n=qkv.shape[3], b=qkv.shape[0])
    _check_config(config, *qkv.shape[-2:])
    return _call(qkv, key_mask, bias, None, out_dtype=out_dtype or qkv.dtype, interpret=interpret, config=config,
                 name="flash_attention", scale=float(scale), quant=False, probs=None, p_qtype=None)


def quantized_attention_packed_triton(qkv_q, q_scale, k_scale, v_scale, key_mask, bias=None, *, scale: float,
                                      qtype: str, probs: str = "uint8", probs_scale=None, out_dtype=jnp.float32,
                                      out_scale=None, config: AttentionConfig | None = None,
                                      interpret: bool = False) -> jax.Array:
    """`quantized_attention_packed_reference` as one Pallas-Triton kernel (GPU, or `interpret` on a CPU)."""
    from pallas_kernels.quantized_attention.base import fixed_probs_scale

    interpret = interpret or interpreting()
    if not interpret and not on_gpu():
        raise NotImplementedError("triton quantized attention runs on a GPU (or with interpret=True)")
    _check_shapes(qkv_q, bias, "triton quantized attention")
    f32 = lambda v: jnp.asarray(v, jnp.float32).reshape(1)
    if probs == "int8":  # a calibrated scale: its reciprocal is the one per-call computation left (naive mode)
        p_qtype, p_scale = qtype, f32(probs_scale)
        inv_p_scale = 1.0 / p_scale
    else:  # fixed: constants, the reciprocal exact in float64 before the cast
        p_qtype = None if probs == "float" else ("uint8" if qtype == "int8" else "fp8")
        fixed = 1.0 if probs == "float" else fixed_probs_scale(qtype)
        p_scale, inv_p_scale = f32(np.float32(fixed)), f32(np.float32(1.0 / fixed))
    scales = [f32(q_scale), f32(k_scale), f32(v_scale), p_scale, inv_p_scale, f32(1.0 if out_scale is None else out_scale)]
    out_qtype = None if out_scale is None else qtype
    config = config or pick_config(qkv_q.shape[1], qkv_q.shape[-1], quant=True, qtype=qtype, n=qkv_q.shape[3],
                                   b=qkv_q.shape[0])
    _check_config(config, *qkv_q.shape[-2:], qtype=qtype)
    return _call(qkv_q, key_mask, bias, scales, out_dtype=QTYPES[qtype][0] if out_qtype else out_dtype,
                 interpret=interpret, config=config, name="flash_attention_8bit", scale=float(scale), quant=True, probs=probs,
                 p_qtype=p_qtype, out_qtype=out_qtype)
