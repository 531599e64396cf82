"""JSON in and out of the HTTP layer: orjson where it is installed (it writes numpy arrays directly, float32
in their shortest form, several times faster than the standard library), `json` otherwise.

Either way a float32 value read back and cast to float32 is the value written: orjson writes the shortest
string that parses back to it, `json` the exact decimal of its float64 widening.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import numpy as np

orjson: Any  # optional (`pip install orjson`): imported by name, so type checks pass with or without it
try:
    orjson = importlib.import_module("orjson")
except ImportError:
    orjson = None


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(obj: Any) -> bytes:
    """`obj` as UTF-8 JSON; numpy arrays and scalars become lists and numbers."""
    if orjson is not None:
        return orjson.dumps(obj, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(obj, default=_default, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def loads(data: bytes) -> Any:
    """Parses a UTF-8 JSON body; raises ValueError (bad JSON, bad UTF-8) with the position."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except ValueError:  # orjson also refuses escaped lone surrogates, which the tokenizer check names
            pass
    return json.loads(data.decode("utf-8"))
