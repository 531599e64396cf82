from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from pallas_kernels.embedding.api import embedding_layer_norm
from pallas_kernels.testing import REL_TOL, layer_norm_np, rel_error
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


class TestEmbeddingXla(EmbeddingTest):
    IMPLEMENTATION = "xla"


class TestEmbeddingTritonInterpret(Interpreted, EmbeddingTest):
    IMPLEMENTATION = "triton"


class TestEmbeddingTriton(EmbeddingTest):
    IMPLEMENTATION = "triton"
    pytestmark = needs_gpu()


def test_shape_errors():
    ids = jnp.zeros((2, 3), jnp.int32)
    table = jnp.zeros((5, 4))
    with pytest.raises(ValueError, match=r"position_ids.shape=\(2, 4\) != input_ids.shape=\(2, 3\)"):
        embedding_layer_norm(ids, jnp.zeros((2, 4), jnp.int32), None, table, table, None, jnp.ones(4),
                             jnp.zeros(4), eps=1e-5)
    with pytest.raises(ValueError, match="must be given together"):
        embedding_layer_norm(ids, ids, ids, table, table, None, jnp.ones(4), jnp.zeros(4), eps=1e-5)
