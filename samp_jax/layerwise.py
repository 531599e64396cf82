"""A plan run one layer at a time, for measuring the accuracy of many plans quickly.

A served plan is one compiled executable (`SampModel.compiled`). A sweep that
measures hundreds of plans that way compiles hundreds of executables, each for
several (batch, seq) buckets: tens of seconds apiece for a 12-layer encoder with
the Pallas kernels on a GPU, more than the sweep's arithmetic. `LayerwiseModel`
runs the same modules on the same parameters through the same kernels, but as
separately compiled pieces: the embeddings, one function per layer *mode* (shared
by every layer and every plan in that mode) and the head. A sweep then compiles
six pieces per shape instead of every plan.

What differs from the served executable: the hidden state between layers is
materialized in the compute dtype (or, before a `full_*` layer, as its 8-bit
codes, as the executable does; so a layer's function is compiled per mode and
the type of the next layer's input), which one executable also does except
where XLA keeps excess precision inside a fusion across the boundary. The
logits agree to that rounding (tests/test_layerwise.py); predictions agree
except at ties.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

import pallas_kernels as ops
from samp_jax.compiled import OUTPUT_KINDS
from samp_jax.config import EncoderConfig
from samp_jax.encoder import TransformerLayer
from samp_jax.heads import TaskSpec, encoder_module, task_head
from samp_jax.model import SampModel
from samp_jax.plan import DTYPES, LayerMode, Plan
from samp_jax.pooling import Pooling, embed_hidden


@functools.cache
def _inputs_fn(config: EncoderConfig, dtype: str, embedding: str, codes: str | None, xla: bool):
    # only the embedding and whether layer 0 reads codes matter to the inputs
    first = LayerMode.of("full", codes) if codes else LayerMode.FLOAT
    plan = Plan((first,) + (LayerMode.FLOAT,) * (config.num_layers - 1), dtype=dtype, embedding=embedding)
    module = encoder_module(config, plan)

    def run(params, ids, mask, types):
        with ops.xla_only(xla):
            return module.apply({"params": params}, ids, mask, types, inputs_only=True)

    return jax.jit(run)


@functools.cache
def _layer_fn(config: EncoderConfig, mode: LayerMode, probs: str, dtype: str, out_qtype: str | None, xla: bool,
              smooth: bool = False):
    module = TransformerLayer(config, mode, probs, DTYPES[dtype], out_qtype, smooth)

    def run(params, h, key_mask, position_bias):
        with ops.xla_only(xla):
            return module.apply({"params": params}, h, key_mask, position_bias)

    return jax.jit(run)


@functools.cache
def _output_fn(config: EncoderConfig, task: TaskSpec, kind: str, pooling: Pooling):
    head = task_head(config, task) if kind == "head" and task.kind != "encoder" else None

    def run(params, h, mask):
        if kind == "embed":  # as SampModel's: the model's pooling, L2-normalized
            return embed_hidden(h, mask, pooling, normalize=True)
        if head is None:
            return h.astype(jnp.float32)
        return head.apply({"params": params}, h)

    return jax.jit(run)


class LayerwiseModel(SampModel):
    """A `SampModel` whose forward pass is compiled per piece (embeddings, layer mode, head), not per plan.

    For measuring plans (`Tuner(..., layerwise=True)`); serve with `SampModel`.
    """

    def unpackable(self, pooling_mode: str | None = None) -> str | None:
        """Always a reason: plans are measured on padded batches (so `predict` and `embed` never pack here)."""
        return "LayerwiseModel measures plans on padded batches; run packed ones with SampModel"

    def executable(self, kind: str, batch: int, seq: int, *, packed: bool = False):
        if packed:
            raise ValueError(self.unpackable())
        if kind not in OUTPUT_KINDS:
            raise ValueError(f"unknown output kind {kind!r}; known: {OUTPUT_KINDS}")
        if self.config.model_type == "modernbert":  # its layers differ by index: one function per mode cannot serve them
            raise ValueError("LayerwiseModel composes BERT-family post-LN layers; a ModernBERT layer depends on its "
                             "index (local or global attention, layer 0's identity attn_norm): measure ModernBERT "
                             "plans with SampModel (Tuner(..., layerwise=False))")
        cfg, plan, xla = self.config, self.plan, self.kernels == "xla"
        inputs = _inputs_fn(cfg, plan.dtype, plan.embedding, plan.input_codes(0), xla)
        layers = [_layer_fn(cfg, mode, plan.probs, plan.dtype, plan.input_codes(i + 1), xla, plan.smooths(i))
                  for i, mode in enumerate(plan.modes)]
        output = _output_fn(cfg, self.task, kind, self.pooling)

        def run(params: dict[str, Any], ids, mask, types) -> jax.Array:
            enc = params["encoder"]
            layer_params = [enc[f"layer_{i}"] for i in range(cfg.num_layers)]
            rest = {k: v for k, v in enc.items() if not k.startswith("layer_")}
            h, key_mask, bias = inputs(rest, ids, mask, types)
            for fn, p in zip(layers, layer_params):
                h = fn(p, h, key_mask, bias)
            return output(params.get("head", {}), h, mask)

        return run
