"""The 8-bit (int8/fp8) GEMM with its epilogue fused, on the shared Mosaic GEMM engine (pallas_kernels/gemm).

    out = epilogue(x_q @ w_q)      (gemm.epilogue: column scale, bias, activation, cast or requantize)

8-bit `wgmma` reads B K-major only, so the weight arrives packed (`base.pack_weight`: `[N, K]` codes and
the `[3, N]` epilogue vectors, built once per plan) and streams as `[tile_n, tile_k]` tiles; int8
accumulates in int32, fp8 in float32. The kernels are compiled with approximate math: the epilogue's
GELU and requantization are instruction-bound on wide outputs, and `exp2`/`tanh` become single
`ex2.approx`/`tanh.approx` instructions (relative error ~2^-22 and 2^-11; `tanh` only where the output
is requantized: activations.gelu_scaled, in float32 to fp8 and on float16 pairs to int8).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from pallas_kernels._platform import DeviceProperties, device_properties, interpreting
from pallas_kernels.activations import KERNEL_ACTIVATIONS
from pallas_kernels.gemm.config import GemmConfig
from pallas_kernels.gemm.epilogue import Epilogue
from pallas_kernels.gemm.launch import run_gemm
from pallas_kernels.gemm.tile_choice import GemmProblem, choose_tiles
from pallas_kernels.quantized_matmul.base import PackedWeight, pack_weight, packed_result_dtype


def _choice(x_q, packed: PackedWeight, *, activation, out_dtype, out_qtype, partial_sums,
            device: DeviceProperties, interpret: bool, config: GemmConfig | None = None) -> GemmConfig | str:
    """The tile configuration for this input here (`config` where given), or why the kernel declines it."""
    if not interpret and not device.hopper:
        return "mosaic 8-bit GEMM runs on a Hopper GPU (or interpreted)"
    if activation is not None and activation not in KERNEL_ACTIVATIONS:
        return f"mosaic 8-bit GEMM: no in-kernel {activation=}"
    if config is not None:
        return config
    k, n = packed.shape
    problem = GemmProblem(math.prod(x_q.shape[:-1]), n, k, x_q.dtype, packed_result_dtype(packed, out_dtype, out_qtype),
                          activation, partial_sums)
    choice = choose_tiles(problem, device)
    if choice is None:
        return f"mosaic 8-bit GEMM: no tile configuration divides (N, K)=({n}, {k})"
    return choice.config


def supports(x_q, packed: PackedWeight, *, activation: str | None = None, out_dtype=jnp.float32,
             out_qtype: str | None = None, partial_sums: bool = False, device: DeviceProperties | None = None,
             interpret: bool | None = None) -> bool:
    """Whether `quantized_matmul_mosaic_packed` takes this input here: a pure predicate on shapes and dtypes
    (`x_q` and the packed weight's arrays may be `jax.ShapeDtypeStruct`s), on `device` (default: the default
    device's properties) and `interpret` (default: whether kernels are being interpreted).

    It declines anything but a Hopper GPU or the interpreter, activations without an in-kernel form and
    shapes no tile divides. (8-bit GEMMs never hand over to XLA for speed: XLA's runs its epilogue apart.)
    """
    device = device_properties() if device is None else device
    interpret = interpreting() if interpret is None else interpret
    return isinstance(_choice(x_q, packed, activation=activation, out_dtype=out_dtype, out_qtype=out_qtype,
                              partial_sums=partial_sums, device=device, interpret=interpret), GemmConfig)


def quantized_matmul_mosaic(
    x_q: jax.Array,
    x_scale: jax.Array,
    w_q: jax.Array,
    w_scale: jax.Array,
    bias: jax.Array | None = None,
    *,
    qtype: str,
    activation: str | None = None,
    out_dtype=jnp.float32,
    out_scale: jax.Array | None = None,
    out_qtype: str | None = None,
    config: GemmConfig | None = None,
    interpret: bool = False,
) -> jax.Array:
    """`quantized_matmul_reference`, as one Mosaic GPU kernel (Hopper only; `interpret` simulates it on a CPU).

    Packs the weight on every call; serving packs it once and calls `quantized_matmul_mosaic_packed`.
    """
    packed = pack_weight(w_q, w_scale, bias, x_scale=x_scale, out_scale=out_scale, qtype=qtype)
    return quantized_matmul_mosaic_packed(x_q, packed, activation=activation, out_dtype=out_dtype,
                                          out_qtype=out_qtype, config=config, interpret=interpret)


def quantized_matmul_mosaic_packed(
    x_q: jax.Array,
    packed: PackedWeight,
    *,
    activation: str | None = None,
    out_dtype=jnp.float32,
    out_qtype: str | None = None,
    config: GemmConfig | None = None,
    partial_sums: bool = False,
    interpret: bool = False,
) -> jax.Array:
    """`quantized_matmul_packed_reference`, as one Mosaic GPU kernel on the packed `[N, K]` codes.

    `partial_sums` (a weight packed without an output scale, no activation): `[P, ..., N]` scaled partial
    products (the bias in the first), K split over P where few rows would leave SMs idle
    (gemm/tile_choice.py), else P = 1 in `out_dtype`. `config` overrides the tile choice. Raises
    NotImplementedError (dispatch falls back to XLA) where `supports` is False.
    """
    interpret = interpret or interpreting()
    device = device_properties()
    picked = _choice(x_q, packed, activation=activation, out_dtype=out_dtype, out_qtype=out_qtype,
                     partial_sums=partial_sums, device=device, interpret=interpret, config=config)
    if isinstance(picked, str):
        raise NotImplementedError(picked)
    spec = Epilogue(activation=activation, has_bias=packed.has_bias, has_scale=True, requantize=packed.requantize,
                    out_qtype=(out_qtype or packed.qtype) if packed.requantize else None)
    return run_gemm(x_q, packed.w_t, packed.vectors, config=picked, epilogue=spec,
                    result_dtype=packed_result_dtype(packed, out_dtype, out_qtype), device=device,
                    interpret=interpret, partial_sums=partial_sums)
