"""`Scales`: calibrated activation ranges (per tensor) and optional imported weight ranges.

Stored in a checkpoint as `scales.safetensors`: `act/layer_{i}/<point>` scalars (amax),
`weight/layer_{i}/<gemm>` per-output-channel amax vectors, `channel/layer_{i}/<point>`
per-channel max |x| of the points a LayerNorm writes (what `smooth:` plans migrate, see
`samp_jax.quant.smoothing`), and the calibration method in the file's metadata. Points and
GEMMs are those of `samp_jax.quant.points`; a key naming neither is an error naming the key.

Every amax is finite and > 0, checked when a `Scales` is made or read: an amax of 0
quantizes the whole tensor to 0, and NaN or Inf make every output NaN, so such a
range is an error naming its point, never a silent substitute.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from samp_jax.quant.points import CHANNEL_POINTS, GEMMS, parse_gemm_key, parse_key

SCALES_FILE = "scales.safetensors"
ACT, WEIGHT, CHANNEL = "act", "weight", "channel"  # key prefixes: act/<point key>, weight/<GEMM key>, channel/<point key>
WEIGHT_GEMMS = tuple(g.name for g in GEMMS)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclasses.dataclass
class Scales:
    """Activation amax per quantization point (see `samp_jax.quant.points`), weight amax per GEMM, and the
    per-channel max |x| of the LayerNorm-written points (`channels`, for `smooth:` plans)."""

    activations: dict[str, float]
    weights: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    method: str = "max"
    source: str = ""
    channels: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in self.activations:
            parse_key(key)
        for key in self.weights:
            parse_gemm_key(key)
        for key in self.channels:
            if parse_key(key)[1].name not in CHANNEL_POINTS:
                raise ValueError(f"per-channel amax for {key!r}: only the LayerNorm-written points {CHANNEL_POINTS} "
                                 "are kept per channel")
        self.activations = {k: _activation_amax(k, v, self.method) for k, v in self.activations.items()}
        self.weights = {k: _weight_amax(k, v) for k, v in self.weights.items()}
        self.channels = {k: _channel_amax(k, v) for k, v in self.channels.items()}

    def to_bytes(self) -> bytes:
        """The `scales.safetensors` file's contents."""
        from safetensors.numpy import save

        tensors = {f"{ACT}/{k}": np.asarray(v, np.float32) for k, v in self.activations.items()}
        tensors.update({f"{WEIGHT}/{k}": v for k, v in self.weights.items()})
        tensors.update({f"{CHANNEL}/{k}": v for k, v in self.channels.items()})
        return save(tensors, metadata={"method": self.method, "source": self.source})

    def save(self, path: str | Path) -> None:
        """Writes the file atomically; a link at `path` is replaced, never written through."""
        from samp_jax.fileio import atomic_write_bytes

        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> Scales:
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"missing scales file {path}")
        acts, weights, channels = {}, {}, {}
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                for key in f.keys():
                    kind, _, name = key.partition("/")
                    if kind == ACT:
                        acts[name] = f.get_tensor(key)
                    elif kind == WEIGHT:
                        weights[name] = f.get_tensor(key)
                    elif kind == CHANNEL:
                        channels[name] = f.get_tensor(key)
                    else:
                        raise ValueError(f"unexpected entry {key!r}")
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"corrupt scales file {path}: {e}") from None
        try:
            return cls(acts, weights, meta.get("method", "unknown"), meta.get("source", ""), channels)
        except ValueError as e:
            raise ValueError(f"scales file {path}: {e}") from None


def _activation_amax(name: str, amax, method: str) -> float:
    """A per-tensor amax as a float; ValueError naming the point unless it is one finite value > 0."""
    a = np.asarray(amax)
    if a.shape != ():
        raise ValueError(f"activation amax for {name!r} has shape {a.shape}; a per-tensor scalar is expected")
    if a.dtype.kind not in "iuf":
        raise ValueError(f"activation amax for {name!r} is {amax!r} ({a.dtype}); a number is expected")
    value = float(a)
    if 0 < value <= _FLOAT32_MAX:  # stored as float32: finite there too; NaN fails both comparisons
        return value
    hint = ""
    if value == 0 and method.startswith("percentile"):
        hint = (f" ({method} calibration: the percentile is too low, it falls among the zeros of this tensor; "
                "99.9, 99.99 and 99.999 are usual)")
    elif value == 0:
        hint = f" ({method}: every value seen at this point was 0; an amax of 0 quantizes the tensor to 0)"
    raise ValueError(f"activation amax for {name!r} is {value}; it must be finite and > 0{hint}")


def _weight_amax(name: str, amax) -> np.ndarray:
    """Per-output-channel amax as float32 `[N]`; ValueError naming the GEMM and the first bad channel."""
    a = np.asarray(amax)
    if a.dtype.kind not in "iuf":
        raise ValueError(f"weight amax for {name!r} has dtype {a.dtype}; numbers are expected")
    vec = a.astype(np.float32).reshape(-1)
    if not vec.size:
        raise ValueError(f"weight amax for {name!r} is empty; one value per output channel is expected")
    bad = np.flatnonzero(~(np.isfinite(vec) & (vec > 0)))
    if bad.size:
        raise ValueError(f"weight amax for {name!r} has {bad.size} of {vec.size} channels that are not finite and > 0, "
                         f"e.g. channel {bad[0]} = {vec[bad[0]]}")
    return vec


def _channel_amax(name: str, amax) -> np.ndarray:
    """Per-channel max |x| as float32 `[H]`; ValueError naming the point and the first bad channel. A channel
    may be 0 (never active in the calibration data); it may not be negative, NaN or infinite."""
    a = np.asarray(amax)
    if a.dtype.kind not in "iuf" or a.ndim != 1 or not a.size:
        raise ValueError(f"per-channel amax for {name!r} has shape {a.shape} and dtype {a.dtype}; one number per "
                         "channel is expected")
    vec = a.astype(np.float32)
    bad = np.flatnonzero(~(np.isfinite(vec) & (vec >= 0)))
    if bad.size:
        raise ValueError(f"per-channel amax for {name!r} has {bad.size} of {vec.size} channels that are not finite "
                         f"and >= 0, e.g. channel {bad[0]} = {vec[bad[0]]}")
    return vec
