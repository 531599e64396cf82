"""The Mosaic GEMM's tile choice for every GEMM of BERT-base, pinned under the H100's properties.

The table below was read from the tile picker before the GEMM engine moved into this folder, so the
engine provably makes the H100 choice it made then. The choice depends on the rows M = batch x seq only
(and on N, K, dtypes and the epilogue), so the table is keyed by M.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import jax.numpy as jnp
import pytest

from pallas_kernels._platform import H100
from pallas_kernels.gemm.config import GemmConfig
from pallas_kernels.gemm.tile_choice import GemmProblem, choose_tiles

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
# dtype (16-bit or float32), K split on few rows. (float32 compute dtypes run their float GEMMs on XLA: the
# Mosaic GEMM takes 16-bit floats, matmul/test_supports.py.) "xla": XLA's GEMM is faster on the device.
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
OPERANDS = {"16-bit": ("bfloat16", "float16"), "8-bit": ("int8", "float8_e4m3fn")}
OUTPUTS = {"partials 16-bit": "float16", "partials float32": "float32"}


def _choice(in_dtype: str, output: str, gemm: str, m: int) -> str | dict:
    """What the GEMM runs on an H100 for this encoder call: the configuration's fields, or "xla"."""
    k, n = GEMMS[gemm]
    activation = "gelu" if gemm == "ffn1" else None
    out_dtype = {"8-bit": "int8", "16-bit": in_dtype}.get(output) or OUTPUTS[output]
    choice = choose_tiles(GemmProblem(m, n, k, in_dtype, out_dtype, activation, output.startswith("partials")), H100)
    assert choice is not None
    return "xla" if choice.xla_faster else dataclasses.asdict(choice.config)


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
    """22 configurations over BERT-base's 120 Mosaic GEMM calls; none of the table is unused."""
    used = {name for row in PICKS.values() for name in row.values()}
    assert used == set(CONFIGS) and len(CASES) == 120


def test_choice_reads_the_device():
    """Fewer SMs: the large tiles from fewer rows on; less shared memory: shallower pipelines."""
    problem = GemmProblem(1024, 768, 3072, jnp.int8, jnp.float16)
    assert choose_tiles(problem, H100).config.tile_n == 64  # 128 x 256 tiles would cover 24 of 132 SMs
    assert choose_tiles(problem, dataclasses.replace(H100, sm_count=32)).config.cta_tile == (128, 256)
    small = dataclasses.replace(H100, smem_per_block=100 * 1024)
    assert choose_tiles(problem, small).config.max_concurrent_steps < choose_tiles(problem, H100).config.max_concurrent_steps
