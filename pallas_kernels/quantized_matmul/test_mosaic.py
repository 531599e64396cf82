"""The Mosaic GPU 8-bit GEMM against the XLA reference: interpreted on a CPU, compiled on a Hopper GPU.

Interpreted, the ping-pong schedule streams the packed K-major `[N, K]` codes as the GPU does; the epilogue's
in-kernel steps are tested one tile at a time in gemm/test_epilogue.py.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels._platform import H100
from pallas_kernels.activations import GELU_TANH_ERROR, HALF_GELU_ERROR
from pallas_kernels.gemm.config import GemmConfig, fit_shared_memory, smem_bytes
from pallas_kernels.gemm.epilogue import epilogue
from pallas_kernels.gemm.tile_choice import GemmProblem, choose_tiles
from pallas_kernels.quantized_matmul.base import (
    column_scale,
    pack_weight,
    quantized_matmul_packed_reference,
    quantized_matmul_reference,
)
from pallas_kernels.quantized_matmul.mosaic import quantized_matmul_mosaic, quantized_matmul_mosaic_packed
from pallas_kernels.testing import gelu_np, rel_error
from pallas_kernels.testing_modes import needs_hopper

SMEM = H100.smem_per_block

# (qtype, activation, output): output is a float dtype or the qtype the epilogue requantizes to.
OUT_SCALE = 0.02  # requantized outputs
VARIANTS = [
    ("int8", None, "float32"),
    ("int8", "gelu", "bfloat16"),
    ("int8", "gelu", "int8"),
    ("fp8", None, "float16"),
    ("fp8", "gelu", "fp8"),
]


def _operands(m, k, n, qtype, seed):
    rng = np.random.default_rng(seed)
    if qtype == "int8":
        x = jnp.asarray(rng.integers(-127, 128, (m, k)), jnp.int8)
        w = jnp.asarray(rng.integers(-127, 128, (k, n)), jnp.int8)
        xs = np.float32(1.0 / (127 * np.sqrt(k)))
    else:
        x = jnp.asarray(rng.standard_normal((m, k)) * 40, jnp.float8_e4m3fn)
        w = jnp.asarray(rng.standard_normal((k, n)) * 40, jnp.float8_e4m3fn)
        xs = np.float32(1.0 / (40 * np.sqrt(k)))
    ws = jnp.asarray(rng.uniform(0.5, 2.0, (1, n)) / (127 if qtype == "int8" else 40), jnp.float32)
    bias = jnp.asarray(rng.standard_normal(n), jnp.float32)
    return x, jnp.float32(xs), w, ws, bias


def _check(m, k, n, qtype, activation, output, **kw):
    x, xs, w, ws, b = _operands(m, k, n, qtype, m + 7 * n + k)
    requant = output in ("int8", "fp8")
    args = dict(qtype=qtype, activation=activation)
    if requant:
        args.update(out_scale=jnp.float32(OUT_SCALE), out_qtype=output)
    else:
        args.update(out_dtype=jnp.dtype(output))
    out = quantized_matmul_mosaic(x, xs, w, ws, b, **args, **kw)
    if qtype == "fp8":
        # XLA's own fp8 dot on the H100 accumulates at reduced precision (~1e-4, bench/RESULTS.md), enough
        # to move 1-2% of requantized codes; fp8 products are exact in float64, so the oracle sums there
        acc = jnp.asarray(np.asarray(x, np.float64) @ np.asarray(w, np.float64), jnp.float32)
        out_scale = args.get("out_scale")
        ref = epilogue(acc, column_scale(xs, ws), b, activation=activation,
                       out_inv_scale=None if out_scale is None else jnp.broadcast_to(1.0 / out_scale, (n,)),
                       out_qtype=args.get("out_qtype", qtype), out_dtype=args.get("out_dtype", jnp.float32))
    else:
        ref = quantized_matmul_reference(x, xs, w, ws, b, **args)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    out32, ref32 = np.asarray(out, np.float32), np.asarray(ref, np.float32)
    assert np.isfinite(out32).all()
    same = float(np.mean(out32 == ref32))
    info = f"equal codes {same:.5f}, max |diff| {np.abs(out32 - ref32).max():g}, rel {rel_error(out32, ref32):.2e}"
    worst = np.argsort(-np.abs(out32 - ref32).ravel())[:6]
    info += "; worst (ref, kernel): " + ", ".join(f"({ref32.flat[i]:g}, {out32.flat[i]:g})" for i in worst)
    # requantized GELU: the kernel's tanh forms are within their bound of the reference's erf, in output
    # codes `gelu_slack`: float16 to int8, float32 to fp8 (activations.gelu_scaled)
    gelu_slack = 0.0
    if activation == "gelu" and requant:
        a, c = HALF_GELU_ERROR if output == "int8" else GELU_TANH_ERROR
        y = (np.asarray(x, np.float64) @ np.asarray(w, np.float64)) * np.asarray(column_scale(xs, ws),
                                                                               np.float64) + np.asarray(b)
        gelu_slack = (a * np.abs(y) + c) / OUT_SCALE
    if output == "int8":
        # the same float32 epilogue (erf within 5e-7): a value within rounding of a tie may take either
        # neighbour; with GELU, a value within `gelu_slack` codes of a tie
        assert np.abs(out32 - ref32).max() <= 1, info
        if activation == "gelu":
            exact = gelu_np(y) / OUT_SCALE
            near_tie = np.abs(np.abs(exact - np.floor(exact)) - 0.5) <= gelu_slack + 1e-3
            off = np.flatnonzero((out32 != ref32) & ~near_tie)
            info += "; off away from a tie (exact codes): " + ", ".join(f"{exact.flat[i]:.4f}" for i in off[:8])
            # float16 rounding moves 1-2% of these codes (their values reach 200 steps of |x|), all at ties
            assert same > 0.97 and off.size == 0, info
        else:
            assert same > 0.999, info
    elif output == "fp8":
        # Hopper's fp8 wgmma accumulates at reduced precision (about 14 bits; DeepSeek-V3's report), so the
        # error scales with the sum of |products|, not with the output: where the bias cancels the product,
        # a small output moves by several of its (small) steps. On the H100 97.3-98.8%
        # of codes equal, at most 0.08 codes beyond one step. Bound: one e4m3 step of the exact value plus
        # 2^-12 of sum|x*w| in output codes (GELU's slope is at most 1.13). An f32 accumulator promoted
        # every K tile would remove it, at twice the accumulator registers.
        step = 2.0 ** np.maximum(np.floor(np.log2(np.maximum(np.abs(ref32), 2.0**-6))) - 3, -9)
        abs_sum = np.abs(np.asarray(x, np.float64)) @ np.abs(np.asarray(w, np.float64))
        drift = 2.0**-12 * 1.13 * abs_sum * np.asarray(column_scale(xs, ws)).reshape(1, -1) / OUT_SCALE + gelu_slack
        over = np.flatnonzero(np.abs(out32 - ref32) > step * 1.0001 + drift)
        info += "; over one step (ref, kernel): " + ", ".join(f"({ref32.flat[i]:g}, {out32.flat[i]:g})" for i in over[:8])
        assert same > 0.97 and over.size == 0, info
    else:
        # int8: exact accumulation, so only the output rounding; fp8: float32 sums in another order
        tol = {"float32": 1e-5, "bfloat16": 8e-3, "float16": 1e-3}[output]
        assert rel_error(out32, ref32) < tol, info


SMALL = GemmConfig(tile_m=64, tile_n=64, tile_k=128, max_concurrent_steps=2, wg_axis="m", grid_tile_width=2)
SMALL_PINGPONG = GemmConfig(tile_m=64, tile_n=64, tile_k=128, max_concurrent_steps=2, grid_tile_width=2,
                                  schedule="pingpong")
SMALL_CONFIGS = pytest.mark.parametrize("config", [SMALL, SMALL_PINGPONG], ids=lambda c: c.schedule)


@SMALL_CONFIGS
@pytest.mark.parametrize("qtype, activation, output", VARIANTS)
def test_interpreted_matches_reference(qtype, activation, output, config):
    # cooperative: 2 x 3 CTA tiles over 4 simulated SMs; pingpong: 4 x 3, so three tiles an SM (two for
    # warpgroup 0, one for warpgroup 1) and six uses of the two slots. 2 K steps: the persistent loop, the
    # pipeline and the epilogue
    _check(256, 256, 192, qtype, activation, output, config=config, interpret=True)


@SMALL_CONFIGS
def test_interpreted_pads_rows(config):
    # one tile over 4 simulated SMs: three SMs have none
    _check(40, 128, 64, "int8", "gelu", "bfloat16", config=config, interpret=True)


@pytest.mark.parametrize("m, n", [(128, 64), (256, 128), (384, 192)])
@pytest.mark.parametrize("consumers", [2, 3])
def test_interpreted_pingpong_tile_counts(m, n, consumers):
    # 2, 8 and 18 tiles over 4 simulated SMs (0-5 an SM), so each compute warpgroup's share of an SM's tiles
    # and the turns left over at the end vary, with 4 K steps through 2 slots
    config = dataclasses.replace(SMALL_PINGPONG, consumers=consumers)
    _check(m, 512, n, "int8", None, "float32", config=config, interpret=True)


def test_interpreted_three_consumers_gelu_requantized():
    _check(384, 256, 192, "int8", "gelu", "int8", config=dataclasses.replace(SMALL_PINGPONG, consumers=3),
           interpret=True)


def test_interpreted_wide_k_steps():
    # 256-byte K steps on three warpgroups (pick_config's 8-bit-to-8-bit ping-pong tile): 3 steps a tile
    # through 3 slots, 18 tiles over 4 simulated SMs
    config = dataclasses.replace(SMALL_PINGPONG, consumers=3, tile_k=256, max_concurrent_steps=3)
    _check(384, 768, 192, "int8", "gelu", "int8", config=config, interpret=True)


def test_config_beyond_shared_memory_is_refused():
    """A configuration whose buffers cannot fit an SM's shared memory is refused with its name, by the launch and
    by `fit_shared_memory` (even two stages of it do not fit), instead of failing inside Mosaic GPU."""
    config = GemmConfig(tile_k=256, max_concurrent_steps=3, schedule="pingpong", consumers=3)
    with pytest.raises(ValueError, match=r"tile_k=256.*needs about [0-9]+ bytes of shared memory with 4-byte outputs"):
        _check(256, 512, 256, "int8", None, "float32", config=config, interpret=True)
    with pytest.raises(ValueError, match="more than a block's 232448"):
        fit_shared_memory(config, 4, 1, SMEM)
    assert fit_shared_memory(config, 1, 1, SMEM) == config  # 8-bit outputs: three stages fit


def test_config_rejects_unknown_schedule():
    with pytest.raises(ValueError, match="schedule='pingpang'"):
        GemmConfig(schedule="pingpang")
    with pytest.raises(ValueError, match="consumers=3"):
        GemmConfig(consumers=3)  # cooperative: two compute warpgroups split one tile
    with pytest.raises(ValueError, match="consumers=4"):
        GemmConfig(schedule="pingpong", consumers=4)


def test_configs_fit_shared_memory():
    for out_dtype in ("int8", "float16", "float32"):
        for m, k, n in [(16384, 768, 3072), (16384, 3072, 768), (16384, 768, 2304), (128, 768, 768)]:
            for partial_sums in (False, True):
                cfg = choose_tiles(GemmProblem(m, n, k, "int8", out_dtype, partial_sums=partial_sums), H100).config
                out_bytes = 4 if cfg.splits > 1 else np.dtype(out_dtype).itemsize
                assert smem_bytes(cfg, out_bytes) <= SMEM


def test_undividable_shapes_fall_back():
    x, xs, w, ws, b = _operands(64, 100, 64, "int8", 0)
    with pytest.raises(NotImplementedError):
        quantized_matmul_mosaic(x, xs, w, ws, b, qtype="int8", interpret=True)


PINGPONG = GemmConfig(max_concurrent_steps=5, schedule="pingpong")
PINGPONG3 = GemmConfig(max_concurrent_steps=5, schedule="pingpong", consumers=3)
PINGPONG3_WIDE = GemmConfig(tile_k=256, max_concurrent_steps=3, schedule="pingpong", consumers=3)


@pytest.mark.parametrize("m, k, n", [(1024, 768, 2304), (512, 768, 3072), (512, 3072, 768), (256, 768, 768), (40, 768, 768)])
@pytest.mark.parametrize("qtype, activation, output", VARIANTS)
@pytest.mark.parametrize("config", [pytest.param(None, marks=needs_hopper(), id="picked"),
                                    pytest.param(PINGPONG, marks=needs_hopper(), id="pingpong"),
                                    pytest.param(PINGPONG3, marks=needs_hopper(), id="pingpong3"),
                                    pytest.param(PINGPONG3_WIDE, marks=needs_hopper(), id="pingpong3-wide")])
def test_compiled_matches_reference(m, k, n, qtype, activation, output, config):
    if config is not None:
        out_bytes = 1 if output in ("int8", "fp8") else jnp.dtype(output).itemsize
        if smem_bytes(dataclasses.replace(config, max_concurrent_steps=2), out_bytes) > SMEM:
            # three float32 epilogue buffers beside 256-byte K steps: refused by name before Mosaic GPU compiles
            with pytest.raises(ValueError, match="needs about [0-9]+ bytes of shared memory"):
                _check(m, k, n, qtype, activation, output, config=config)
            return
        config = fit_shared_memory(config, out_bytes, 1, SMEM)
    _check(m, k, n, qtype, activation, output, config=config)


def _check_split(m, k, n, qtype, config=None, interpret=False):
    """Partial products of a weight packed with its bias: they sum to the reference's float32 output, so the
    bias is added once (by the first split)."""
    x, xs, w, ws, b = _operands(m, k, n, qtype, k + n)
    packed = pack_weight(w, ws, b, x_scale=xs, qtype=qtype)
    parts = quantized_matmul_mosaic_packed(x, packed, out_dtype=jnp.float16, partial_sums=True, config=config,
                                           interpret=interpret)
    ref = np.asarray(quantized_matmul_packed_reference(x, packed, out_dtype=jnp.float32), np.float64)
    assert parts.ndim == 3 and parts.shape[1:] == (m, n)
    # int8: exact integer partials, scaled and summed in float32; fp8: also the accumulation order (and on the
    # H100, its reduced-precision accumulation, ~2^-12 of the products' magnitude). One partial is the fp16 output.
    tol = 1e-5 if qtype == "int8" or interpret else 2e-3
    if parts.shape[0] == 1:
        tol = max(tol, 1e-3)
    assert parts.dtype == (jnp.float32 if parts.shape[0] > 1 else jnp.float16)
    assert rel_error(np.asarray(parts, np.float64).sum(axis=0), ref) < tol
    return parts.shape[0]


@pytest.mark.parametrize("qtype", ["int8", "fp8"])
def test_interpreted_split_k(qtype):
    # 2 output tiles x 2 splits over 4 simulated SMs, 2 K steps each
    assert _check_split(64, 512, 128, qtype, dataclasses.replace(SMALL_PINGPONG, splits=2), interpret=True) == 2


@pytest.mark.parametrize("m, k, n", [pytest.param(128, 768, 768, marks=needs_hopper()),
                                     pytest.param(128, 3072, 768, marks=needs_hopper()),
                                     pytest.param(1024, 3072, 768, marks=needs_hopper())])
@pytest.mark.parametrize("qtype", ["int8", "fp8"])
def test_compiled_split_k(m, k, n, qtype):
    """Attention-out and FFN2 at batch 1 (128 rows): K split; at 1024 rows, one partial in the output dtype."""
    splits = _check_split(m, k, n, qtype)
    assert (splits > 1) == (m == 128)


def test_partial_sums_refuse_requantization_and_activation():
    from pallas_kernels.quantized_matmul.api import quantized_matmul_packed

    x, xs, w, ws, b = _operands(64, 128, 64, "int8", 1)
    requant = pack_weight(w, ws, b, x_scale=xs, out_scale=jnp.float32(OUT_SCALE), qtype="int8")
    with pytest.raises(ValueError, match="partial_sums=True needs a weight packed without out_scale"):
        quantized_matmul_packed(x, requant, partial_sums=True)
    packed = pack_weight(w, ws, b, x_scale=xs, qtype="int8")
    with pytest.raises(ValueError, match="partial_sums=True needs .* no activation"):
        quantized_matmul_packed(x, packed, activation="gelu", partial_sums=True)
    # the kernel itself, called directly: the parts are summed after, so no nonlinear epilogue
    with pytest.raises(ValueError, match="partial sums need an epilogue without activation or requantization"):
        quantized_matmul_mosaic_packed(x, packed, activation="gelu", partial_sums=True, interpret=True)
    parts = quantized_matmul_packed(x, packed, partial_sums=True, implementation="xla")
    assert parts.shape == (1, 64, 64)
    np.testing.assert_array_equal(parts[0], quantized_matmul_packed(x, packed, implementation="xla"))
