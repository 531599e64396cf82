"""The Mosaic GEMM's tile choice for every GEMM of BERT-base, pinned under the H100's properties, and the
kernels' `supports` predicates on `jax.ShapeDtypeStruct` inputs.

The table below was read from the tile picker before the GEMM engine moved into this folder, so the
engine provably makes the H100 choice it made then. The choice depends on the rows M = batch x seq only
(and on N, K, dtypes and the epilogue), so the table is keyed by M.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, cast

import jax
import jax.numpy as jnp
import pytest

from pallas_kernels._platform import H100
from pallas_kernels.gemm.config import GemmConfig
from pallas_kernels.gemm.tile_choice import GemmProblem, choose_tiles
from pallas_kernels.matmul import mosaic as float_gemm
from pallas_kernels.quantized_matmul import mosaic as gemm_8bit
from pallas_kernels.quantized_matmul.base import PackedWeight

HIDDEN, INNER = 768, 3072  # BERT-base
GEMMS = {"qkv": (HIDDEN, 3 * HIDDEN), "attn_out": (HIDDEN, HIDDEN), "ffn1": (HIDDEN, INNER), "ffn2": (INNER, HIDDEN)}  # (K, N)
BATCHES, SEQS = (1, 8, 32, 128), (32, 128, 512)

# Every configuration the picker chose, by name: schedule, (tile_m, tile_n, tile_k), stages, K splits, consumers.
# Fields not named are GemmConfig's defaults (cooperative warpgroups split N; 64 x 64 epilogue tiles).
CONFIGS: dict[str, dict[str, Any]] = {
    "co128x128x64s3": dict(tile_m=128, tile_n=128, tile_k=64, max_concurrent_steps=3),
    "co128x128x128s3": dict(tile_m=128, tile_n=128, tile_k=128, max_concurrent_steps=3),
    "pp64x64x64s8": dict(tile_m=64, tile_n=64, tile_k=64, max_concurrent_steps=8, schedule="pingpong"),
    "pp64x64x64s8p2": dict(tile_m=64, tile_n=64, tile_k=64, max_concurrent_steps=8, schedule="pingpong", splits=2),
    "pp64x64x64s8p4": dict(tile_m=64, tile_n=64, tile_k=64, max_concurrent_steps=8, schedule="pingpong", splits=4),
    "pp64x64x64s8p6": dict(tile_m=64, tile_n=64, tile_k=64, max_concurrent_steps=8, schedule="pingpong", splits=6),
    "pp64x64x64s8p8": dict(tile_m=64, tile_n=64, tile_k=64, max_concurrent_steps=8, schedule="pingpong", splits=8),
    "pp64x64x128s8": dict(tile_m=64, tile_n=64, tile_k=128, max_concurrent_steps=8, schedule="pingpong"),
    "pp64x64x128s8p2": dict(tile_m=64, tile_n=64, tile_k=128, max_concurrent_steps=8, schedule="pingpong", splits=2),
    "pp64x64x128s8p3": dict(tile_m=64, tile_n=64, tile_k=128, max_concurrent_steps=8, schedule="pingpong", splits=3),
    "pp64x64x128s8p4": dict(tile_m=64, tile_n=64, tile_k=128, max_concurrent_steps=8, schedule="pingpong", splits=4),
    "pp64x64x128s8p6": dict(tile_m=64, tile_n=64, tile_k=128, max_concurrent_steps=8, schedule="pingpong", splits=6),
    "pp64x64x128s8p8": dict(tile_m=64, tile_n=64, tile_k=128, max_concurrent_steps=8, schedule="pingpong", splits=8),
    "pp128x64x64s7": dict(tile_m=128, tile_n=64, tile_k=64, max_concurrent_steps=7, schedule="pingpong"),
    "pp128x64x128s6": dict(tile_m=128, tile_n=64, tile_k=128, max_concurrent_steps=6, schedule="pingpong"),
    "pp128x64x128s7": dict(tile_m=128, tile_n=64, tile_k=128, max_concurrent_steps=7, schedule="pingpong"),
    "pp128x64x128s8": dict(tile_m=128, tile_n=64, tile_k=128, max_concurrent_steps=8, schedule="pingpong"),
    "pp128x128x64s5": dict(tile_m=128, tile_n=128, tile_k=64, max_concurrent_steps=5, schedule="pingpong"),
    "pp128x128x64s5c3": dict(tile_m=128, tile_n=128, tile_k=64, max_concurrent_steps=5, schedule="pingpong", consumers=3),
    "pp128x128x128s4": dict(tile_m=128, tile_n=128, tile_k=128, max_concurrent_steps=4, schedule="pingpong"),
    "pp128x128x128s5": dict(tile_m=128, tile_n=128, tile_k=128, max_concurrent_steps=5, schedule="pingpong"),
    "pp128x128x256s3c3": dict(tile_m=128, tile_n=128, tile_k=256, max_concurrent_steps=3, schedule="pingpong",
                              consumers=3),
}
_M = (32, 128, 256, 512, 1024, 4096, 16384, 65536)  # the distinct batch x seq of the grid


def _row(*names: str) -> dict[int, str]:
    return dict(zip(_M, names, strict=True))


# (operands, output, GEMM) -> {M: configuration name}. The encoder's calls: float GEMMs in a 16-bit compute
# dtype; 8-bit QKV and FFN1 requantize (8-bit out); attention-out and FFN2 write partial sums in the compute
# dtype (16-bit or float32), K split on few rows. float32 operands have no Mosaic GEMM: "xla".
_FEW, _FEW8 = ("pp64x64x64s8",) * 2, ("pp64x64x128s8",) * 2
PICKS = {
    ("16-bit", "16-bit", "qkv"): _row(*_FEW, "pp128x64x64s7", *["pp128x128x64s5"] * 5),
    ("16-bit", "16-bit", "ffn1"): _row(*_FEW, "pp128x64x64s7", *["pp128x128x64s5c3"] * 5),
    ("16-bit", "partials 16-bit", "attn_out"): _row("pp64x64x64s8p6", "pp64x64x64s8p4", "pp64x64x64s8p2",
                                                    "pp64x64x64s8", "pp128x64x64s7", *["pp128x128x64s5"] * 3),
    ("16-bit", "partials 16-bit", "ffn2"): _row("pp64x64x64s8p8", "pp64x64x64s8p4", "pp64x64x64s8p2",
                                                "pp64x64x64s8", "pp128x64x64s7", *["co128x128x64s3"] * 3),
    ("8-bit", "8-bit", "qkv"): _row(*_FEW8, "pp128x64x128s8", *["pp128x128x256s3c3"] * 5),
    ("8-bit", "8-bit", "ffn1"): _row(*_FEW8, "pp128x64x128s8", *["pp128x128x256s3c3"] * 5),
    ("8-bit", "partials 16-bit", "attn_out"): _row("pp64x64x128s8p6", "pp64x64x128s8p3", "pp64x64x128s8p2",
                                                   "pp64x64x128s8", "pp128x64x128s7", *["pp128x128x128s5"] * 3),
    ("8-bit", "partials 16-bit", "ffn2"): _row("pp64x64x128s8p8", "pp64x64x128s8p4", "pp64x64x128s8p2",
                                               "pp64x64x128s8", "pp128x64x128s7", *["co128x128x128s3"] * 3),
    ("8-bit", "partials float32", "attn_out"): _row("pp64x64x128s8p6", "pp64x64x128s8p3", "pp64x64x128s8p2",
                                                    "pp64x64x128s8", "pp128x64x128s6", *["pp128x128x128s4"] * 3),
    ("8-bit", "partials float32", "ffn2"): _row("pp64x64x128s8p8", "pp64x64x128s8p4", "pp64x64x128s8p2",
                                                "pp64x64x128s8", "pp128x64x128s6", *["co128x128x128s3"] * 3),
}
PICKS.update({("float32", "float32", g): _row(*["xla"] * 8) for g in GEMMS})
OPERANDS = {"16-bit": ("bfloat16", "float16"), "8-bit": ("int8", "float8_e4m3fn"), "float32": ("float32",)}
OUTPUTS = {"16-bit": None, "8-bit": None, "partials 16-bit": "float16", "partials float32": "float32",
           "float32": "float32"}


def _packed(k: int, n: int, dtype, requantize: bool) -> PackedWeight:
    """A packed weight's shapes and dtypes, no values."""
    qtype = "int8" if jnp.dtype(dtype) == jnp.int8 else "fp8"
    codes, vectors = jax.ShapeDtypeStruct((n, k), dtype), jax.ShapeDtypeStruct((3, n), jnp.float32)
    return PackedWeight(cast(jax.Array, codes), cast(jax.Array, vectors), qtype, requantize=requantize)


def _choice(in_dtype: str, output: str, gemm: str, m: int) -> str | dict:
    """What the GEMM runs on an H100 for this encoder call: the configuration's fields, or "xla"."""
    k, n = GEMMS[gemm]
    activation = "gelu" if gemm == "ffn1" else None
    partial_sums = output.startswith("partials")
    out_dtype = OUTPUTS[output] or in_dtype
    x = jax.ShapeDtypeStruct((m, k), in_dtype)
    if jnp.dtype(in_dtype).itemsize == 1:
        packed = _packed(k, n, in_dtype, requantize=output == "8-bit")
        if not gemm_8bit.supports(x, packed, activation=activation, out_dtype=out_dtype, partial_sums=partial_sums,
                                  device=H100, interpret=False):
            return "xla"
        out_dtype = "int8" if output == "8-bit" else out_dtype
    elif not float_gemm.supports(x, jax.ShapeDtypeStruct((k, n), in_dtype), activation=activation, out_dtype=out_dtype,
                                 partial_sums=partial_sums, device=H100, interpret=False):
        return "xla"
    choice = choose_tiles(GemmProblem(m, n, k, in_dtype, out_dtype, activation, partial_sums), H100)
    assert choice is not None
    return dataclasses.asdict(choice.config)


def _expected(name: str) -> str | dict:
    if name == "xla":
        return "xla"
    return dataclasses.asdict(GemmConfig(**CONFIGS[name]))


CASES = [(b, s, ops, out, g) for (ops, out, g) in PICKS for b, s in itertools.product(BATCHES, SEQS)]


@pytest.mark.parametrize("batch, seq, operands, output, gemm", CASES)
def test_bert_base_choice_on_h100(batch, seq, operands, output, gemm):
    want = _expected(PICKS[operands, output, gemm][batch * seq])
    for in_dtype in OPERANDS[operands]:
        assert _choice(in_dtype, output, gemm, batch * seq) == want, (in_dtype, output, gemm, batch, seq)


def test_the_table_is_the_whole_choice():
    """22 configurations (and XLA for float32) over BERT-base's 168 GEMM calls; none of the table is unused."""
    used = {name for row in PICKS.values() for name in row.values()}
    assert used == set(CONFIGS) | {"xla"} and len(CASES) == 168


def _float_supports(m, k, n, dtype="bfloat16", w_dtype=None, *, activation=None, partial_sums=False, device=H100,
                    interpret=False) -> bool:
    x, w = jax.ShapeDtypeStruct((m, k), dtype), jax.ShapeDtypeStruct((k, n), w_dtype or dtype)
    return float_gemm.supports(x, w, activation=activation, partial_sums=partial_sums, device=device,
                               interpret=interpret)


def test_float_gemm_supports():
    assert _float_supports(128, 768, 2304)
    assert not _float_supports(128, 768, 768, "float32")  # float32 operands stay on XLA
    assert not _float_supports(128, 768, 768, "float16", "float32")  # an uncast weight
    assert not _float_supports(128, 768, 768, activation="relu")  # no in-kernel form
    assert not _float_supports(128, 768, 100)  # no tile divides N
    assert not _float_supports(128, 768, 2304, device=dataclasses.replace(H100, hopper=False))  # not sm_90
    assert _float_supports(128, 768, 2304, device=dataclasses.replace(H100, hopper=False), interpret=True)
    # FFN2 at batch 1 x 128 without partial sums: 24 tiles of 64 x 64, under a quarter of the SMs, where XLA's
    # GEMM splits K and is faster; with partial sums the kernel splits K itself; interpreted it always runs
    assert not _float_supports(128, 3072, 768)
    assert _float_supports(128, 3072, 768, partial_sums=True)
    assert _float_supports(128, 3072, 768, interpret=True)
    # the same 24 tiles are a quarter of a GPU with 96 SMs
    assert _float_supports(128, 3072, 768, device=dataclasses.replace(H100, sm_count=96))


def test_8bit_gemm_supports():
    x = jax.ShapeDtypeStruct((40, 768), jnp.int8)
    assert gemm_8bit.supports(x, _packed(768, 3072, jnp.int8, True), activation="gelu", device=H100, interpret=False)
    assert not gemm_8bit.supports(x, _packed(768, 3072, jnp.int8, True), activation="relu", device=H100,
                                  interpret=False)
    assert not gemm_8bit.supports(x, _packed(100, 64, jnp.int8, False), device=H100, interpret=False)
    off_hopper = dataclasses.replace(H100, hopper=False)
    assert not gemm_8bit.supports(x, _packed(768, 768, jnp.int8, False), device=off_hopper, interpret=False)
    assert gemm_8bit.supports(x, _packed(768, 768, jnp.int8, False), device=off_hopper, interpret=True)


def test_choice_reads_the_device():
    """Fewer SMs: the large tiles from fewer rows on; less shared memory: shallower pipelines."""
    problem = GemmProblem(1024, 768, 3072, jnp.int8, jnp.float16)
    assert choose_tiles(problem, H100).config.tile_n == 64  # 128 x 256 tiles would cover 24 of 132 SMs
    assert choose_tiles(problem, dataclasses.replace(H100, sm_count=32)).config.cta_tile == (128, 256)
    small = dataclasses.replace(H100, smem_per_block=100 * 1024)
    assert choose_tiles(problem, small).config.max_concurrent_steps < choose_tiles(problem, H100).config.max_concurrent_steps
