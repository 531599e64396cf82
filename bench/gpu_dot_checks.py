"""Checks XLA's 8-bit dots on the current backend against exact float64 products.

    python bench/gpu_dot_checks.py

For int8/uint8 the products must be exact; for fp8 e4m3 the float64 product of
the fp8 values is the reference (a float32 accumulator should land near 1e-7
relative). Also checks the float32 -> e4m3 conversion against the CPU's.
Prints one line per case; "BAD" marks a case off by more than its tolerance.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # `python bench/NAME.py` puts bench/ first on the path, where its module names would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow installed ones: import `bench.*` instead

import jax
import jax.numpy as jnp
import numpy as np


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def main() -> None:
    dev = jax.devices()[0]
    cpu = jax.devices("cpu")[0]
    print(f"backend {dev.platform} ({dev.device_kind}), jax {jax.__version__}")
    rng = np.random.default_rng(0)
    for k in (1, 2, 3, 4, 5, 7, 8, 16, 33, 128):
        for lhs_t in (np.int8, np.uint8):
            a = rng.integers(0 if lhs_t == np.uint8 else -127, 128, (2, 3, 5, k)).astype(lhs_t)
            b = rng.integers(-127, 128, (2, k, 3, 8)).astype(np.int8)
            exact = np.einsum("bnqk,bknd->bqnd", a.astype(np.int64), b.astype(np.int64))
            f = jax.jit(lambda x, y: jnp.einsum("bnqk,bknd->bqnd", x, y, preferred_element_type=jnp.int32))
            out = np.asarray(f(jnp.asarray(a), jnp.asarray(b)))
            ok = np.array_equal(out, exact)
            ratio = float(np.median(out[exact != 0] / exact[exact != 0])) if (exact != 0).any() else 1.0
            print(f"{'ok ' if ok else 'BAD'} int einsum {np.dtype(lhs_t).name}xint8 K={k}: exact={ok} median ratio {ratio:.3f}")
            x = rng.integers(-127, 128, (7, k)).astype(np.int8)
            w = rng.integers(-127, 128, (k, 9)).astype(np.int8)
            out2 = np.asarray(jax.jit(lambda x, w: jnp.dot(x, w, preferred_element_type=jnp.int32))(x, w))
            ok2 = np.array_equal(out2, x.astype(np.int64) @ w.astype(np.int64))
            if lhs_t == np.int8:
                print(f"{'ok ' if ok2 else 'BAD'} int8 dot [7,{k}]x[{k},9]: exact={ok2}")
    for k in (16, 64, 384, 1536):
        a = jnp.asarray(rng.standard_normal((64, k)) * 30, jnp.float8_e4m3fn)
        w = jnp.asarray(rng.standard_normal((k, 96)) * 30, jnp.float8_e4m3fn)
        ref = np.asarray(a, np.float64) @ np.asarray(w, np.float64)
        out = jax.jit(lambda a, w: jnp.dot(a, w, preferred_element_type=jnp.float32))(a, w)
        e = rel(out, ref)
        print(f"{'ok ' if e < 1e-5 else 'BAD'} fp8 dot K={k}: rel err {e:.2e}")
        q = jnp.asarray(rng.standard_normal((2, 16, 4, k // 16 if k >= 64 else 16)) * 30, jnp.float8_e4m3fn)
        ref = np.einsum("bqnd,bknd->bnqk", np.asarray(q, np.float64), np.asarray(q, np.float64))
        out = jax.jit(lambda q: jnp.einsum("bqnd,bknd->bnqk", q, q, preferred_element_type=jnp.float32))(q)
        e = rel(out, ref)
        print(f"{'ok ' if e < 1e-5 else 'BAD'} fp8 batched einsum D={q.shape[-1]}: rel err {e:.2e}")
    x = (rng.standard_normal(100000) * 100).astype(np.float32)
    on_dev = np.asarray(jax.jit(lambda v: jnp.clip(v, -448, 448).astype(jnp.float8_e4m3fn))(x)).astype(np.float32)
    with jax.default_device(cpu):
        on_cpu = np.asarray(jax.jit(lambda v: jnp.clip(v, -448, 448).astype(jnp.float8_e4m3fn))(x)).astype(np.float32)
    diff = int(np.sum(on_dev != on_cpu))
    print(f"{'ok ' if diff == 0 else 'BAD'} f32->e4m3 conversion: {diff} of {x.size} values differ from the CPU's")


def op_checks() -> None:
    """The 8-bit ops on the default backend against the same ops on the CPU."""
    from pallas_kernels import quantized_attention, quantized_matmul
    from pallas_kernels.quant_types import dequantize_values

    cpu = jax.devices("cpu")[0]
    rng = np.random.default_rng(1)

    def both(fn, *args):
        out = np.asarray(jax.jit(fn)(*args), np.float64)
        with jax.default_device(cpu):
            ref = np.asarray(jax.jit(fn)(*[jax.device_put(a, cpu) for a in args]), np.float64)
        return rel(out, ref)

    for qtype, dt in (("int8", jnp.int8), ("fp8", jnp.float8_e4m3fn)):
        x = jnp.asarray(np.clip(rng.standard_normal((64, 96)) * 40, -127, 127), dt)
        w = jnp.asarray(np.clip(rng.standard_normal((96, 288)) * 40, -127, 127), dt)
        xs, ws, b = jnp.float32(0.02), jnp.asarray(rng.uniform(1e-3, 1e-2, (1, 288)), jnp.float32), jnp.zeros(288)
        out_scale = jnp.repeat(jnp.asarray([0.05, 0.08, 0.11], jnp.float32), 96)
        e1 = both(lambda x, w: quantized_matmul(x, xs, w, ws, b, qtype=qtype), x, w)
        e2 = both(lambda x, w: dequantize_values(quantized_matmul(x, xs, w, ws, b, qtype=qtype, out_scale=out_scale),
                                                 jnp.float32(1)), x, w)
        print(f"quantized_matmul {qtype}: float out {e1:.2e}, requantized out (per-column scale) {e2:.2e}")
        q, k, v = (jnp.asarray(np.clip(rng.standard_normal((2, 32, 4, 16)) * 40, -127, 127), dt) for _ in range(3))
        mask = jnp.ones((2, 32), bool)
        for probs in ("uint8", "int8", "float"):
            e = both(lambda q, k, v: quantized_attention(q, k, v, jnp.float32(0.01), jnp.float32(0.01), jnp.float32(0.05),
                                                        mask, scale=0.25, qtype=qtype, probs=probs,
                                                        probs_scale=jnp.float32(1 / 127)), q, k, v)
            print(f"quantized_attention {qtype} probs={probs}: {e:.2e}")


if __name__ == "__main__":
    main()
    op_checks()
