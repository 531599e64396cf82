"""Sentence embeddings from the last hidden state: the pooling a bi-encoder was trained with.

A sentence-transformers model names its pooling in `modules.json` and `1_Pooling/config.json`, and
L2-normalizes when a `Normalize` module follows; `convert` reads them (`convert.sentence_transformers`)
and the checkpoint stores them as `Pooling`. A checkpoint without that record (converted before it was
stored, or from a folder that has no pooling configuration) is mean-pooled and L2-normalized.

`pool` is the specification: sentence-transformers' `Pooling._forward_padded` for right-padded rows
(the only padding the tokenizer front end makes), in float32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

# sentence-transformers' names (`Pooling.POOLING_MODES`)
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")


@dataclasses.dataclass(frozen=True)
class Pooling:
    """How token states become one embedding.

    Attributes:
      mode: one of `POOLING_MODES`.
      normalize: L2-normalize the pooled vector (a sentence-transformers `Normalize` module).
      include_prompt: sentence-transformers' flag for excluding a prompt's tokens from pooling; samp-jax
        adds no prompts, so it changes nothing here and is kept for the record.
    """

    mode: str = "mean"
    normalize: bool = True
    include_prompt: bool = True

    def __post_init__(self) -> None:
        if self.mode not in POOLING_MODES:
            raise ValueError(f"pooling mode={self.mode!r} is not one of {POOLING_MODES}")
        for name in ("normalize", "include_prompt"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"pooling {name}={value!r} must be true or false")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Pooling:
        if not isinstance(d, Mapping):
            raise ValueError(f"pooling={d!r} must be an object like {cls().to_dict()}")
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"pooling has unknown keys {unknown}; known: {[f.name for f in dataclasses.fields(cls)]}")
        return cls(**d)

    def describe(self) -> str:
        return f"{self.mode} pooling" + (", L2-normalized" if self.normalize else "")


DEFAULT_POOLING = Pooling()


def pool(hidden: jax.Array, mask: jax.Array, mode: str) -> jax.Array:
    """`[batch, seq, hidden]` token states and their `[batch, seq]` mask (1: real token, right padding) ->
    `[batch, hidden]` float32, pooled as sentence-transformers pools:

      cls: the first token; max: the largest value of each feature over real tokens; mean: the mean over real
      tokens; mean_sqrt_len_tokens: their sum over sqrt(count); weightedmean: the mean weighted by position
      (1, 2, ...); lasttoken: the last real token.

    Rows without real tokens (padding rows) give finite values that mean nothing.
    """
    h = hidden.astype(jnp.float32)
    m = mask.astype(jnp.float32)[..., None]
    if mode == "cls":
        return h[:, 0]
    if mode == "max":
        best = jnp.max(jnp.where(m > 0, h, -jnp.inf), axis=1)
        return jnp.where(jnp.any(m > 0, axis=1), best, 0.0)
    if mode in ("mean", "mean_sqrt_len_tokens"):
        summed = jnp.sum(h * m, axis=1)
        count = jnp.maximum(jnp.sum(m, axis=1), 1e-9)
        return summed / (count if mode == "mean" else jnp.sqrt(count))
    if mode == "weightedmean":
        w = m * jnp.arange(1, h.shape[1] + 1, dtype=jnp.float32)[None, :, None]
        return jnp.sum(h * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1e-9)
    if mode == "lasttoken":
        last = jnp.maximum(jnp.sum(mask.astype(jnp.int32), axis=1) - 1, 0)
        return jnp.take_along_axis(h * m, last[:, None, None], axis=1)[:, 0]
    raise ValueError(f"pooling mode={mode!r} is not one of {POOLING_MODES}")


def l2_normalize(x: jax.Array) -> jax.Array:
    """`x / max(||x||, 1e-12)` over the last axis (torch.nn.functional.normalize)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def embed_hidden(hidden: jax.Array, mask: jax.Array, pooling: Pooling, *, normalize: bool | None = None) -> jax.Array:
    """Pools `hidden` by `pooling.mode`, then L2-normalizes if `normalize` (default: `pooling.normalize`)."""
    out = pool(hidden, mask, pooling.mode)
    return l2_normalize(out) if (pooling.normalize if normalize is None else normalize) else out
