"""The float (bf16/fp16) GEMM with its epilogue fused, on the Mosaic GPU kernels of the 8-bit GEMM.

    out = act(x @ w + bias)      (matmul_reference; GELU by base.gelu_one_exp)

The kernels (quantized_matmul/mosaic.py, mosaic_pingpong.py) take 16-bit
operands as they take 8-bit ones: `wgmma` with a float32 accumulator, TMA
pipelines, the same persistent schedules and tile picker. 16-bit `wgmma` reads
B either way round, so the weight streams as the `[K, N]` tiles the plan stores
(no packing), and the epilogue is the bias and the activation alone.

Why a kernel where XLA has cuBLAS: XLA cannot fuse BERT's erf GELU into a
cuBLAS GEMM, so the fp16 plan's FFN1 writes and re-reads its 3072-wide output
(bench/RESULTS.md: 1.26 of 8.94 ms at 32 x 512); and at batch 1 cuBLAS streams
the weights at a fifth of HBM bandwidth, where 64-row tiles spread them over
the SMs.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels._platform import interpreting, on_hopper
from pallas_kernels.quantized_matmul.base import KERNEL_ACTIVATIONS
from pallas_kernels.quantized_matmul.mosaic import (
    MosaicGemmConfig,
    default_config,
    padded_tiles,
    run_gemm,
)

FLOAT_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
CUBLAS_BELOW = 32  # output tiles under which XLA's GEMM (cuBLAS, split-K) is faster: a quarter of the H100's SMs


def matmul_mosaic(
    x: jax.Array,
    w: jax.Array,
    bias: jax.Array | None = None,
    *,
    activation: str | None = None,
    out_dtype=None,
    config: MosaicGemmConfig | None = None,
    partial_sums: bool = False,
    interpret: bool = False,
) -> jax.Array:
    """`matmul_reference` as one Mosaic GPU kernel (Hopper only; `interpret` simulates it on a CPU).

    `partial_sums` (no activation): `[P, ..., N]` partial products (the bias in the first), K split over P
    (`split_k`) where few rows would leave SMs idle, else P = 1 in `out_dtype`.

    Declines (NotImplementedError, so dispatch falls back to XLA) float32 operands, a weight in another dtype
    than `x` (a plan casts its weights to the compute dtype once), activations without an in-kernel form,
    shapes no tile divides, and on the GPU, GEMMs too small to spread over a quarter of the SMs.
    """
    interpret = interpret or interpreting()
    if not interpret and not on_hopper():
        raise NotImplementedError("mosaic GEMM runs on a Hopper GPU (or with interpret=True)")
    if x.dtype not in FLOAT_DTYPES or w.dtype != x.dtype:
        raise NotImplementedError(f"mosaic float GEMM takes bf16 or fp16 operands of one dtype, got "
                                  f"x.dtype={x.dtype}, w.dtype={w.dtype}")
    if activation is not None and activation not in KERNEL_ACTIVATIONS:
        raise NotImplementedError(f"mosaic float GEMM: no in-kernel {activation=}")
    m, k, n = math.prod(x.shape[:-1]), x.shape[-1], w.shape[1]
    result_dtype = x.dtype if out_dtype is None else out_dtype
    cfg = config or default_config(m, n, k, result_dtype, x.dtype, partial_sums=partial_sums, activation=activation)
    # (interpreted, the CPU's 4 simulated SMs would make every test GEMM "small")
    if config is None and not interpret and padded_tiles(cfg, m, n) * cfg.splits < CUBLAS_BELOW:
        # a narrow weight at batch 1 (FFN2: 24 tiles of 64 x 64 at 128 rows) streams through few SMs, where
        # cuBLAS splits K over more: 10.7 against 7.2 us (bench/RESULTS.md, seventh pass). With partial sums
        # the kernel splits K itself (P = 4 there: 5.5 us, tenth pass) and declines only what stays this small.
        raise NotImplementedError(f"mosaic float GEMM: {m} x {n} makes fewer than {CUBLAS_BELOW} tiles")
    # an HLO constant, not a per-call broadcast kernel
    vectors = np.zeros((1, n), np.float32) if bias is None else bias.astype(jnp.float32).reshape(1, n)
    return run_gemm(x, w, vectors, result_dtype=result_dtype, config=cfg, interpret=interpret,
                    partial_sums=partial_sums, activation=activation, out_qtype=None, has_bias=bias is not None,
                    quantize_out=False, fp8_cast=True, has_scale=False)
