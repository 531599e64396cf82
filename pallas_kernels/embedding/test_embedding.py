from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.embedding.api import embedding_layer_norm
from pallas_kernels.testing import REL_TOL, assert_codes_close, layer_norm_np, rel_error
from pallas_kernels.testing_modes import Interpreted, needs_gpu


class EmbeddingTest:
    IMPLEMENTATION = "xla"

    @pytest.mark.parametrize("batch, seq, hidden", [(1, 1, 8), (3, 37, 384), (2, 128, 96)])
    @pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
    @pytest.mark.parametrize("token_types", [True, False])
    def test_against_float64(self, batch, seq, hidden, dtype, token_types):
        rng = np.random.default_rng(seq)
        v, p, t = 301, 140, 2
        word, pos, typ = (rng.standard_normal((n, hidden)).astype(np.float32) for n in (v, p, t))
        scale, bias = rng.standard_normal(hidden).astype(np.float32), rng.standard_normal(hidden).astype(np.float32)
        ids = rng.integers(0, v, (batch, seq)).astype(np.int32)
        pids = np.broadcast_to(np.arange(seq, dtype=np.int32) + 2, (batch, seq))
        tids = rng.integers(0, t, (batch, seq)).astype(np.int32) if token_types else None
        out = embedding_layer_norm(
            ids, pids, tids, jnp.asarray(word, dtype), jnp.asarray(pos, dtype),
            jnp.asarray(typ, dtype) if token_types else None, scale, bias, eps=1e-5,
            out_dtype=jnp.dtype(dtype), implementation=self.IMPLEMENTATION,
        )
        r = lambda a: np.asarray(jnp.asarray(a, dtype), np.float64)  # noqa: E731  (table as stored)
        h = r(word)[ids] + r(pos)[pids] + (r(typ)[tids] if token_types else 0)
        assert out.shape == (batch, seq, hidden) and out.dtype == jnp.dtype(dtype)
        assert rel_error(out, layer_norm_np(h, scale, bias, 1e-5)) < REL_TOL[dtype]

    @pytest.mark.parametrize("qtype", ["int8", "fp8"])
    def test_codes_out(self, qtype):
        """A full_* first layer's input: the embedding writes its 8-bit codes, against float64."""
        rng = np.random.default_rng(11)
        batch, seq, hidden, v = 2, 45, 384, 97
        word, pos, typ = (rng.standard_normal((n, hidden)).astype(np.float32) for n in (v, seq, 2))
        scale, bias = rng.standard_normal(hidden).astype(np.float32), rng.standard_normal(hidden).astype(np.float32)
        ids, tids = rng.integers(0, v, (batch, seq)), rng.integers(0, 2, (batch, seq))
        pids = np.broadcast_to(np.arange(seq), (batch, seq))
        o_scale = np.float32(0.04 if qtype == "int8" else 0.01)
        out = embedding_layer_norm(jnp.asarray(ids, jnp.int32), jnp.asarray(pids, jnp.int32), jnp.asarray(tids, jnp.int32),
                                   word, pos, typ, scale, bias, eps=1e-12, out_scale=jnp.float32(o_scale),
                                   out_qtype=qtype, implementation=self.IMPLEMENTATION)
        assert out.dtype == (jnp.int8 if qtype == "int8" else jnp.float8_e4m3fn) and out.shape == ids.shape + (hidden,)
        h = np.float64(word)[ids] + np.float64(pos)[pids] + np.float64(typ)[tids]
        assert_codes_close(out, layer_norm_np(h, scale, bias, 1e-12) / o_scale, qtype)


class TestEmbeddingXla(EmbeddingTest):
    IMPLEMENTATION = "xla"


class TestEmbeddingTritonInterpret(Interpreted, EmbeddingTest):
    IMPLEMENTATION = "triton"


class TestEmbeddingTriton(EmbeddingTest):
    IMPLEMENTATION = "triton"
    pytestmark = needs_gpu()


def test_codes_arguments_name_the_bad_value():
    ids, table, one = jnp.zeros((2, 3), jnp.int32), jnp.zeros((5, 4)), jnp.ones(4)
    with pytest.raises(ValueError, match="out_qtype='int4' needs an out_scale"):
        embedding_layer_norm(ids, ids, None, table, table, None, one, one, eps=1e-5, out_scale=jnp.float32(1),
                             out_qtype="int4")
    with pytest.raises(ValueError, match=r"out_scale.shape=\(4,\), expected a per-tensor scalar"):
        embedding_layer_norm(ids, ids, None, table, table, None, one, one, eps=1e-5, out_scale=one, out_qtype="int8")


def test_shape_errors():
    ids = jnp.zeros((2, 3), jnp.int32)
    table = jnp.zeros((5, 4))
    with pytest.raises(ValueError, match=r"position_ids.shape=\(2, 4\) != input_ids.shape=\(2, 3\)"):
        embedding_layer_norm(ids, jnp.zeros((2, 4), jnp.int32), None, table, table, None, jnp.ones(4),
                             jnp.zeros(4), eps=1e-5)
    with pytest.raises(ValueError, match="must be given together"):
        embedding_layer_norm(ids, ids, ids, table, table, None, jnp.ones(4), jnp.zeros(4), eps=1e-5)
