"""Position ids and MPNet's relative-position buckets, from the ids' shape and the config."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from samp_jax.bertlike import PADDING_OFFSET_POSITIONS
from samp_jax.config import EncoderConfig


def position_ids_for(cfg: EncoderConfig, input_ids: jax.Array) -> jax.Array:
    """BERT, ELECTRA, DistilBERT: 0..S-1. MPNet, RoBERTa, XLM-R: counted over non-padding ids from pad+1."""
    b, s = input_ids.shape
    if cfg.model_type == "mpnet" or cfg.model_type in PADDING_OFFSET_POSITIONS:
        real = (input_ids != cfg.pad_token_id).astype(jnp.int32)
        return jnp.cumsum(real, axis=1) * real + cfg.pad_token_id
    return jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s))


def relative_position_buckets(seq_len: int, num_buckets: int, max_distance: int = 128) -> np.ndarray:
    """MPNet's (T5-style, bidirectional) bucket of each (query, key) offset, `[S, S]`.

    Computed on the host for the static sequence length, in float32 exactly as
    Hugging Face's `MPNetEncoder.relative_position_bucket` does, so that the
    buckets at the log-spaced boundaries agree.
    """
    pos = np.arange(seq_len, dtype=np.int64)
    n = -(pos[None, :] - pos[:, None])  # -(memory - context)
    half = num_buckets // 2
    ret = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    with np.errstate(divide="ignore"):
        ratio = np.log(n.astype(np.float32) / np.float32(max_exact))
        large = ratio / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact)
    large = max_exact + np.nan_to_num(large, neginf=0.0).astype(np.int64)
    large = np.minimum(large, half - 1)
    return ret + np.where(n < max_exact, n, large)
