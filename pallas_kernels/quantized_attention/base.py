"""Reference for attention on 8-bit Q, K, V (the `full_*` modes).

    logits = (q_q . k_q) * q_scale * k_scale * scale     (exact integer sums for int8)
    p      = softmax(logits + bias, masked)              (float32)
    out    = (P_q . v_q) * p_scale * v_scale             (P quantized per `probs`)
             [-> quantized with `out_scale`, the output projection's 8-bit input]

`probs` picks the treatment of the probabilities, which SAMP's appendix names
the main source of Fully-Quant's accuracy loss:
  "int8"  naive: symmetric int8 with a calibrated scale; P >= 0 uses codes
          0..127 only, half the format.
  "uint8" the whole 8-bit range: P in [0, 1] maps onto 0..255 with the fixed
          scale 1/255 (no calibration); for fp8, onto e4m3's 0..448.
  "float" P stays in float32 and V is dequantized for the second product.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pallas_kernels.flash.reference import masked_softmax
from pallas_kernels.quant_types import exact_int_einsum, qmax, quantize_values

PROBS_MODES = ("int8", "uint8", "float")


def _product(spec: str, a: jax.Array, b: jax.Array, contract_len: int, max_code_product: float, qtype: str):
    """Float32 result of an attention product of 8-bit codes: exact integers for int8, fp8 dot otherwise."""
    if qtype == "fp8":
        return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)
    return exact_int_einsum(spec, a, b, contract_len, max_code_product)


def fixed_probs_scale(qtype: str) -> float:
    """Scale that maps P's full range [0, 1] onto the format's largest code."""
    return 1.0 / (qmax("uint8") if qtype == "int8" else qmax("fp8"))


def quantized_attention_reference(
    q_q: jax.Array,
    k_q: jax.Array,
    v_q: jax.Array,
    q_scale: jax.Array,
    k_scale: jax.Array,
    v_scale: jax.Array,
    key_mask: jax.Array,
    bias: jax.Array | None = None,
    *,
    scale: float,
    qtype: str,
    probs: str = "uint8",
    probs_scale: jax.Array | None = None,
    out_dtype=jnp.float32,
    out_scale: jax.Array | None = None,
) -> jax.Array:
    """Multi-head attention on quantized `[B, S, N, D]` Q, K, V; returns `[B, S, N, D]`.

    With `out_scale` the result is `qtype` codes (`quantize_values(out, out_scale)`).
    """
    logits = _product("bqnd,bknd->bnqk", q_q, k_q, q_q.shape[3], qmax("int8") ** 2, qtype)
    p = masked_softmax(logits * (q_scale * k_scale * scale).astype(jnp.float32), key_mask, bias)
    if probs == "float":
        v = v_q.astype(jnp.float32) * v_scale.astype(jnp.float32)
        out = jnp.einsum("bnqk,bknd->bqnd", p, v, precision=jax.lax.Precision.HIGHEST)
        return _output(out, out_dtype, out_scale, qtype)
    if probs == "uint8":
        p_qtype = "uint8" if qtype == "int8" else "fp8"
        p_scale = jnp.float32(fixed_probs_scale(qtype))
    else:  # naive
        if probs_scale is None:
            raise ValueError("quantized_attention_reference: probs='int8' (naive) needs a calibrated probs_scale")
        p_qtype = qtype
        p_scale = probs_scale.astype(jnp.float32)
    p_q = quantize_values(p, p_scale, p_qtype)
    out = _product("bnqk,bknd->bqnd", p_q, v_q, v_q.shape[1], qmax(p_qtype) * qmax("int8"), qtype)
    return _output(out * (p_scale * v_scale).astype(jnp.float32), out_dtype, out_scale, qtype)


def _output(out: jax.Array, out_dtype, out_scale, qtype: str) -> jax.Array:
    return out.astype(out_dtype) if out_scale is None else quantize_values(out, out_scale, qtype)


def quantized_attention_packed_reference(qkv_q: jax.Array, q_scale, k_scale, v_scale, key_mask, bias=None, *,
                                         scale: float, qtype: str, probs: str = "uint8", probs_scale=None,
                                         out_dtype=jnp.float32, out_scale=None) -> jax.Array:
    """`quantized_attention_reference` on the requantized QKV output viewed as `[B, S, 3, N, D]`."""
    return quantized_attention_reference(
        qkv_q[:, :, 0], qkv_q[:, :, 1], qkv_q[:, :, 2], q_scale, k_scale, v_scale, key_mask, bias, scale=scale,
        qtype=qtype, probs=probs, probs_scale=probs_scale, out_dtype=out_dtype, out_scale=out_scale)
