"""Host-side checks of model inputs, before they reach XLA.

XLA's gather clamps out-of-range indices silently, so ids are range-checked
here, before the cast to int32 (a value past int32 would otherwise wrap into
range); every message names the argument and the offending value.

Inputs are integer arrays (any width, signed or not) or nested lists of Python
ints; an attention mask may also be boolean. Float arrays are refused, masks
included: a 0.0/1.0 mask is one `.astype(int)` away, and a 0.5 has no meaning.
"""

from __future__ import annotations

import numbers
import reprlib

import numpy as np

from samp_jax.config import EncoderConfig

_REPR = reprlib.Repr()
_REPR.maxlist, _REPR.maxstring, _REPR.maxother = 4, 40, 60


def _short(x) -> str:
    """A repr short enough for a message, whatever the size of `x`."""
    return _REPR.repr(x)


def _as_int_array(name: str, x) -> np.ndarray:
    if x is None:
        raise ValueError(f"{name}=None: pass token ids as a [batch, seq] array of integers")
    if isinstance(x, (str, bytes)):
        raise ValueError(f"{name}={_short(x)} is text: pass token ids (predict() takes texts)")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as e:  # ragged lists, objects numpy cannot stack
        raise ValueError(f"{name}={_short(x)} is not a rectangular array of integers ({e})") from None
    if arr.ndim == 0:
        raise ValueError(f"{name}={_short(x)} must be a 2-D [batch, seq] array, got {type(x).__name__}")
    if arr.size == 0:  # before the dtype check: np.asarray([]) is float64
        what = ("empty batch" if arr.shape[0] == 0 else "empty sequences") if arr.ndim == 2 else f"{name} is empty"
        raise ValueError(f"{what}: {name}.shape={arr.shape}")
    if arr.dtype == bool and name == "attention_mask":
        return arr.astype(np.int32)
    if arr.dtype == object:  # nested lists holding Python ints past int64, or other objects
        for i, v in enumerate(arr.flat):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                idx = [int(j) for j in np.unravel_index(i, arr.shape)]
                raise ValueError(f"{name}{idx}={_short(v)} is not an integer")
        return arr  # _check_range compares Python ints exactly, then the cast is safe
    if not np.issubdtype(arr.dtype, np.integer):
        hint = " (0/1 or booleans; cast a float mask with .astype(int))" if name == "attention_mask" else ""
        raise ValueError(f"{name} must hold integers, got dtype={arr.dtype}{hint}")
    return arr


def _check_range(name: str, arr: np.ndarray, low: int, high: int, what: str) -> None:
    bad = np.argwhere((arr < low) | (arr >= high))
    if bad.size:
        idx = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"{name}{list(idx)}={int(arr[idx])} is outside [{low}, {high}) ({what}); "
            f"{len(bad)} value(s) out of range"
        )


def check_inputs(
    config: EncoderConfig, input_ids, attention_mask=None, token_type_ids=None, *, allow_padding_rows: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validates and normalizes `(input_ids, attention_mask, token_type_ids)` to int32 `[B, S]`.

    `allow_padding_rows` accepts all-zero mask rows (batch padding whose output nobody reads).
    """
    ids = _as_int_array("input_ids", input_ids)
    if ids.ndim != 2:
        raise ValueError(f"input_ids must be 2-D [batch, seq], got shape {ids.shape}")
    batch, seq = ids.shape
    if batch == 0:
        raise ValueError(f"empty batch: input_ids.shape={ids.shape}")
    if seq == 0:
        raise ValueError(f"empty sequences: input_ids.shape={ids.shape}")
    if seq > config.max_seq_len:
        raise ValueError(
            f"sequence length {seq} exceeds the model's maximum {config.max_seq_len} "
            f"(max_position_embeddings={config.max_position_embeddings})"
        )
    _check_range("input_ids", ids, 0, config.vocab_size, f"vocab_size={config.vocab_size}")

    if attention_mask is None:
        mask = np.ones_like(ids, dtype=np.int32)
    else:
        mask = _as_int_array("attention_mask", attention_mask)
        if mask.shape != ids.shape:
            raise ValueError(f"attention_mask.shape={mask.shape} != input_ids.shape={ids.shape}")
        _check_range("attention_mask", mask, 0, 2, "a mask holds 0 or 1")
        empty = np.flatnonzero(mask.sum(axis=1) == 0)
        if empty.size and not allow_padding_rows:
            raise ValueError(f"attention_mask row {int(empty[0])} has no real token (all zeros)")

    if token_type_ids is None:
        types = np.zeros_like(ids, dtype=np.int32)
    else:
        types = _as_int_array("token_type_ids", token_type_ids)
        if types.shape != ids.shape:
            raise ValueError(f"token_type_ids.shape={types.shape} != input_ids.shape={ids.shape}")
        if config.has_token_types:
            _check_range("token_type_ids", types, 0, config.type_vocab_size,
                         f"type_vocab_size={config.type_vocab_size}")
        elif config.deberta is not None:  # DeBERTa-v3's tokenizer writes pair types its model ignores, as here
            types = np.zeros_like(types)
        elif types.any():
            raise ValueError(f"this {config.model_type} model has no token types; token_type_ids must be 0")
    return ids.astype(np.int32), mask.astype(np.int32), types.astype(np.int32)
