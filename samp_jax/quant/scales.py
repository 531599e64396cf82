"""`Scales`: calibrated activation ranges (per tensor) and optional imported weight ranges.

Stored in a checkpoint as `scales.safetensors`: `act/<point>` scalars (amax),
`weight/<gemm>` per-output-channel amax vectors, and the calibration method in
the file's metadata.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

SCALES_FILE = "scales.safetensors"
WEIGHT_GEMMS = ("attention/qkv", "attention/output", "ffn/intermediate", "ffn/output")


@dataclasses.dataclass
class Scales:
    """Activation amax per quantization point (see `samp_jax.quant.points`) and weight amax per GEMM."""

    activations: dict[str, float]
    weights: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    method: str = "max"
    source: str = ""

    def __post_init__(self) -> None:
        for name, amax in self.activations.items():
            if not np.isfinite(amax) or amax < 0:
                raise ValueError(f"activation amax for {name!r} is {amax}; it must be finite and >= 0")
        self.activations = {k: float(v) for k, v in self.activations.items()}
        self.weights = {k: np.asarray(v, np.float32).reshape(-1) for k, v in self.weights.items()}

    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        tensors = {f"act/{k}": np.asarray(v, np.float32) for k, v in self.activations.items()}
        tensors.update({f"weight/{k}": v for k, v in self.weights.items()})
        save_file(tensors, str(path), metadata={"method": self.method, "source": self.source})

    @classmethod
    def load(cls, path: str | Path) -> Scales:
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"missing scales file {path}")
        acts, weights = {}, {}
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                for key in f.keys():
                    kind, _, name = key.partition("/")
                    if kind == "act":
                        acts[name] = float(f.get_tensor(key))
                    elif kind == "weight":
                        weights[name] = f.get_tensor(key)
                    else:
                        raise ValueError(f"unexpected entry {key!r}")
        except (SafetensorError, OSError, ValueError) as e:
            raise ValueError(f"corrupt scales file {path}: {e}") from None
        return cls(acts, weights, meta.get("method", "unknown"), meta.get("source", ""))
