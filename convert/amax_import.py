"""Calibrated PyTorch quantizer ranges -> `Scales`.

Reads the `_amax` entries of a state dict in either layout users have:
  NVIDIA pytorch-quantization  `...self.query._input_quantizer._amax`,
                               `..._weight_quantizer._amax`,
                               attention BMMs `...self.matmul_{q,k,v,a}_input_quantizer._amax`
  NVIDIA ModelOpt              `...self.query.input_quantizer._amax`,
                               `...weight_quantizer._amax`,
                               attention BMMs `...self.{q,k,v,p}_bmm_quantizer._amax`
Layers are `encoder.layer.N` (DistilBERT: `transformer.layer.N`, linears `attention.q_lin`, ...,
`ffn.lin1`, `ffn.lin2`) under the family's base prefix (`bert.`; `roberta.` for XLM-R too).
Quantizers samp-jax has no use for (ModelOpt's LayerNorm-input quantizers,
embeddings, ELECTRA's embeddings_project, pooler, classifier heads) are returned as ignored; anything else with
an amax, a missing partner (key without query), a wrong shape or an amax that
is not finite and > 0 is an error naming the key. Where each quantizer lands is
read from samp-jax's table of quantization points (`samp_jax.quant.points`): a
linear layer's input quantizer gives its GEMM's input point, its weight quantizer
the GEMM's weight amax, an attention BMM quantizer the point it reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from convert.bertlike_names import BASE_PREFIXES, DISTILBERT_LINEARS
from samp_jax.config import EncoderConfig
from samp_jax.quant.points import ATTENTION_OUT, FFN_INTERMEDIATE, FFN_OUT, PROBS, QKV, K, Q, QuantGemm, QuantPoint, V
from samp_jax.quant.scales import Scales

# (module suffix inside encoder.layer.N) -> (the GEMM it is, or is the q/k/v part of; that part's slot)
_BERT_LINEARS: dict[str, tuple[QuantGemm, int | None]] = {
    "attention.self.query": (QKV, 0),
    "attention.self.key": (QKV, 1),
    "attention.self.value": (QKV, 2),
    "attention.output.dense": (ATTENTION_OUT, None),
    "intermediate.dense": (FFN_INTERMEDIATE, None),
    "output.dense": (FFN_OUT, None),
}
_MPNET_LINEARS = {
    "attention.attn.q": _BERT_LINEARS["attention.self.query"],
    "attention.attn.k": _BERT_LINEARS["attention.self.key"],
    "attention.attn.v": _BERT_LINEARS["attention.self.value"],
    "attention.attn.o": _BERT_LINEARS["attention.output.dense"],
    "intermediate.dense": _BERT_LINEARS["intermediate.dense"],
    "output.dense": _BERT_LINEARS["output.dense"],
}
_DISTILBERT_LINEARS = {name: _BERT_LINEARS[bert] for name, bert in DISTILBERT_LINEARS.items()}
_DEBERTA_LINEARS = {
    "attention.self.query_proj": _BERT_LINEARS["attention.self.query"],
    "attention.self.key_proj": _BERT_LINEARS["attention.self.key"],
    "attention.self.value_proj": _BERT_LINEARS["attention.self.value"],
    **{k: v for k, v in _BERT_LINEARS.items() if not k.startswith("attention.self.")},
}
_BMM: dict[str, QuantPoint] = {  # an attention BMM's input quantizer -> the point it reads
    "q_bmm_quantizer": Q, "k_bmm_quantizer": K, "v_bmm_quantizer": V, "p_bmm_quantizer": PROBS,
    "matmul_q_input_quantizer": Q, "matmul_k_input_quantizer": K, "matmul_v_input_quantizer": V,
    "matmul_a_input_quantizer": PROBS,
}
_IGNORED = re.compile(r"(^|\.)(embeddings|embeddings_project|pooler|classifier|pre_classifier|lm_head|cls|"
                      r"vocab_transform|vocab_projector)\."
                      r"|LayerNorm\.(_?input|_?output)_quantizer\.")
_LAYER_KEY = re.compile(r"^(?:encoder|transformer)\.layer\.(\d+)\.(.+)\.(_?input_quantizer|_?weight_quantizer)\._amax$")
_BMM_KEY = re.compile(r"^(?:encoder|transformer)\.layer\.(\d+)\.(attention\.self|attention\.attn|attention)\.(\w+)\._amax$")


def read_amax_state(path: str | Path) -> dict[str, np.ndarray]:
    """The `_amax` entries of a safetensors file or a PyTorch state dict (`weights_only=True`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"amax file {path} not found")
    if path.suffix == ".safetensors":
        from convert.hf_weights import _read_safetensors

        state = _read_safetensors(path)
    else:
        from convert.hf_weights import _read_pytorch_bin

        state = _read_pytorch_bin(path)
    amax = {k: v for k, v in state.items() if k.endswith("._amax")}
    if not amax:
        raise ValueError(f"{path} holds no quantizer `._amax` entries")
    return amax


def import_amax(state: Mapping[str, Any], config: EncoderConfig) -> tuple[Scales, list[str]]:
    """Maps amax entries onto our quantization points; returns the scales and the ignored keys."""
    entries = {k: np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, np.float32)
               for k, v in state.items() if k.endswith("._amax")}
    if not entries:
        raise ValueError("no `._amax` entries to import")
    if config.model_type == "modernbert":  # its pre-LN points have no quantizer names mapped here
        raise ValueError(f"importing amax is not implemented for model_type={config.model_type!r}; calibrate with "
                         "`samp-jax calibrate --method ...`")
    legacy = [k for k in entries if "._input_quantizer." in k or "._weight_quantizer." in k or "matmul_" in k]
    modern = [k for k in entries if k not in legacy and not _IGNORED.search(k)]
    if legacy and modern:
        raise ValueError(f"mixed pytorch-quantization ({legacy[0]!r}) and ModelOpt ({modern[0]!r}) keys")
    layout = "pytorch-quantization" if legacy else "modelopt"
    linears = {"mpnet": _MPNET_LINEARS, "distilbert": _DISTILBERT_LINEARS,
               "deberta-v2": _DEBERTA_LINEARS}.get(config.model_type, _BERT_LINEARS)
    layers = "transformer.layer" if config.model_type == "distilbert" else "encoder.layer"
    base = BASE_PREFIXES.get(config.model_type, f"{config.model_type}.")

    acts: dict[str, float] = {}
    qkv_w: dict[int, dict[int, np.ndarray]] = {}
    weights: dict[str, np.ndarray] = {}
    seen: dict[int, set[str]] = {}
    ignored, unknown = [], []
    for key, value in sorted(entries.items()):
        local = key.removeprefix(base)
        if _IGNORED.search(local):
            ignored.append(key)
            continue
        m, b = (_LAYER_KEY.match(local), _BMM_KEY.match(local)) if local.startswith(f"{layers}.") else (None, None)
        if b and int(b.group(1)) < config.num_layers and b.group(3) in _BMM:
            _put(acts, _BMM[b.group(3)].key(int(b.group(1))), _scalar(key, value))
            continue
        if not (m and int(m.group(1)) < config.num_layers and m.group(2) in linears):
            unknown.append(key)
            continue
        layer = int(m.group(1))
        module, kind = m.group(2), m.group(3).lstrip("_")
        gemm, slot = linears[module]
        seen.setdefault(layer, set()).add(f"{module}.{kind}")
        if kind == "input_quantizer":
            _put(acts, gemm.input_point.key(layer), _scalar(key, value))
            continue
        # a q/k/v part has its share of the stacked GEMM's columns
        out_features = gemm.out_features(config) // (gemm.multiple if slot is not None else 1)
        vec = value.reshape(-1)
        if vec.size == 1:
            vec = np.full(out_features, vec[0], np.float32)  # per-tensor weight amax
        if vec.size != out_features:
            raise ValueError(f"{key}: amax has shape {value.shape}; expected {out_features} per-channel values or 1")
        bad = np.flatnonzero(~(np.isfinite(vec) & (vec > 0)))
        if bad.size:
            raise ValueError(f"{key}: {bad.size} of {vec.size} weight amax values are not finite and > 0, "
                             f"e.g. channel {bad[0]} = {vec[bad[0]]}")
        if slot is None:
            weights[gemm.key(layer)] = vec
        else:
            qkv_w.setdefault(layer, {})[slot] = vec
    if unknown:
        raise ValueError(f"amax entries that map to no quantization point of this "
                         f"{config.num_layers}-layer {config.model_type} model: {unknown}")
    prefix = base if any(k.startswith(base) for k in entries) else ""
    sep = "_" if layout == "pytorch-quantization" else ""
    for layer, names in seen.items():
        for kind in {n.rsplit(".", 1)[1] for n in names}:
            absent = [f"{prefix}{layers}.{layer}.{mod}.{sep}{kind}._amax" for mod in linears
                      if f"{mod}.{kind}" not in names]
            if absent:
                raise ValueError(f"layer {layer} has some {kind} amax entries but lacks {absent}")
    for layer, parts in qkv_w.items():
        weights[QKV.key(layer)] = np.concatenate([parts[0], parts[1], parts[2]])
    return Scales(acts, weights, method=f"imported:{layout}"), ignored


def _scalar(key: str, value: np.ndarray) -> float:
    if value.size != 1:
        raise ValueError(f"{key}: activation amax has shape {value.shape}; a per-tensor scalar is expected")
    amax = float(value.reshape(()))
    if not (np.isfinite(amax) and amax > 0):
        raise ValueError(f"{key}: activation amax is {amax}; it must be finite and > 0")
    return amax


def _put(acts: dict[str, float], name: str, amax: float) -> None:
    """Q, K and V GEMMs read one tensor: their input amax agree; keep the largest if not."""
    acts[name] = max(acts.get(name, 0.0), amax)
