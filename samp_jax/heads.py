"""Task heads and the task description stored with a checkpoint.

The heads reproduce Hugging Face's so that fine-tuned weights load unchanged:
- BERT sequence classification: tanh pooler on [CLS], then `classifier`.
- MPNet, RoBERTa, XLM-R, ELECTRA, DistilBERT sequence classification: `dense` + activation on
  the first token, then `out_proj` (tanh; ELECTRA GELU; DistilBERT ReLU, its `pre_classifier`
  and `classifier` converted to `dense` and `out_proj`: `samp_jax.bertlike.SEQUENCE_HEADS`).
- DeBERTa-v2 sequence classification: BERT's, with `pooler_hidden_act` (its ContextPooler).
- token classification (all): `classifier` on every token.
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

from samp_jax.bertlike import SEQUENCE_HEADS
from samp_jax.config import EncoderConfig
from samp_jax.deberta import DebertaEncoder
from samp_jax.encoder import Encoder
from samp_jax.layers import Dense
from samp_jax.modernbert.encoder import ModernBertEncoder
from samp_jax.modernbert.heads import ModernBertHead
from samp_jax.packing import first_tokens, max_per_row, unpackable
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
    activation: str = "tanh"  # the pooler's

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        pooled = Dense(h.shape[-1], h.shape[-1], activation=self.activation, name="pooler")(h[:, 0])
        return Dense(h.shape[-1], self.num_labels, name="classifier")(pooled, out_dtype=jnp.float32)


class FirstTokenClassificationHead(nn.Module):
    """`out_proj(activation(dense(h[:, 0])))`: MPNet's, RoBERTa's (tanh), ELECTRA's (GELU), DistilBERT's (ReLU)."""

    num_labels: int
    activation: str = "tanh"

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        x = Dense(h.shape[-1], h.shape[-1], activation=self.activation, name="dense")(h[:, 0])
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
    def __call__(self, input_ids, attention_mask, token_type_ids, output: str = "head", packed: bool = False) -> jax.Array:
        """The head's float32 output (`output="hidden"`: the last hidden state).

        `packed` (`samp_jax.packing`): `attention_mask` holds segment ids; the hidden state and token heads stay
        `[R, W, ...]`, sequence heads answer per slot, `[R, K, labels]` (K = `packing.max_per_row(W)`).
        """
        if packed and (why := unpackable(self.config)) is not None:
            raise ValueError(why)
        if self.config.model_type == "modernbert":  # pre-LN, rotary; its heads read the mask (mean pooling)
            h = ModernBertEncoder(self.config, self.plan, name="encoder")(input_ids, attention_mask)
            if output == "hidden" or self.task.kind == "encoder":
                return h.astype(jnp.float32)
            pool = self.task.kind != "token_classification"
            return ModernBertHead(self.config, self.task.num_labels, pool, name="head")(h, attention_mask)
        encoder = encoder_module(self.config, self.plan, name="encoder")
        h = encoder(input_ids, attention_mask, token_type_ids, packed=True) if packed else \
            encoder(input_ids, attention_mask, token_type_ids)
        if output == "hidden" or self.task.kind == "encoder":
            return h.astype(jnp.float32)
        head = task_head(self.config, self.task, name="head")
        if not packed or self.task.kind == "token_classification":
            return head(h)
        rows, width, hidden = h.shape
        per_row = max_per_row(width)  # each slot's first token, as a batch of one-token sequences
        first = first_tokens(h, attention_mask, per_row).reshape(rows * per_row, 1, hidden)
        return head(first).reshape(rows, per_row, -1)


def encoder_module(config: EncoderConfig, plan: Plan | None = None, **kwargs) -> nn.Module:
    """The encoder module of the config's family (its `inputs_only` call gives what layer 0 takes)."""
    return (DebertaEncoder if config.model_type == "deberta-v2" else Encoder)(config, plan, **kwargs)


def task_head(config: EncoderConfig, task: TaskSpec, **kwargs) -> nn.Module:
    """The head module a (non-encoder) task puts on the last hidden state."""
    if task.kind == "token_classification":
        return TokenClassificationHead(task.num_labels, **kwargs)
    if config.model_type == "mpnet":
        return FirstTokenClassificationHead(task.num_labels, **kwargs)
    if config.model_type in SEQUENCE_HEADS:
        return FirstTokenClassificationHead(task.num_labels, SEQUENCE_HEADS[config.model_type][1], **kwargs)
    if config.deberta is not None:
        return BertSequenceClassificationHead(task.num_labels, config.deberta.pooler_hidden_act, **kwargs)
    return BertSequenceClassificationHead(task.num_labels, **kwargs)
