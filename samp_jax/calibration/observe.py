"""Runs the float32 model over calibration texts and feeds each quantization point's calibrator.

Activations are observed through Flax's `sow` (collection "intermediates") in
the float path of the modules; only real tokens count (padding is masked out,
and for the softmax probabilities only real query/key pairs).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from samp_jax import texts as texts_module
from samp_jax.calibration.calibrators import METHODS, make_calibrator
from samp_jax.quant.scales import Scales


def read_texts(path: str | Path, text_field: str | None = None, limit: int | None = None) -> list:
    """Calibration inputs from plain text (one per line), JSONL or TSV (`text_field` names the
    column; "a,b" reads sentence pairs). Errors name the file."""
    return texts_module.read_texts(path, text_field, limit, what="calibration data")


def _point_name(path) -> str:
    """("encoder", "layer_3", "attention", "q") -> "layer_3/attention/q"."""
    keys = [k.key for k in path if hasattr(k, "key")]
    return "/".join(keys[1:])


def _real_values(name: str, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if name.endswith("/probs"):  # [B, N, S, S]: real query rows x real key columns
        pair = mask[:, :, None] & mask[:, None, :]
        return np.transpose(x, (0, 2, 3, 1))[pair]
    return x[mask]


def calibrate(
    model,
    texts: Sequence,
    method: str = "max",
    *,
    percentile: float = 99.99,
    batch_size: int = 32,
    max_length: int | None = 128,
    progress: bool = True,
) -> Scales:
    """Activation amax for every quantization point, from the float32 model on `texts`.

    Args:
      model: a `SampModel` (any plan: calibration always runs its float32 weights)
        or a checkpoint path.
      texts: single texts or (a, b) pairs, as the model's task takes them.
      method: "max", "percentile", "mse" or "entropy".
      percentile: for method="percentile" (99.9, 99.99, 99.999 are usual).
      max_length: longer inputs are truncated to this many tokens.
    """
    _check_positive_int("batch_size", batch_size)
    if max_length is not None:
        _check_positive_int("max_length", max_length)
    _check_method(method, percentile)
    texts = list(texts)
    if not texts:
        raise ValueError("no calibration texts given")
    model = _float_model(model)
    batches = (
        (b.input_ids, b.attention_mask, b.token_type_ids)
        for _, _, b in model._batches(list(texts), batch_size=batch_size, truncation=max_length is not None,
                                      max_length=max_length, progress=False)
    )
    scales = calibrate_batches(model, batches, method, percentile=percentile, progress=progress,
                               total=-(-len(texts) // batch_size))
    scales.source = f"{len(texts)} calibration texts"
    return scales


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")


def _check_method(method: str, percentile: float) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; known: {METHODS}")
    if method == "percentile" and not (isinstance(percentile, (int, float)) and 0 < percentile <= 100):
        raise ValueError(f"percentile={percentile!r} must be in (0, 100] (99.9, 99.99 and 99.999 are usual)")


def _float_model(model):
    from samp_jax.model import SampModel, load

    if not isinstance(model, SampModel):
        return load(model, plan="fp32")
    return model if model.plan.to_string() == "fp32" else SampModel(model.checkpoint, plan="fp32")


def calibrate_batches(
    model,
    batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    method: str = "max",
    *,
    percentile: float = 99.99,
    progress: bool = True,
    total: int | None = None,
) -> Scales:
    """Like `calibrate`, over already tokenized `(input_ids, attention_mask, token_type_ids)` batches."""
    from samp_jax.validation import check_inputs

    _check_method(method, percentile)
    model = _float_model(model)
    observe = jax.jit(lambda p, i, m, t: model._module.apply({"params": p}, i, m, t, output="hidden",
                                                             mutable=["intermediates"])[1])
    calibrators: dict[str, object] = {}
    n = 0
    for ids, mask, types in tqdm(batches, total=total, desc=f"calibrate ({method})", unit="batch",
                                 disable=not progress):
        ids, mask, types = check_inputs(model.config, ids, mask, types, allow_padding_rows=True)
        inter = observe(model._params, ids, mask, types)
        real = np.asarray(mask).astype(bool)
        for path, value in jax.tree_util.tree_leaves_with_path(inter["intermediates"]):
            name = _point_name(path[:-1])  # drop sow's tuple index
            calibrators.setdefault(name, make_calibrator(method)).collect(_real_values(name, np.asarray(value), real))
        n += 1
    if not calibrators:
        raise ValueError("no calibration batches")
    label = f"percentile-{percentile:g}" if method == "percentile" else method
    amax = {}
    for name, cal in calibrators.items():
        amax[name] = cal.compute_amax() if method == "max" else cal.compute_amax(method, percentile=percentile)
    return Scales(amax, method=label, source=f"{n} calibration batches")
