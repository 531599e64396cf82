"""Task heads and the task description stored with a checkpoint.

The heads reproduce Hugging Face's so that fine-tuned weights load unchanged:
- BERT sequence classification: tanh pooler on [CLS], then `classifier`.
- MPNet sequence classification: `dense` + tanh on <s>, then `out_proj`.
- token classification (both): `classifier` on every token.
Multi-label is sequence classification read through a sigmoid with per-label
thresholds; the cross-encoder is sequence classification on sentence pairs; the
bi-encoder is the bare encoder with mean pooling (`samp_jax.model`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from samp_jax.config import EncoderConfig
from samp_jax.encoder import Encoder
from samp_jax.layers import Dense
from samp_jax.modernbert.encoder import ModernBertEncoder
from samp_jax.modernbert.heads import ModernBertHead
from samp_jax.plan import Plan

TASKS = ("encoder", "sequence_classification", "multi_label_classification", "token_classification")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What the model predicts: its head, label names and decision thresholds."""

    kind: str = "encoder"
    labels: tuple[str, ...] = ()
    thresholds: tuple[float, ...] = ()  # multi-label: one per label

    def __post_init__(self) -> None:
        if self.kind not in TASKS:
            raise ValueError(f"unknown task kind={self.kind!r}; known: {TASKS}")
        if self.kind != "encoder" and not self.labels:
            raise ValueError(f"task {self.kind!r} needs label names")
        if self.kind == "multi_label_classification":
            if len(self.thresholds) != len(self.labels):
                raise ValueError(
                    f"{len(self.thresholds)} thresholds for {len(self.labels)} labels {self.labels}"
                )

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "labels": list(self.labels), "thresholds": list(self.thresholds)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskSpec:
        return cls(d["kind"], tuple(d.get("labels", ())), tuple(float(t) for t in d.get("thresholds", ())))

    def with_thresholds(self, thresholds: float | list[float]) -> TaskSpec:
        """Multi-label only: a copy with new per-label thresholds (one float for all)."""
        if self.kind != "multi_label_classification":
            raise ValueError(f"thresholds apply to multi-label models, this one is {self.kind!r}")
        if isinstance(thresholds, (int, float)):
            thresholds = [float(thresholds)] * self.num_labels
        return dataclasses.replace(self, thresholds=tuple(float(t) for t in thresholds))


class BertSequenceClassificationHead(nn.Module):
    num_labels: int

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        pooled = Dense(h.shape[-1], h.shape[-1], activation="tanh", name="pooler")(h[:, 0])
        return Dense(h.shape[-1], self.num_labels, name="classifier")(pooled, out_dtype=jnp.float32)


class MPNetSequenceClassificationHead(nn.Module):
    num_labels: int

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        x = Dense(h.shape[-1], h.shape[-1], activation="tanh", name="dense")(h[:, 0])
        return Dense(h.shape[-1], self.num_labels, name="out_proj")(x, out_dtype=jnp.float32)


class TokenClassificationHead(nn.Module):
    num_labels: int

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        return Dense(h.shape[-1], self.num_labels, name="classifier")(h, out_dtype=jnp.float32)


class EncoderWithHead(nn.Module):
    """Encoder plus the task's head. `output="hidden"` skips the head."""

    config: EncoderConfig
    task: TaskSpec
    plan: Plan | None = None  # None: float32 everywhere

    @nn.compact
    def __call__(self, input_ids, attention_mask, token_type_ids, output: str = "head") -> jax.Array:
        if self.config.model_type == "modernbert":  # pre-LN, rotary; its heads read the mask (mean pooling)
            h = ModernBertEncoder(self.config, self.plan, name="encoder")(input_ids, attention_mask)
            if output == "hidden" or self.task.kind == "encoder":
                return h.astype(jnp.float32)
            pool = self.task.kind != "token_classification"
            return ModernBertHead(self.config, self.task.num_labels, pool, name="head")(h, attention_mask)
        h = Encoder(self.config, self.plan, name="encoder")(
            input_ids, attention_mask, token_type_ids
        )
        if output == "hidden" or self.task.kind == "encoder":
            return h.astype(jnp.float32)
        return task_head(self.config, self.task, name="head")(h)


def task_head(config: EncoderConfig, task: TaskSpec, **kwargs) -> nn.Module:
    """The head module a (non-encoder) task puts on the last hidden state."""
    if task.kind == "token_classification":
        return TokenClassificationHead(task.num_labels, **kwargs)
    if config.model_type == "mpnet":
        return MPNetSequenceClassificationHead(task.num_labels, **kwargs)
    return BertSequenceClassificationHead(task.num_labels, **kwargs)
