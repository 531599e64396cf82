"""Pallas-Triton flash attention on the packed QKV tensor, float Q/K/V (padded batch, S up to 512).

One pass over the keys with the online softmax: each key block's exponentials are taken against the
running row max, and what was summed under an older max is rescaled (`flash.program` has the rest of the
program: tiles, loads, logits, stores, the head loop).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels._platform import interpreting, on_gpu
from pallas_kernels.flash.config import AttentionConfig, check_config, pick_config, unsupported
from pallas_kernels.flash.program import LOG2E, NN, FlashProgram, call
from pallas_kernels.triton_math import exp2


def _kernel(*refs, s, n, d, bq, bk, scale, bias_batched, has_bias, segments=False, heads=1, compiled=True):
    prog = FlashProgram(refs, 0, s=s, n=n, d=d, bq=bq, bk=bk, has_bias=has_bias, bias_batched=bias_batched,
                        segments=segments)
    logit_scale = scale * LOG2E  # base-2 logits
    m0, l0, acc0 = prog.empty_state()

    def one_head(h):
        head = prog.head(h, logit_scale)

        def step(j, carry):  # online softmax: rescale what was summed under the old max
            m, total, acc = carry
            x, v = head.keys(j)
            m_new = jnp.maximum(m, jnp.max(x, axis=1))
            alpha = exp2(m - m_new, compiled)
            p = exp2(x - prog.row(m_new, bk), compiled)
            acc = acc * prog.row(alpha, d) + jax.lax.dot_general(p.astype(v.dtype), v, NN,
                                                                 preferred_element_type=jnp.float32)
            return m_new, total * alpha + jnp.sum(p, axis=1), acc

        _, total, acc = jax.lax.fori_loop(0, prog.n_blocks, step, (m0, l0, acc0))
        head.store(acc / prog.row(total, d))

    prog.run_heads(one_head, heads)


def attention_packed_triton(qkv, key_mask, bias=None, *, scale: float, out_dtype=None,
                            config: AttentionConfig | None = None, interpret: bool = False) -> jax.Array:
    """`attention_packed_reference` as one Pallas-Triton kernel (GPU, or `interpret` on a CPU).

    `config` overrides `flash.config.pick_config`'s tiles (for sweeps and tests).
    """
    interpret = interpret or interpreting()
    if not interpret and not on_gpu():
        raise NotImplementedError("triton attention runs on a GPU (or with interpret=True)")
    if (why := unsupported(qkv, bias)) is not None:
        raise NotImplementedError(f"triton attention: {why}")
    b, s, _, n, d = qkv.shape
    config = config or pick_config(s, d, n=n, b=b)
    check_config(config, n, d)
    return call(_kernel, qkv, key_mask, bias, None, out_dtype=out_dtype or qkv.dtype, interpret=interpret,
                config=config, name="flash_attention", scale=float(scale))
