"""Runs the float32 model over calibration texts and feeds each quantization point's calibrator.

A model is calibrated through its public hook (`Observable`, which `SampModel` provides): its
float32 variant, its padded batches of texts and a forward pass that returns the float
activations at every quantization point (`samp_jax.quant.points`). Only real tokens count
(padding is masked out, and for the softmax probabilities only real query/key pairs).
This module sits below the model: it takes a model, it never loads one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from samp_jax import texts as texts_module
from samp_jax.calibration.calibrators import METHODS, make_calibrator
from samp_jax.config import EncoderConfig
from samp_jax.quant.points import CHANNEL_POINTS, QuantPoint, parse_key
from samp_jax.quant.scales import Scales
from samp_jax.validation import check_inputs


@runtime_checkable
class Observable(Protocol):
    """What calibration needs from a model (`samp_jax.SampModel` provides it)."""

    config: EncoderConfig

    def float32(self) -> Observable:
        """The same checkpoint in the fp32 plan."""
        ...

    def batches(self, items: Sequence, *, batch_size: int, truncation: bool = False, max_length: int | None = None,
                progress: bool | None = None) -> Iterator[tuple[np.ndarray, list, Any]]:
        """`(indices, encodings, padded batch)` for texts; the batch has `input_ids`, `attention_mask`,
        `token_type_ids`."""
        ...

    def observe(self, input_ids, attention_mask=None, token_type_ids=None) -> Mapping[str, Any]:
        """The float activations of one batch at every quantization point, keyed `layer_<i>/<point>`."""
        ...


def read_texts(path: str | Path, text_field: str | None = None, limit: int | None = None) -> list:
    """Calibration inputs from plain text (one per line), JSONL or TSV (`text_field` names the
    column; "a,b" reads sentence pairs). Errors name the file."""
    return texts_module.read_texts(path, text_field, limit, what="calibration data")


def _real_values(point: QuantPoint, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if point.pairs:  # [B, N, S, S]: real query rows x real key columns
        pair = mask[:, :, None] & mask[:, None, :]
        return np.transpose(x, (0, 2, 3, 1))[pair]
    return x[mask]


def calibrate(
    model: Observable,
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
      model: a `SampModel` (any plan: calibration always runs its float32 weights),
        e.g. `samp_jax.load(checkpoint, plan="fp32")`.
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
        for _, _, b in model.batches(texts, batch_size=batch_size, truncation=max_length is not None,
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


def _float_model(model: Observable) -> Observable:
    if not isinstance(model, Observable):
        what = f"the path {str(model)!r}" if isinstance(model, (str, Path)) else type(model).__name__
        raise ValueError(f"calibration takes a loaded model, got {what}: pass samp_jax.load(checkpoint, plan='fp32')")
    return model.float32()


def calibrate_batches(
    model: Observable,
    batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    method: str = "max",
    *,
    percentile: float = 99.99,
    progress: bool = True,
    total: int | None = None,
) -> Scales:
    """Like `calibrate`, over already tokenized `(input_ids, attention_mask, token_type_ids)` batches."""
    _check_method(method, percentile)
    model = _float_model(model)
    calibrators: dict[str, Any] = {}
    channels: dict[str, np.ndarray] = {}  # per-channel max |x| of the LayerNorm-written points (`smooth:` plans)
    n = 0
    for ids, mask, types in tqdm(batches, total=total, desc=f"calibrate ({method})", unit="batch",
                                 disable=not progress):
        ids, mask, types = check_inputs(model.config, ids, mask, types, allow_padding_rows=True)
        real = np.asarray(mask).astype(bool)
        for key, value in model.observe(ids, mask, types).items():
            _, point = parse_key(key)
            values = _real_values(point, np.asarray(value), real)
            calibrators.setdefault(key, make_calibrator(method)).collect(values)
            if point.name in CHANNEL_POINTS and values.size:
                peak = np.max(np.abs(values.astype(np.float32)), axis=0)
                channels[key] = np.maximum(channels[key], peak) if key in channels else peak
        n += 1
    if not calibrators:
        raise ValueError("no calibration batches")
    label = f"percentile-{percentile:g}" if method == "percentile" else method
    amax = {}
    for name, cal in calibrators.items():
        amax[name] = cal.compute_amax() if method == "max" else cal.compute_amax(method, percentile=percentile)
    return Scales(amax, method=label, source=f"{n} calibration batches", channels=channels)
