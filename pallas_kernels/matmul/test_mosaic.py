"""The Mosaic GPU float GEMM against a float64 oracle: interpreted on a CPU, compiled on a Hopper GPU."""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels._platform import H100
from pallas_kernels.gemm.config import GemmConfig, fit_shared_memory, num_tiles
from pallas_kernels.gemm.tile_choice import GemmProblem, choose_tiles
from pallas_kernels.matmul.api import matmul
from pallas_kernels.matmul.mosaic import matmul_mosaic
from pallas_kernels.testing import rel_error
from pallas_kernels.testing_modes import needs_hopper

# the output's rounding, one bf16/fp16 step at most; float32 output: float32 sums in another order
TOL = {"bfloat16": 8e-3, "float16": 1e-3, "float32": 1e-5}


def _operands(m, k, n, dtype, seed):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((m, k)), dtype)
    w = jnp.asarray(rng.standard_normal((k, n)) / np.sqrt(k), dtype)
    b = jnp.asarray(rng.standard_normal(n), jnp.float32)
    return x, w, b


def _check(m, k, n, dtype, activation, *, bias=True, out_dtype=None, **kw):
    x, w, b = _operands(m, k, n, dtype, m + 7 * n + k)
    out = matmul_mosaic(x, w, b if bias else None, activation=activation, out_dtype=out_dtype, **kw)
    want_dtype = jnp.dtype(out_dtype or dtype)
    assert out.shape == (m, n) and out.dtype == want_dtype
    # the oracle sees the operands as rounded to `dtype`: accumulation, GELU and output rounding are measured
    acc = np.asarray(x, np.float64) @ np.asarray(w, np.float64) + (np.asarray(b, np.float64) if bias else 0)
    if activation == "gelu":
        acc = 0.5 * acc * (1 + np.vectorize(math.erf)(acc / math.sqrt(2)))
    err = rel_error(np.asarray(out, np.float64), acc)
    assert err < TOL[want_dtype.name], (err, want_dtype)


COOPERATIVE = GemmConfig(tile_m=64, tile_n=64, tile_k=64, max_concurrent_steps=2, wg_axis="m", grid_tile_width=2)
PINGPONG = GemmConfig(tile_m=64, tile_n=64, tile_k=64, max_concurrent_steps=2, grid_tile_width=2,
                            schedule="pingpong")
CONFIGS = pytest.mark.parametrize("config", [COOPERATIVE, PINGPONG], ids=lambda c: c.schedule)


@CONFIGS
@pytest.mark.parametrize("dtype, activation, bias, out_dtype", [
    ("bfloat16", None, True, None),
    ("float16", "gelu", True, None),
    ("bfloat16", "gelu", False, "float32"),
    ("float16", None, False, "float32"),
])
def test_interpreted_matches_oracle(dtype, activation, bias, out_dtype, config):
    # cooperative: 2 x 3 CTA tiles over 4 simulated SMs; ping-pong: 4 x 3; 2 K steps through 2 slots
    _check(256, 128, 192, dtype, activation, bias=bias, out_dtype=out_dtype, config=config, interpret=True)


@CONFIGS
def test_interpreted_pads_rows(config):
    _check(40, 128, 64, "float16", "gelu", config=config, interpret=True)


def test_dispatch_reaches_the_kernel_when_interpreting():
    from pallas_kernels._platform import interpret_kernels

    x, w, b = _operands(64, 128, 128, "float16", 1)
    with interpret_kernels():
        out = matmul(x, w, b, activation="gelu", implementation="mosaic")
    ref = matmul(x, w, b, activation="gelu", implementation="xla")
    assert rel_error(np.asarray(out, np.float32), np.asarray(ref, np.float32)) < TOL["float16"]


@pytest.mark.parametrize("x_dtype, w_dtype, activation, n", [
    ("float32", "float32", None, 128),    # float32 operands stay on XLA
    ("float16", "float32", None, 128),    # an uncast weight
    ("bfloat16", "bfloat16", "relu", 128),  # no in-kernel form
    ("bfloat16", "bfloat16", None, 100),  # no tile divides N
])
def test_declines_what_it_cannot_run(x_dtype, w_dtype, activation, n):
    x = jnp.ones((64, 128), x_dtype)
    w = jnp.ones((128, n), w_dtype)
    with pytest.raises(NotImplementedError):
        matmul_mosaic(x, w, activation=activation, interpret=True)


def _choice(m, n, k, in_dtype="float16", out_dtype=None, **kw) -> GemmConfig:
    choice = choose_tiles(GemmProblem(m, n, k, in_dtype, out_dtype or in_dtype, **kw), H100)
    assert choice is not None
    return choice.config


def test_few_rows_spread_over_more_tiles():
    # batch 1 x 128: 128 x 256 tiles would put an N = 768 weight on 3 SMs
    small = _choice(128, 768, 3072)
    assert (small.tile_m, small.schedule) == (64, "pingpong") and small.tile_k == 64
    assert (128 // small.cta_tile[0]) * (768 // small.cta_tile[1]) >= 12
    # 128 x 128 tokens: the tuned large tile, with 64 16-bit values of K (one 128-byte row)
    big = _choice(16384, 768, 3072)
    assert big.cta_tile == (128, 256) and big.tile_k == 64
    assert _choice(16384, 768, 3072, "int8").tile_k == 128
    # ping-pong with 8-bit in and out (FFN1 N = 3072, K = 768): three compute warpgroups on 256-byte K steps
    assert _choice(16384, 3072, 768, "int8", "float16").tile_k == 128
    wide = _choice(16384, 3072, 768, "int8")
    assert (wide.tile_k, wide.consumers, wide.max_concurrent_steps) == (256, 3, 3)


BERT_SHAPES = [(128, 768, 2304, None), (256, 768, 768, None), (128, 768, 3072, "gelu"), (1024, 3072, 768, None),
               (2048, 768, 3072, "gelu"), (4096, 3072, 768, None), (40, 768, 2304, None)]


@pytest.mark.parametrize("m, k, n, activation", BERT_SHAPES)
@pytest.mark.parametrize("dtype", [pytest.param("float16", marks=needs_hopper()),
                                   pytest.param("bfloat16", marks=needs_hopper())])
def test_compiled_matches_oracle(m, k, n, activation, dtype):
    _check(m, k, n, dtype, activation)


@pytest.mark.parametrize("config", [
    pytest.param(GemmConfig(tile_k=64), marks=needs_hopper(), id="cooperative"),
    pytest.param(GemmConfig(tile_k=64, max_concurrent_steps=5, schedule="pingpong"), marks=needs_hopper(),
                 id="pingpong"),
    pytest.param(GemmConfig(tile_m=64, tile_n=64, tile_k=64, max_concurrent_steps=8, schedule="pingpong"),
                 marks=needs_hopper(), id="pingpong-64"),
])
def test_compiled_configs(config):
    _check(1024, 768, 3072, "float16", "gelu", config=fit_shared_memory(config, 2, 2, H100.smem_per_block))
    _check(512, 768, 768, "bfloat16", None, bias=False, out_dtype="float32",
           config=fit_shared_memory(config, 4, 2, H100.smem_per_block))


@pytest.mark.parametrize("m", [pytest.param(128, marks=needs_hopper())])
def test_narrow_weights_at_batch_one_go_to_cublas(m):
    # FFN2 at 128 rows: 24 tiles of 64 x 64; QKV: 72
    x, w, _ = _operands(m, 3072, 768, "float16", 0)
    with pytest.raises(NotImplementedError, match="fewer than"):
        matmul_mosaic(x, w)
    x, w, _ = _operands(m, 768, 2304, "float16", 0)
    assert matmul_mosaic(x, w).shape == (m, 2304)


def _check_partials(parts, x, w, splits: int, bias):
    """Each of the `splits` partial products is its K range's product (float32 sums of the rounded operands),
    the first one plus the bias."""
    m, k = x.shape
    assert parts.shape == (splits, m, w.shape[1]) and parts.dtype == jnp.float32
    xk = np.asarray(x, np.float64).reshape(m, splits, k // splits)
    wk = np.asarray(w, np.float64).reshape(splits, k // splits, -1)
    for p in range(splits):
        want = xk[:, p] @ wk[p] + (np.asarray(bias, np.float64) if p == 0 else 0.0)
        assert rel_error(np.asarray(parts[p], np.float64), want) < TOL["float32"], p


@pytest.mark.parametrize("splits, m", [(2, 64), (3, 40)])
def test_interpreted_split_k(splits, m):
    # 2 x 64-wide output tiles x splits over 4 simulated SMs; 6 K steps of 64, 3 or 2 per split
    x, w, b = _operands(m, 384, 128, "float16", splits)
    cfg = dataclasses.replace(PINGPONG, splits=splits)
    _check_partials(matmul_mosaic(x, w, b, partial_sums=True, config=cfg, interpret=True), x, w, splits, b)


def test_split_k_only_for_few_rows():
    """Batch 1 (128 rows): the narrow weights' 12 tiles of 128 x 64 split K over up to 8 parts, so most SMs stream
    a share of the weight; at 128 x 128 tokens (16384 rows) nothing splits."""
    for k, n in [(768, 768), (3072, 768)]:
        cfg = _choice(128, n, k, partial_sums=True)
        k_steps = k // cfg.tile_k
        assert 1 < cfg.splits <= 8 and k_steps % cfg.splits == 0 and num_tiles(cfg, 128, n) * cfg.splits <= 132
        assert num_tiles(cfg, 128, n) * cfg.splits >= 66, cfg  # at least half the SMs
    assert _choice(16384, 768, 3072, partial_sums=True).splits == 1
    assert _choice(128, 768, 3072).splits == 1  # only when asked
    with pytest.raises(ValueError, match="splits=2 must be 1, or more with the ping-pong schedule"):
        GemmConfig(splits=2)


def test_partial_sums_api():
    x, w, b = _operands(40, 128, 64, "float16", 2)
    parts = matmul(x.reshape(2, 20, 128), w, b, partial_sums=True, implementation="xla")
    assert parts.shape == (1, 2, 20, 64) and parts.dtype == jnp.float16
    np.testing.assert_array_equal(parts[0], matmul(x.reshape(2, 20, 128), w, b, implementation="xla"))
    with pytest.raises(ValueError, match="partial_sums=True takes no activation"):
        matmul(x, w, b, activation="gelu", partial_sums=True)


@pytest.mark.parametrize("k, n", [pytest.param(768, 768, marks=needs_hopper()),
                                  pytest.param(3072, 768, marks=needs_hopper())])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_compiled_split_k_at_batch_one(k, n, dtype):
    """Attention-out and FFN2 at 128 rows: the picked split, each partial its K range's product."""
    x, w, b = _operands(128, k, n, dtype, k)
    parts = matmul_mosaic(x, w, b, partial_sums=True)
    _check_partials(parts, x, w, parts.shape[0], b)
    assert parts.shape[0] > 1
