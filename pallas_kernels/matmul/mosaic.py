"""The float (bf16/fp16) GEMM with its epilogue fused, on the shared Mosaic GEMM engine (pallas_kernels/gemm).

    out = act(x @ w + bias)      (matmul_reference; GELU by activations.gelu_one_exp)

16-bit `wgmma` reads B either way round, so the weight streams as the `[K, N]` tiles the plan stores (no
packing), and the epilogue is the bias and the activation alone. Why a kernel where XLA has cuBLAS: XLA
cannot fuse BERT's erf GELU into a cuBLAS GEMM, so the fp16 plan's FFN1 would write and re-read its
3072-wide output; and at few rows cuBLAS streams the weights through few SMs, where 64-row tiles (and
split K, with partial sums) spread them wider (matmul/README.md).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from pallas_kernels._platform import DeviceProperties, device_properties, interpreting
from pallas_kernels.activations import KERNEL_ACTIVATIONS
from pallas_kernels.gemm.config import GemmConfig, padded_tiles
from pallas_kernels.gemm.epilogue import Epilogue
from pallas_kernels.gemm.launch import run_gemm
from pallas_kernels.gemm.tile_choice import GemmProblem, choose_tiles

FLOAT_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def _operand_reason(x, w, activation, device: DeviceProperties, interpret: bool) -> str | None:
    if not interpret and not device.hopper:
        return "mosaic GEMM runs on a Hopper GPU (or interpreted)"
    if jnp.dtype(x.dtype) not in FLOAT_DTYPES or jnp.dtype(w.dtype) != jnp.dtype(x.dtype):
        return f"mosaic float GEMM takes bf16 or fp16 operands of one dtype, got x.dtype={x.dtype}, w.dtype={w.dtype}"
    if activation is not None and activation not in KERNEL_ACTIVATIONS:
        return f"mosaic float GEMM: no in-kernel {activation=}"
    return None


def _choice(x, w, *, activation, out_dtype, partial_sums, device: DeviceProperties,
            interpret: bool) -> GemmConfig | str:
    """The tile configuration for this input here, or why the kernel declines it."""
    reason = _operand_reason(x, w, activation, device, interpret)
    if reason is not None:
        return reason
    problem = GemmProblem(math.prod(x.shape[:-1]), w.shape[1], x.shape[-1], x.dtype,
                          jnp.dtype(x.dtype if out_dtype is None else out_dtype), activation, partial_sums)
    choice = choose_tiles(problem, device)
    if choice is None:
        return f"mosaic float GEMM: no tile configuration divides (N, K)=({problem.n}, {problem.k})"
    if choice.xla_faster and not interpret:  # the interpreter has no faster GEMM to hand over to
        cfg = choice.config
        tiles = padded_tiles(cfg, problem.m, problem.n) * cfg.splits
        return (f"mosaic float GEMM: {problem.m} x {problem.n} makes {tiles} tiles of {cfg.tile_m} x {cfg.tile_n}, "
                f"fewer than a quarter of the {device.sm_count} SMs; XLA's GEMM is faster")
    return choice.config


def supports(x, w, bias=None, *, activation: str | None = None, out_dtype=None, partial_sums: bool = False,
             device: DeviceProperties | None = None, interpret: bool | None = None) -> bool:
    """Whether `matmul_mosaic` takes this input here: a pure predicate on shapes and dtypes (arrays or
    `jax.ShapeDtypeStruct`s), on `device` (default: the default device's properties) and on `interpret`
    (default: whether kernels are being interpreted).

    It declines anything but a Hopper GPU or the interpreter, float32 operands, a weight in another dtype
    than `x` (a plan casts its weights to the compute dtype once), activations without an in-kernel form,
    shapes no tile divides, and on the GPU, GEMMs too small to spread over a quarter of the SMs (XLA's
    GEMM is faster there).
    """
    device = device_properties() if device is None else device
    interpret = interpreting() if interpret is None else interpret
    return isinstance(_choice(x, w, activation=activation, out_dtype=out_dtype, partial_sums=partial_sums,
                              device=device, interpret=interpret), GemmConfig)


def matmul_mosaic(
    x: jax.Array,
    w: jax.Array,
    bias: jax.Array | None = None,
    *,
    activation: str | None = None,
    out_dtype=None,
    config: GemmConfig | None = None,
    partial_sums: bool = False,
    interpret: bool = False,
) -> jax.Array:
    """`matmul_reference` as one Mosaic GPU kernel (Hopper only; `interpret` simulates it on a CPU).

    `partial_sums` (no activation): `[P, ..., N]` partial products (the bias in the first), K split over P
    where few rows would leave SMs idle (gemm/tile_choice.py), else P = 1 in `out_dtype`. `config` overrides
    the tile choice. Raises NotImplementedError (dispatch falls back to XLA) where `supports` is False.
    """
    interpret = interpret or interpreting()
    device = device_properties()
    if config is None:
        picked = _choice(x, w, activation=activation, out_dtype=out_dtype, partial_sums=partial_sums, device=device,
                         interpret=interpret)
        if isinstance(picked, str):
            raise NotImplementedError(picked)
        config = picked
    elif (reason := _operand_reason(x, w, activation, device, interpret)) is not None:
        raise NotImplementedError(reason)
    n = w.shape[1]
    # an HLO constant, not a per-call broadcast kernel
    vectors = np.zeros((1, n), np.float32) if bias is None else bias.astype(jnp.float32).reshape(1, n)
    spec = Epilogue(activation=activation, has_bias=bias is not None, has_scale=False)
    return run_gemm(x, w, vectors, config=config, epilogue=spec, result_dtype=x.dtype if out_dtype is None else out_dtype,
                    device=device, interpret=interpret, partial_sums=partial_sums)
