"""Each kernel against XLA and cuBLAS on BERT-base shapes (run on the GPU machine).

    python bench/kernels.py [--sections gemm,gemm-rows,copy,layer_norm,embedding,attention] [--sweep]
                            [--attention-shape BxSxNxD] [--gemm-rows 128,1024] [--out DIR]

Writes one JSON record per measurement to `DIR/kernels.json` (default
bench/results): implementation, kernel, shape, median ms, derived TOPS or GB/s,
device, date, commit. Every kernel output is checked against its XLA
reference in the same run before it is timed. Prints a short table last.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

if not __package__:  # `python bench/NAME.py` puts bench/ first on the path, where its module names would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow installed ones: import `bench.*` instead

import jax
import jax.numpy as jnp
import numpy as np

from bench._timing import commit, device_name, time_jax, time_torch, today, write_records
from pallas_kernels._platform import device_properties
from pallas_kernels.gemm.config import GemmConfig, fit_shared_memory
from pallas_kernels.gemm.tile_choice import GemmProblem, choose_tiles
from pallas_kernels.quantized_matmul.base import pack_weight, quantized_matmul_reference
from pallas_kernels.testing import rel_error

GEMM_SHAPES = [  # (M, K, N, activation): 128 x 128 tokens through BERT-base's FFN1, FFN2, QKV
    (16384, 768, 3072, "gelu"),
    (16384, 3072, 768, None),
    (16384, 768, 2304, None),
]
RECORDS: list[dict] = []
OUT_DIR: list[Path] = []


def record(kernel: str, implementation: str, shape, ms: float, **extra) -> dict:
    rec = dict(kernel=kernel, implementation=implementation, shape=list(shape), median_ms=round(ms, 5),
               device=device_name(), date=today(), commit=commit(), **extra)
    RECORDS.append(rec)
    if OUT_DIR:
        write_records(RECORDS, OUT_DIR[0] / "kernels.json")  # kept even if a later section fails
    print(f"  {kernel:<12} {implementation:<34} {str(tuple(shape)):<22} {ms:8.4f} ms "
          + " ".join(f"{k}={v}" for k, v in extra.items() if k in ("tops", "gbps", "rel_err", "equal")), flush=True)
    return rec


def _gemm_operands(m, k, n, seed=0):
    rng = np.random.default_rng(seed)
    x8 = jnp.asarray(rng.integers(-127, 128, (m, k)), jnp.int8)
    w8 = jnp.asarray(rng.integers(-127, 128, (k, n)), jnp.int8)
    xf = jnp.asarray(rng.standard_normal((m, k)), jnp.bfloat16)
    wf = jnp.asarray(rng.standard_normal((k, n)) / np.sqrt(k), jnp.bfloat16)
    ws = jnp.asarray(rng.uniform(0.5, 2, (1, n)) / 127, jnp.float32)
    bias = jnp.asarray(rng.standard_normal(n), jnp.float32)
    return x8, w8, xf, wf, jnp.float32(1 / (127 * np.sqrt(k))), ws, bias


def _picked(m: int, n: int, k: int, in_dtype, out_dtype, activation=None) -> GemmConfig:
    """The configuration the GEMM's tile choice picks on this device."""
    choice = choose_tiles(GemmProblem(m, n, k, in_dtype, out_dtype, activation), device_properties())
    assert choice is not None, (m, n, k)
    return choice.config


def bench_gemm(sweep: bool) -> None:
    from pallas_kernels.quantized_matmul import mosaic

    for m, k, n, act in GEMM_SHAPES:
        ops = 2 * m * n * k
        tops = lambda ms: round(ops / (ms * 1e-3) / 1e12, 1)
        x8, w8, xf, wf, xs, ws, bias = _gemm_operands(m, k, n)
        xq8, wq8 = x8.astype(jnp.float32).astype(jnp.float8_e4m3fn), w8.astype(jnp.float32).astype(jnp.float8_e4m3fn)
        shape = (m, k, n)
        f = jax.jit(lambda a, b: jnp.dot(a, b))
        record("gemm", "xla bf16 dot", shape, ms := time_jax(f, xf, wf), tops=tops(ms))
        f = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.int32))
        record("gemm", "xla int8 dot -> int32", shape, ms := time_jax(f, x8, w8), tops=tops(ms))
        f = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.bfloat16))
        record("gemm", "xla fp8 dot -> bf16", shape, ms := time_jax(f, xq8, wq8), tops=tops(ms))
        for qt, (xa, wa) in (("int8", (x8, w8)), ("fp8", (xq8, wq8))):
            ref_fn = jax.jit(lambda a, b, qt=qt: quantized_matmul_reference(
                a, xs, b, ws, bias, qtype=qt, activation=act, out_dtype=jnp.bfloat16))
            ref = ref_fn(xa, wa)
            record("gemm", f"xla {qt} + epilogue -> bf16", shape, ms := time_jax(ref_fn, xa, wa), tops=tops(ms))
            # the encoder packs each weight once: K-major codes and the epilogue vectors
            variants = [("-> bf16", act, None), (f"-> {qt} (requantized)", act, jnp.float32(0.05))]
            if act is not None:  # what the activation costs in the epilogue
                variants.append((f"-> {qt} (requantized, no activation)", None, jnp.float32(0.05)))
            for label, a_fn, out_scale in variants:
                packed = pack_weight(wa, ws, bias, x_scale=xs, out_scale=out_scale, qtype=qt)
                fn = jax.jit(lambda a, p, a_fn=a_fn: mosaic.quantized_matmul_mosaic_packed(
                    a, p, activation=a_fn, out_dtype=jnp.bfloat16))
                out = fn(xa, packed)
                want = ref if out_scale is None else quantized_matmul_reference(
                    xa, xs, wa, ws, bias, qtype=qt, activation=a_fn, out_scale=out_scale)
                err = rel_error(np.asarray(out, np.float32), np.asarray(want, np.float32))
                cfg = _picked(m, n, k, xa.dtype, out.dtype, a_fn)
                record("gemm", f"mosaic {qt} + epilogue {label}", shape, ms := time_jax(fn, xa, packed),
                       tops=tops(ms), rel_err=f"{err:.1e}", config=dataclasses.asdict(cfg))
        if sweep:
            _sweep(m, k, n, act, x8, w8, xs, ws, bias, tops)
        try:
            import torch
        except ImportError:
            continue
        a8 = torch.randint(-127, 128, (m, k), dtype=torch.int8, device="cuda")
        # cuBLASLt's int8 kernels take B column-major (its "TN" layout); row-major B falls off them
        b8 = torch.randint(-127, 128, (n, k), dtype=torch.int8, device="cuda").t()
        record("gemm", "torch._int_mm (cuBLASLt int8 -> int32)", shape,
               ms := time_torch(lambda: torch._int_mm(a8, b8)), tops=tops(ms))
        ah, bh = a8.to(torch.bfloat16), b8.to(torch.bfloat16)
        record("gemm", "torch bf16 matmul (cuBLAS)", shape, ms := time_torch(lambda: ah @ bh), tops=tops(ms))


# Sweep candidates: (schedule, tile_m, tile_n, tile_k, stages, wg_axis). Cooperative tiles are split between the
# two compute warpgroups along wg_axis; ping-pong tiles are one warpgroup's. Stages beyond shared memory are cut
# to what fits (the tile choice's rule), so the bf16 and int8 outputs may run different depths.
SWEEP_TILES = (
    ("cooperative", 128, 128, 128, 4, "n"), ("cooperative", 128, 64, 128, 4, "n"), ("cooperative", 64, 128, 128, 4, "m"),
    ("cooperative", 64, 256, 64, 4, "m"),
    ("pingpong", 128, 128, 128, 6, "n"), ("pingpong", 128, 128, 128, 4, "n"), ("pingpong", 128, 128, 64, 12, "n"),
    ("pingpong", 128, 128, 64, 8, "n"), ("pingpong", 128, 64, 128, 8, "n"), ("pingpong", 64, 128, 128, 8, "n"),
    ("pingpong", 128, 256, 64, 4, "n"),
)
def _sweep(m, k, n, act, x8, w8, xs, ws, bias, tops) -> None:
    """Tile configurations and schedules of one GEMM, with a bf16 output and the requantized int8 one the 8-bit
    plans use; each output is compared code for code with the reference before it is timed."""
    from pallas_kernels.quantized_matmul import mosaic

    for out_label, out_scale, out_bytes in (("bf16", None, 2), ("int8", jnp.float32(0.05), 1)):
        packed = pack_weight(w8, ws, bias, x_scale=xs, out_scale=out_scale, qtype="int8")
        ref = np.asarray(quantized_matmul_reference(x8, xs, w8, ws, bias, qtype="int8", activation=act,
                                                    out_dtype=jnp.bfloat16, out_scale=out_scale), np.float32)
        for schedule, tm, tn, tk, stages, wg in SWEEP_TILES:
            cfg = GemmConfig(tile_m=tm, tile_n=tn, tile_k=tk, max_concurrent_steps=stages,
                                          wg_axis=wg, schedule=schedule)
            cm, cn = cfg.cta_tile
            if m % cm or n % cn or k % tk:
                continue
            cfg = fit_shared_memory(cfg, out_bytes, 1, device_properties().smem_per_block)
            fn = jax.jit(lambda a, p, cfg=cfg: mosaic.quantized_matmul_mosaic_packed(
                a, p, activation=act, out_dtype=jnp.bfloat16, config=cfg))
            try:
                out = np.asarray(fn(x8, packed), np.float32)
                ms = time_jax(fn, x8, packed, iterations=10)
            except Exception as e:  # a configuration Mosaic rejects is recorded, not fatal
                print(f"  sweep {cfg}: {type(e).__name__}: {str(e)[:160]}")
                continue
            record("gemm-sweep", f"mosaic int8 + epilogue -> {out_label}", (m, k, n), ms, tops=tops(ms),
                   rel_err=f"{rel_error(out, ref):.1e}", equal=round(float(np.mean(out == ref)), 5),
                   config=dataclasses.asdict(cfg))


# BERT-base's four GEMMs as the plans call them: (name, K, N, activation, partial sums). The attention-out and
# FFN2 GEMMs write partial products (K split on few rows, the bias in the first) for the residual LayerNorm to
# sum; full_int8 requantizes QKV and FFN1 for the next kernel.
LAYER_GEMMS = (("qkv", 768, 2304, None, False), ("attn-out", 768, 768, None, True),
               ("ffn1", 768, 3072, "gelu", False), ("ffn2", 3072, 768, None, True))
# (schedule, tile_m, tile_n, wg_axis) for the rows sweep; stages are as many as fit (up to 8)
ROWS_SWEEP = (("cooperative", 128, 128, "n"), ("cooperative", 64, 128, "m"), ("cooperative", 64, 64, "m"),
              ("pingpong", 128, 128, "n"), ("pingpong", 128, 64, "n"), ("pingpong", 64, 128, "n"),
              ("pingpong", 64, 64, "n"))


def bench_gemm_rows(rows: list[int], sweep: bool) -> None:
    """The layer's GEMMs at few rows (batch 1-32 tokens): the fp16 plan's (XLA: cuBLAS or Triton, plus the
    GELU fusion) against the Mosaic float GEMM, and the full_int8 plan's 8-bit GEMM; with `sweep`, every
    `ROWS_SWEEP` tile on both Mosaic GEMMs. Device time (all the kernels one call launches)."""
    from pallas_kernels.matmul.base import matmul_reference
    from pallas_kernels.matmul.mosaic import matmul_mosaic
    from pallas_kernels.quantized_matmul import mosaic

    for m in rows:
        for name, k, n, act, partials in LAYER_GEMMS:
            shape = (m, k, n)
            gbps = lambda ms, nbytes: round(nbytes / (ms * 1e-3) / 1e9, 1)
            x8, w8, xf, wf, xs, ws, bias = _gemm_operands(m, k, n)
            xh, wh = xf.astype(jnp.float16), wf.astype(jnp.float16)
            b = bias
            ref_fn = jax.jit(lambda a, w, b=b, act=act: matmul_reference(a, w, b, activation=act))
            ref = np.asarray(ref_fn(xh, wh), np.float32)
            record("gemm-rows", f"xla fp16 {name}", shape, ms := time_jax(ref_fn, xh, wh), gbps=gbps(ms, 2 * k * n))
            out_scale = None if partials else jnp.float32(0.05)
            packed = pack_weight(w8, ws, b, x_scale=xs, out_scale=out_scale, qtype="int8")
            ref8 = np.asarray(quantized_matmul_reference(x8, xs, w8, ws, b, qtype="int8", activation=act,
                                                         out_dtype=jnp.float16, out_scale=out_scale), np.float32)
            configs = [None]
            if sweep:
                configs += [GemmConfig(tile_m=tm, tile_n=tn, max_concurrent_steps=8, wg_axis=wg, schedule=sc)
                            for sc, tm, tn, wg in ROWS_SWEEP]
            for cfg in configs:
                for label, in_bytes, out_bytes in (("fp16", 2, 2), ("int8", 1, 1 if out_scale is not None else 2)):
                    if cfg is None:
                        c = _picked(m, n, k, "float16" if in_bytes == 2 else "int8",
                                    "float16" if out_bytes == 2 else "int8")
                    else:
                        c = dataclasses.replace(cfg, tile_k=128 // in_bytes)
                        cm, cn = c.cta_tile
                        if m % cm or n % cn:
                            continue
                        c = fit_shared_memory(c, out_bytes, in_bytes, device_properties().smem_per_block)
                    if label == "fp16":
                        fn = jax.jit(lambda a, w, c=c, b=b, act=act: matmul_mosaic(a, w, b, activation=act, config=c))
                        args, want = (xh, wh), ref
                    else:
                        fn = jax.jit(lambda a, p, c=c, act=act: mosaic.quantized_matmul_mosaic_packed(
                            a, p, activation=act, out_dtype=jnp.float16, config=c))
                        args, want = (x8, packed), ref8
                    try:
                        out = np.asarray(fn(*args), np.float32)
                        ms = time_jax(fn, *args, iterations=20)
                    except Exception as e:  # a configuration Mosaic rejects is recorded, not fatal
                        print(f"  {name} {shape} {c}: {type(e).__name__}: {str(e)[:160]}")
                        continue
                    kind = "gemm-rows" if cfg is None else "gemm-rows-sweep"
                    record(kind, f"mosaic {label} {name}", shape, ms, gbps=gbps(ms, in_bytes * k * n),
                           rel_err=f"{rel_error(out, want):.1e}", config=dataclasses.asdict(c))
                    if cfg is None and partials:  # as the plans call it: partial products for the LayerNorm to sum
                        _rows_partials(label, name, shape, args, want, in_bytes * k * n, b)


def _rows_partials(label: str, name: str, shape, args, want, weight_bytes: int, bias) -> None:
    """The GEMM with `partial_sums=True`: K split over the SMs where its tiles are few (the bias in the first
    part); the record's `splits` is P, and its check sums the partials."""
    from pallas_kernels.matmul.mosaic import matmul_mosaic
    from pallas_kernels.quantized_matmul import mosaic

    if label == "fp16":
        fn = jax.jit(lambda a, w: matmul_mosaic(a, w, bias, partial_sums=True))
    else:
        fn = jax.jit(lambda a, p: mosaic.quantized_matmul_mosaic_packed(a, p, out_dtype=jnp.float16,
                                                                        partial_sums=True))
    parts = fn(*args)
    ms = time_jax(fn, *args, iterations=20)
    record("gemm-rows", f"mosaic {label} {name} partial sums", shape, ms, gbps=round(weight_bytes / ms / 1e6, 1),
           splits=int(parts.shape[0]), rel_err=f"{rel_error(np.asarray(parts, np.float32).sum(axis=0), want):.1e}")


def bench_copy() -> float:
    """Device-to-device copy bandwidth (bytes read + written): the ceiling for the memory-bound kernels."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((16384, 8192)), jnp.bfloat16)
    f = jax.jit(lambda a: a + jnp.bfloat16(1))
    ms = time_jax(f, x)
    gbps = round(2 * x.size * 2 / (ms * 1e-3) / 1e9, 1)
    record("copy", "xla elementwise (read + write)", x.shape, ms, gbps=gbps)
    return gbps


def bench_layer_norm(sweep: bool = False, m: int = 16384) -> None:
    """Residual LayerNorm on 128 x 128 BERT-base tokens: x + bias + residual in bf16, bf16 out; and the full_*
    modes' form (fp16 x, 8-bit residual in, 8-bit codes out), with a (block_rows, num_warps) sweep."""
    import pallas_kernels as ops
    from pallas_kernels.layer_norm.triton import residual_layer_norm_triton

    rng = np.random.default_rng(0)
    h = 768
    x, res = (jnp.asarray(rng.standard_normal((m, h)), jnp.bfloat16) for _ in range(2))
    xb, scale, bias = (jnp.asarray(rng.standard_normal(h), jnp.float32) for _ in range(3))
    moved = 3 * m * h * 2  # read x and residual, write the output
    ref = None
    for impl in ("xla", "triton"):
        fn = jax.jit(lambda a, r, impl=impl: ops.residual_layer_norm(a, r, scale, bias, x_bias=xb, eps=1e-12,
                                                                     implementation=impl))
        out = fn(x, res)
        ref = out if ref is None else ref
        err = rel_error(np.asarray(out, np.float32), np.asarray(ref, np.float32))
        ms = time_jax(fn, x, res)
        record("layer_norm", impl, (m, h), ms, gbps=round(moved / (ms * 1e-3) / 1e9, 1), rel_err=f"{err:.1e}")
    xh = x.astype(jnp.float16)
    moved = m * h * (2 + 1 + 1)  # fp16 x, 8-bit residual, 8-bit codes
    for qtype, dt in (("int8", jnp.int8), ("fp8", jnp.float8_e4m3fn)):
        r8 = jnp.clip(res.astype(jnp.float32) * 30, -127, 127).astype(dt)
        kw = dict(x_bias=xb, eps=1e-12, residual_scale=jnp.float32(0.03), out_scale=jnp.float32(0.04),
                  out_qtype=qtype)
        want = np.asarray(jax.jit(lambda a, r: ops.residual_layer_norm(a, r, scale, bias, **kw,
                                                                       implementation="xla"))(xh, r8), np.float32)
        # None: the picked launch shape (1 row on 2 warps for 8-bit outputs)
        tiles = [(None, None)] + ([(br, w) for br in (1, 2, 4, 8, 16) for w in (1, 2, 4, 8)] if sweep else [])
        for br, w in tiles:
            fn = jax.jit(lambda a, r, br=br, w=w: residual_layer_norm_triton(a, r, scale, bias, **kw, block_rows=br,
                                                                            num_warps=w))
            same = float(np.mean(np.asarray(fn(xh, r8), np.float32) == want))
            ms = time_jax(fn, xh, r8)
            record("layer_norm" if br is None else "layer_norm-sweep", f"triton {qtype} codes (full_*)",
                   (m, h), ms, gbps=round(moved / (ms * 1e-3) / 1e9, 1), equal=round(same, 5),
                   config=dict(block_rows=br or "picked", num_warps=w or "picked"))


def bench_embedding() -> None:
    """Word + position + token-type embedding and LayerNorm for 128 x 128 tokens, bf16 out."""
    import pallas_kernels as ops

    rng = np.random.default_rng(0)
    b, s, h = 128, 128, 768
    ids = jnp.asarray(rng.integers(0, 30522, (b, s)), jnp.int32)
    pos = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s))
    types = jnp.asarray(rng.integers(0, 2, (b, s)), jnp.int32)
    word, ptab, ttab = (jnp.asarray(rng.standard_normal((n, h)) * 0.05, jnp.bfloat16) for n in (30522, 512, 2))
    scale, bias = jnp.ones(h, jnp.float32), jnp.zeros(h, jnp.float32)
    moved = b * s * h * (3 * 2 + 2)  # three gathered bf16 rows read, one bf16 row written per token
    ref = None
    for impl in ("xla", "triton"):
        fn = jax.jit(lambda i, impl=impl: ops.embedding_layer_norm(i, pos, types, word, ptab, ttab, scale, bias,
                                                                   eps=1e-12, out_dtype=jnp.bfloat16,
                                                                   implementation=impl))
        out = fn(ids)
        ref = out if ref is None else ref
        err = rel_error(np.asarray(out, np.float32), np.asarray(ref, np.float32))
        ms = time_jax(fn, ids)
        record("embedding", impl, (b, s, h), ms, gbps=round(moved / (ms * 1e-3) / 1e9, 1), rel_err=f"{err:.1e}")



def bench_attention(sweep: bool, shape=(128, 128, 12, 64), segments: int = 0) -> None:
    """Attention on B x S tokens (default 128 x 128), 12 heads of 64 (BERT-base), padded batch: float and 8-bit
    kernels. `segments` > 0: packed rows instead, the key mask holding segment ids, that many sequences of equal
    length to a row (1: full-length rows, the layout with nothing to remove)."""
    import pallas_kernels as ops
    from pallas_kernels.attention.triton import (
        AttentionConfig,
        attention_packed_triton,
        quantized_attention_packed_triton,
    )

    rng = np.random.default_rng(0)
    b, s, n, d = shape
    mask = jnp.asarray(np.arange(s)[None, :] < rng.integers(s // 2, s + 1, (b, 1)))
    if segments:  # ids 1..segments along each row, equal spans (the last takes the remainder)
        mask = jnp.asarray(np.broadcast_to(np.minimum(np.arange(s) // (s // segments), segments - 1) + 1, (b, s)),
                           jnp.int32)
    qkv = jnp.asarray(rng.standard_normal((b, s, 3, n, d)), jnp.bfloat16)
    flops = 4 * b * s * s * n * d
    tops = lambda ms: round(flops / (ms * 1e-3) / 1e12, 1)  # noqa: E731
    # stages: a deeper pipeline pays over longer key loops, and over a loop of several heads per program
    tiles = [AttentionConfig(bq, bk, w, st, heads=hd) for bq, bk, w in ((64, 64, 4), (64, 128, 4), (32, 128, 4),
                                                                        (128, 128, 8), (128, 64, 8), (64, 128, 8))
             for st in (1, 2, 3) for hd in (1, 2) if n % hd == 0 and (st < 3 or s > 128 or hd > 1)]
    ref = None
    for impl in ("xla", "triton"):
        fn = jax.jit(lambda q, m, impl=impl: ops.attention_packed(q, m, scale=d**-0.5, implementation=impl))
        out = np.asarray(fn(qkv, mask), np.float32)
        ref = out if ref is None else ref
        record("attention", f"{impl} bf16", shape, ms := time_jax(fn, qkv, mask), tops=tops(ms),
               rel_err=f"{rel_error(out, ref):.1e}")
    for cfg in tiles if sweep else []:
        fn = jax.jit(lambda q, m, cfg=cfg: attention_packed_triton(q, m, scale=d**-0.5, config=cfg))
        try:
            out = np.asarray(fn(qkv, mask), np.float32)
        except Exception as e:  # a tile that does not compile is a sweep result, not a failure
            print(f"  attention bf16 {cfg}: {type(e).__name__}: {str(e)[:160]}")
            continue
        record("attention-sweep", "triton bf16", shape, ms := time_jax(fn, qkv, mask), tops=tops(ms),
               rel_err=f"{rel_error(out, ref):.1e}", config=dataclasses.asdict(cfg))
    scales = [jnp.float32(v) for v in (0.02, 0.03, 0.01)]
    for qtype in ("int8", "fp8"):
        raw = rng.integers(-127, 128, qkv.shape) if qtype == "int8" else rng.standard_normal(qkv.shape) * 50
        q8 = jnp.asarray(raw, jnp.int8 if qtype == "int8" else jnp.float8_e4m3fn)
        kw = dict(scale=d**-0.5, qtype=qtype, out_scale=jnp.float32(0.01))
        want = np.asarray(jax.jit(lambda q, m: ops.quantized_attention_packed(q, *scales, m, **kw,
                                                                             implementation="xla"))(q8, mask), np.float32)
        configs = [None]
        if sweep:
            configs += [dataclasses.replace(t, int_qk=iq) for t in tiles
                        for iq in ((False, True) if qtype == "int8" else (False,))]
        for cfg in configs:
            fn = jax.jit(lambda q, m, cfg=cfg: quantized_attention_packed_triton(q, *scales, m, **kw, config=cfg))
            try:
                out = np.asarray(fn(q8, mask), np.float32)
            except Exception as e:  # a tile that does not compile is a sweep result, not a failure
                print(f"  attention {qtype} {cfg}: {type(e).__name__}: {str(e)[:160]}")
                continue
            same = float(np.mean(out == want))
            ms = time_jax(fn, q8, mask)
            if cfg is None:
                record("attention", f"triton {qtype} (context codes out)", shape, ms, tops=tops(ms), equal=round(same, 5))
            else:
                record("attention-sweep", f"triton {qtype}", shape, ms, tops=tops(ms), equal=round(same, 5),
                       config=dataclasses.asdict(cfg))
    if segments:  # SDPA takes no segment ids: its baseline is the padded one
        return
    try:
        import torch
    except ImportError:
        return
    if not torch.cuda.is_available():
        return
    qt, kt, vt = (torch.randn(b, n, s, d, dtype=torch.float16, device="cuda") for _ in range(3))
    tmask = torch.as_tensor(np.asarray(mask), device="cuda")[:, None, None, :]
    sdpa = torch.nn.functional.scaled_dot_product_attention
    record("attention", "torch SDPA fp16 (padding mask)", shape, ms := time_torch(lambda: sdpa(qt, kt, vt, tmask)),
           tops=tops(ms))
    record("attention", "torch SDPA fp16 (no mask, flash)", shape, ms := time_torch(lambda: sdpa(qt, kt, vt)),
           tops=tops(ms))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default="copy,layer_norm,embedding,gemm,attention")
    ap.add_argument("--sweep", action="store_true", help="also sweep the GEMM's and the attention's tile configurations")
    ap.add_argument("--attention-shape", default="128x128x12x64", help="BxSxNxD of the attention section")
    ap.add_argument("--attention-segments", type=int, default=0,
                    help="packed rows of this many sequences each (segment ids as the key mask); 0: a padding mask")
    ap.add_argument("--gemm-rows", default="128,1024,4096", help="M of the gemm-rows section (tokens per call)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    try:
        attention_shape = tuple(int(v) for v in args.attention_shape.split("x"))
        b, s, n, d = attention_shape
    except ValueError:
        ap.error(f"--attention-shape={args.attention_shape!r}: expected BxSxNxD, e.g. 32x512x12x64")
    try:
        gemm_rows = [int(v) for v in args.gemm_rows.split(",")]
    except ValueError:
        ap.error(f"--gemm-rows={args.gemm_rows!r}: expected comma-separated row counts, e.g. 128,1024")
    print(f"device: {device_name()}, commit {commit()}, {today()}")
    OUT_DIR.append(args.out)
    runs = {"copy": bench_copy, "layer_norm": lambda: bench_layer_norm(args.sweep), "embedding": bench_embedding,
            "gemm": lambda: bench_gemm(args.sweep), "gemm-rows": lambda: bench_gemm_rows(gemm_rows, args.sweep),
            "attention": lambda: bench_attention(args.sweep, attention_shape, args.attention_segments)}
    for section in args.sections.split(","):
        try:
            runs[section]()
        except Exception as e:  # one broken section must not lose the others' numbers
            print(f"section {section} FAILED: {type(e).__name__}: {str(e)[:300]}")
    print(f"\n{'kernel':<12} {'implementation':<42} {'shape':<22} {'ms':>8} {'TOPS/GBps':>9}")
    for r in RECORDS:
        if not r["kernel"].endswith("-sweep"):
            print(f"{r['kernel']:<12} {r['implementation']:<42} {str(tuple(r['shape'])):<22} {r['median_ms']:8.4f} "
                  f"{r.get('tops', r.get('gbps', '')):>9}")
    sweep = [r for r in RECORDS if r["kernel"].endswith("-sweep")]
    for key in {(tuple(r["shape"]), r["implementation"]) for r in sweep}:
        best = min((r for r in sweep if (tuple(r["shape"]), r["implementation"]) == key), key=lambda r: r["median_ms"])
        print(f"best sweep {key}: {best['median_ms']:.4f} ms {best.get('tops') or best.get('gbps')} {best['config']}")


if __name__ == "__main__":
    main()
