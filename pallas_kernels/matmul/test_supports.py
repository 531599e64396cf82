"""`mosaic.supports`: whether the Mosaic float GEMM takes an input here, on `jax.ShapeDtypeStruct` inputs."""

from __future__ import annotations

import dataclasses
import itertools

import jax

from pallas_kernels._platform import H100
from pallas_kernels.matmul.mosaic import supports


def _supports(m, k, n, dtype="bfloat16", w_dtype=None, *, activation=None, partial_sums=False, device=H100,
              interpret=False) -> bool:
    x, w = jax.ShapeDtypeStruct((m, k), dtype), jax.ShapeDtypeStruct((k, n), w_dtype or dtype)
    return supports(x, w, activation=activation, partial_sums=partial_sums, device=device, interpret=interpret)


def test_declines_what_it_cannot_run():
    assert _supports(128, 768, 2304)
    assert not _supports(128, 768, 768, "float32")  # float32 operands stay on XLA
    assert not _supports(128, 768, 768, "float16", "float32")  # an uncast weight
    assert not _supports(128, 768, 768, activation="relu")  # no in-kernel form
    assert not _supports(128, 768, 100)  # no tile divides N
    assert not _supports(128, 768, 2304, device=dataclasses.replace(H100, hopper=False))  # not sm_90
    assert _supports(128, 768, 2304, device=dataclasses.replace(H100, hopper=False), interpret=True)


def test_too_few_tiles_go_to_xla_on_the_device():
    # FFN2 at batch 1 x 128 without partial sums: 24 tiles of 64 x 64, under a quarter of the SMs, where XLA's
    # GEMM splits K and is faster; with partial sums the kernel splits K itself; interpreted it always runs
    assert not _supports(128, 3072, 768)
    assert _supports(128, 3072, 768, partial_sums=True)
    assert _supports(128, 3072, 768, interpret=True)
    # the same 24 tiles are a quarter of a GPU with 96 SMs
    assert _supports(128, 3072, 768, device=dataclasses.replace(H100, sm_count=96))


def test_bert_base_float_gemms_in_a_float32_plan_run_on_xla():
    """A float32 compute dtype: none of BERT-base's float GEMMs takes the Mosaic kernel (it needs 16-bit floats)."""
    gemms = ((768, 2304), (768, 768), (768, 3072), (3072, 768))
    for m, (k, n) in itertools.product((32, 128, 1024, 16384), gemms):
        assert not _supports(m, k, n, "float32", partial_sums=True)


def test_declining_says_why_with_the_numbers():
    from pallas_kernels.matmul.mosaic import _choice

    x, w = jax.ShapeDtypeStruct((128, 3072), "float16"), jax.ShapeDtypeStruct((3072, 768), "float16")
    reason = _choice(x, w, activation=None, out_dtype=None, partial_sums=False, device=H100, interpret=False)
    assert reason == ("mosaic float GEMM: 128 x 768 makes 24 tiles of 64 x 64, fewer than a quarter of the 132 SMs; "
                      "XLA's GEMM is faster")
