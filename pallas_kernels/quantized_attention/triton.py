"""Pallas-Triton flash attention on the packed 8-bit QKV tensor (`full_*` modes; padded batch, S up to 512).

The reference quantizes the *normalized* probabilities, so P needs each row's max and sum before it is
formed. Where one key block holds the whole sequence (`block_k >= S`) the kernel forms the logits once and
finishes the row in registers; longer sequences take two passes over the keys, the first for each row's max
and sum, the second to form P exactly, quantize it and multiply by V. The arithmetic is the same either way.
8-bit codes are widened to fp16 in registers: int8 and e4m3 values are exact in fp16 and the tensor core sums
their products in float32, so both products equal the reference's integer sums (up to 2^24, far above
64 * 127 * 255). With `int_qk` the int8 Q @ K^T runs as an int8 dot into int32, the same integers.
`flash.program` has the rest of the program: tiles, loads, logits, stores, the head loop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels._platform import interpreting, on_gpu
from pallas_kernels.flash.config import AttentionConfig, check_config, pick_config, unsupported
from pallas_kernels.flash.program import LOG2E, NN, FlashProgram, call
from pallas_kernels.quant_kernel import RNE_SHIFT, quantize_in_kernel, round_half_even_in_kernel
from pallas_kernels.quant_types import QTYPES
from pallas_kernels.quantized_attention.base import fixed_probs_scale
from pallas_kernels.triton_math import exp2, fma


def probability_codes(e, scale, compiled: bool):
    """`round_half_even(e * scale)` as float16 codes, for `0 <= e * scale < 2^22`.

    The product rounded straight onto float32's integer grid by `fma(e, scale, 1.5 * 2^23)`, then the shift
    taken off: an FFMA and an FADD where a multiply and `round_half_even_in_kernel`'s two adds issue three
    instructions and round twice (the two differ only where the float32 product lands on a rounding tie).
    The interpreter runs the same two steps, its multiply-add as XLA's (`triton_math.fma`) and a barrier
    keeping XLA from folding the subtraction into the add.
    """
    shifted = fma(e, scale, RNE_SHIFT, compiled)
    if not compiled:
        shifted = jax.lax.optimization_barrier(shifted)
    return (shifted - RNE_SHIFT).astype(jnp.float16)


def _kernel(*refs, s, n, d, bq, bk, scale, bias_batched, has_bias, probs, p_qtype, out_qtype=None, int_qk=False,
            segments=False, heads=1, compiled=True):
    prog = FlashProgram(refs, 6, s=s, n=n, d=d, bq=bq, bk=bk, has_bias=has_bias, bias_batched=bias_batched,
                        segments=segments)
    wide = jnp.float16
    qk_wide = None if int_qk else wide
    # [1] arrays as stored (no per-call stack of them, a launch each): Q, K, V, P, 1 / P, output
    q_scale, k_scale, v_scale, p_scale, inv_p_scale, out_scale = (r[0] for r in prog.scale_refs)
    logit_scale = q_scale * k_scale * (scale * LOG2E)  # base-2 logits
    inv_out_scale = 1.0 / out_scale  # within 2 ulps (Triton's division): a context code moves only at a tie
    row = prog.row
    m0, l0, acc0 = prog.empty_state()

    def one_head(h):
        head = prog.head(h, logit_scale, wide, qk_wide)

        def stats(j, carry):
            m, total = carry
            x, _ = head.keys(j)
            m_new = jnp.maximum(m, jnp.max(x, axis=1))
            return m_new, total * exp2(m - m_new, compiled) + jnp.sum(exp2(x - row(m_new, bk), compiled), axis=1)

        def product(acc, e, v, inv_total):  # P from the exponentials and the row's 1 / sum, quantized, times V
            # P / P's scale in one multiply per element: the row's 1 / sum times 1 / P's scale
            to_codes = row(inv_total if probs == "float" else inv_total * inv_p_scale, bk)
            if probs == "uint8" and p_qtype == "uint8":  # y >= 0; the fixed scale keeps y <= 255 (1 + 2^-22)
                codes = probability_codes(e, to_codes, compiled)
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
            return acc + jax.lax.dot_general(codes, v, NN, preferred_element_type=jnp.float32)

        if prog.n_blocks == 1:  # the whole row in one block: logits formed once, the same arithmetic as two passes
            x, v = head.keys(0)
            e = exp2(x - row(jnp.max(x, axis=1), bk), compiled)
            acc = product(acc0, e, v, 1.0 / jnp.sum(e, axis=1))
        else:
            m, total = jax.lax.fori_loop(0, prog.n_blocks, stats, (m0, l0))
            inv_total = 1.0 / total

            def second_pass(j, acc):
                x, v = head.keys(j)
                return product(acc, exp2(x - row(m, bk), compiled), v, inv_total)

            acc = jax.lax.fori_loop(0, prog.n_blocks, second_pass, acc0)
        out = acc * (v_scale if probs == "float" else p_scale * v_scale)
        if out_qtype is not None:  # the context as the 8-bit codes the output projection reads
            out = quantize_in_kernel(out, inv_out_scale, out_qtype)
        head.store(out)

    prog.run_heads(one_head, heads)


def quantized_attention_packed_triton(qkv_q, q_scale, k_scale, v_scale, key_mask, bias=None, *, scale: float,
                                      qtype: str, probs: str = "uint8", probs_scale=None, out_dtype=jnp.float32,
                                      out_scale=None, config: AttentionConfig | None = None,
                                      interpret: bool = False) -> jax.Array:
    """`quantized_attention_packed_reference` as one Pallas-Triton kernel (GPU, or `interpret` on a CPU).

    `config` overrides `flash.config.pick_config`'s tiles (for sweeps and tests).
    """
    interpret = interpret or interpreting()
    if not interpret and not on_gpu():
        raise NotImplementedError("triton quantized attention runs on a GPU (or with interpret=True)")
    if (why := unsupported(qkv_q, bias, qtype=qtype)) is not None:
        raise NotImplementedError(f"triton quantized attention: {why}")
    f32 = lambda v: jnp.asarray(v, jnp.float32).reshape(1)
    p_qtype: str | None
    if probs == "int8":  # a calibrated scale: its reciprocal is the one per-call computation left (naive mode)
        p_qtype, p_scale = qtype, f32(probs_scale)
        inv_p_scale = 1.0 / p_scale
    else:  # fixed: constants, the reciprocal exact in float64 before the cast
        p_qtype = None if probs == "float" else ("uint8" if qtype == "int8" else "fp8")
        fixed = 1.0 if probs == "float" else fixed_probs_scale(qtype)
        p_scale, inv_p_scale = f32(np.float32(fixed)), f32(np.float32(1.0 / fixed))
    scales = [f32(q_scale), f32(k_scale), f32(v_scale), p_scale, inv_p_scale, f32(1.0 if out_scale is None else out_scale)]
    out_qtype = None if out_scale is None else qtype
    b, s, _, n, d = qkv_q.shape
    config = config or pick_config(s, d, qtype, n=n, b=b)
    check_config(config, n, d, qtype=qtype)
    return call(_kernel, qkv_q, key_mask, bias, scales, out_dtype=QTYPES[qtype][0] if out_qtype else out_dtype,
                interpret=interpret, config=config, name="flash_attention_8bit", scale=float(scale), probs=probs,
                p_qtype=p_qtype, out_qtype=out_qtype, int_qk=config.int_qk)
