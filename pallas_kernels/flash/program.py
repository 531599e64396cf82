"""The Pallas-Triton flash-attention program on the packed QKV tensor, less its softmax (the ops' kernels add that).

One program owns `block_q` queries of one sequence and `heads` heads (grid: batch, head groups, query
blocks). It reads its Q rows, then streams K and V in `block_k` blocks straight out of the QKV GEMM's output
`[B*S, 3*N*D]` (no head transposes, no split copies), keeps the logits in float32 registers and writes the
context rows once, in the `[B*S, N*D]` layout the output projection reads. Logits are kept in base 2 (the
scale carries log2(e)) so each exponential is one `triton_math.exp2`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from pallas_kernels._launch import StaticPartial, launch
from pallas_kernels.flash.config import AttentionConfig
from pallas_kernels.flash.reference import MASK_VALUE

LOG2E = math.log2(math.e)
NT = (((1,), (1,)), ((), ()))  # dot_general dimensions of a @ b.T
NN = (((1,), (0,)), ((), ()))  # of a @ b


def tile(v, dim: int, shape):
    """A vector broadcast along `dim` of a 2-D `shape`."""
    return jax.lax.broadcast_in_dim(v, shape, (dim,))


def load_rows(ref, rows, ok, col0: int, d: int, wide=None):
    """`[len(rows), d]` tile of a 2-D ref (rows `rows`, columns `col0 .. col0 + d`), masked rows 0.

    With `wide` the tile is widened in registers first (8-bit codes -> fp16). Triton
    cannot splat a fill value into fp8, so those loads leave masked lanes
    undefined and the select after zeroes them.
    """
    shape = (rows.shape[0], d)
    r, c = tile(rows, 0, shape), tile(col0 + jax.lax.iota(jnp.int32, d), 1, shape)
    mask = tile(ok, 0, shape)
    if wide is None:
        return pltriton.load(ref.at[r, c], mask=mask, other=0)
    return jnp.where(mask, pltriton.load(ref.at[r, c], mask=mask).astype(wide), 0)


def logits(q, k, kpos, valid, s: int, logit_scale, bias_ref, bias_rows, bq: int, bk: int):
    """float32 logits `[bq, bk]` in base 2 (`logit_scale` includes log2(e)): scaled, biased, keys not `valid`
    (`[bk]`, or `[bq, bk]` with segments) at MASK_VALUE, keys past S at -inf."""
    if q.dtype == jnp.int8:  # exact int32 sums, the same integers the fp16 dot forms
        x = jax.lax.dot_general(q, k, NT, preferred_element_type=jnp.int32).astype(jnp.float32) * logit_scale
    else:
        x = jax.lax.dot_general(q, k, NT, preferred_element_type=jnp.float32) * logit_scale
    if bias_ref is not None:
        shape = (bq, bk)
        ok = tile(bias_rows >= 0, 0, shape) & tile(kpos < s, 1, shape)
        x = x + pltriton.load(bias_ref.at[tile(bias_rows, 0, shape), tile(kpos, 1, shape)], mask=ok,
                              other=0).astype(jnp.float32) * LOG2E
    x = jnp.where(valid if valid.ndim == 2 else tile(valid, 1, (bq, bk)), x, MASK_VALUE)
    return jnp.where(tile(kpos < s, 1, (bq, bk)), x, -jnp.inf)


class FlashProgram:
    """One program's refs and query rows. Built first thing in a kernel: it reads the program ids."""

    def __init__(self, refs, n_scales: int, *, s: int, n: int, d: int, bq: int, bk: int, has_bias: bool,
                 bias_batched: bool, segments: bool = False):
        qkv_ref, mask_ref, *rest = refs
        self.scale_refs = [rest.pop(0) for _ in range(n_scales)]  # [1] arrays, as stored
        bias_ref = rest.pop(0) if has_bias else None
        (o_ref,) = rest
        self.qkv_ref, self.mask_ref, self.bias_ref, self.o_ref = qkv_ref, mask_ref, bias_ref, o_ref
        self.s, self.n, self.d, self.bq, self.bk, self.bias_batched = s, n, d, bq, bk, bias_batched
        self.b, i = pl.program_id(0), pl.program_id(2)
        self.qpos = i * bq + jax.lax.iota(jnp.int32, bq)
        self.q_ok = self.qpos < s
        self.n_blocks = pl.cdiv(s, bk)
        # segment ids (several sequences packed in a row): each query row's, read once for every head and key block
        self.q_segment = (pltriton.load(mask_ref.at[self.b * s + self.qpos], mask=self.q_ok, other=0)
                          if segments else None)

    def row(self, vec, width: int):
        """A per-query-row vector broadcast to `[bq, width]`."""
        return tile(vec, 0, (self.bq, width))

    def empty_state(self):
        """A softmax's running max (-inf), sum (0) and context accumulator (0), in float32."""
        m0 = jnp.full((self.bq,), -jnp.inf, jnp.float32)
        l0 = jnp.zeros((self.bq,), jnp.float32)
        acc0 = jnp.zeros((self.bq, self.d), jnp.float32)
        return m0, l0, acc0

    def head(self, h, logit_scale, wide=None, qk_wide=None) -> FlashHead:
        """Head `h` of this program, its Q rows loaded (widened to `qk_wide`; V to `wide`)."""
        return FlashHead(self, h, logit_scale, wide, qk_wide)

    def run_heads(self, one_head: Callable, heads: int) -> None:
        """`one_head(h)` for each of this program's `heads` heads."""
        h0 = pl.program_id(1) * heads  # read outside the loop: the interpreter substitutes program ids at top level
        if heads == 1:
            one_head(h0)
        else:  # several heads per program: Triton's pipeliner can fetch the next head's rows during this one's math
            jax.lax.fori_loop(0, heads, lambda g, c: (one_head(h0 + g), c)[1], 0)


class FlashHead:
    """One head of a program: its Q rows, its key blocks on demand, its context store."""

    def __init__(self, prog: FlashProgram, h, logit_scale, wide, qk_wide):
        p, b, s, n, d = prog, prog.b, prog.s, prog.n, prog.d
        self.prog, self.h, self.logit_scale, self.wide, self.qk_wide = prog, h, logit_scale, wide, qk_wide
        self.q = load_rows(p.qkv_ref, b * s + p.qpos, p.q_ok, h * d, d, qk_wide)
        # bias is [Bb * N * S, S]; a batch of one is shared by every sequence
        self.bias_rows = (jnp.where(p.q_ok, ((b if p.bias_batched else 0) * n + h) * s + p.qpos, -1)
                          if p.bias_ref is not None else None)

    def keys(self, j):
        """Key block `j`: its base-2 logits against this head's Q rows `[bq, bk]`, and its V rows `[bk, d]`."""
        p, b, s, n, d, h = self.prog, self.prog.b, self.prog.s, self.prog.n, self.prog.d, self.h
        kpos = j * p.bk + jax.lax.iota(jnp.int32, p.bk)
        k_ok = kpos < s
        key = pltriton.load(p.mask_ref.at[b * s + kpos], mask=k_ok, other=0)
        valid = key != 0
        if p.q_segment is not None:  # its own segment's keys; a padding query (0) every real key (allowed_keys)
            shape = (p.bq, p.bk)
            qs, ks = tile(p.q_segment, 0, shape), tile(key, 1, shape)
            valid = tile(valid, 1, shape) & ((qs == ks) | (qs == 0))
        k = load_rows(p.qkv_ref, b * s + kpos, k_ok, (n + h) * d, d, self.qk_wide)
        v = load_rows(p.qkv_ref, b * s + kpos, k_ok, (2 * n + h) * d, d, self.wide)
        return logits(self.q, k, kpos, valid, s, self.logit_scale, p.bias_ref, self.bias_rows, p.bq, p.bk), v

    def store(self, out) -> None:
        """Writes this head's context rows `[bq, d]` (rows past S masked)."""
        p, d = self.prog, self.prog.d
        shape = (p.bq, d)
        rows, cols = tile(p.b * p.s + p.qpos, 0, shape), tile(self.h * d + jax.lax.iota(jnp.int32, d), 1, shape)
        pltriton.store(p.o_ref.at[rows, cols], out.astype(p.o_ref.dtype), mask=tile(p.q_ok, 0, shape))


def _attention_call(*args, kernel, out_shape, grid, config: AttentionConfig, interpret: bool, name: str):
    return pl.pallas_call(
        kernel,
        out_shape=out_shape,
        grid=grid,
        compiler_params=pltriton.CompilerParams(num_warps=config.num_warps, num_stages=config.num_stages),
        interpret=interpret,
        name=name,
    )(*args)


def call(kernel: Callable, qkv, key_mask, bias, scales, *, out_dtype, interpret: bool, name: str,
         config: AttentionConfig, **static):
    """Runs `kernel` (a module-level function taking the refs and `FlashProgram`'s keywords, `scale`, `heads`,
    `compiled` and `static`) over the packed `[B, S, 3, N, D]` QKV: returns the `[B, S, N, D]` context.

    `key_mask`: bool, or integer segment ids (`reference.allowed_keys`: each query sees its own segment's keys).
    """
    b, s, _, n, d = qkv.shape
    bq, bk = config.block_q, config.block_k
    args = [qkv.reshape(b * s, 3 * n * d), key_mask.reshape(b * s).astype(jnp.int32)]
    if scales is not None:
        args += scales
    if bias is not None:
        args.append(bias.reshape(-1, s))
    kernel = StaticPartial(kernel, s=s, n=n, d=d, bq=bq, bk=bk, has_bias=bias is not None,
                           segments=key_mask.dtype != jnp.bool_,
                           bias_batched=bias is not None and bias.shape[0] == b, heads=config.heads,
                           compiled=not interpret, **static)
    # one lowering per executable for all layers (_launch)
    out = launch(StaticPartial(_attention_call, kernel=kernel, out_shape=jax.ShapeDtypeStruct((b * s, n * d), out_dtype),
                               grid=(b, n // config.heads, pl.cdiv(s, bq)), config=config, interpret=interpret, name=name),
                 *args)
    return out.reshape(b, s, n, d)
