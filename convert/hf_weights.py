"""Reading a Hugging Face checkpoint folder's weights as numpy arrays, never running pickles.

Floating-point tensors come back as float32 and must be finite; integer and bool tensors keep
their dtype (buffers such as `embeddings.position_ids` are integer; the converter refuses any
other), so that no integer tensor passes for a weight. Errors name the file and the key.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"


def find_weight_files(folder: Path) -> list[Path]:
    """The weight files of `folder`, preferring safetensors; FileNotFoundError if none."""
    if (folder / SAFETENSORS).is_file():
        return [folder / SAFETENSORS]
    if (folder / SAFETENSORS_INDEX).is_file():
        index_path = folder / SAFETENSORS_INDEX
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"corrupt safetensors index {index_path}: {e!r}") from None
        files = [folder / name for name in sorted(set(weight_map.values()))]
        for f in files:
            if not f.is_file():
                raise FileNotFoundError(f"{index_path} names shard {f.name}, which is missing")
        return files
    if (folder / PYTORCH_BIN).is_file():
        return [folder / PYTORCH_BIN]
    raise FileNotFoundError(
        f"no weights in {folder}: expected {SAFETENSORS}, {SAFETENSORS_INDEX} or {PYTORCH_BIN}"
    )


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError, safe_open

    out, exact = {}, []
    try:
        # "flax" reads every float dtype (bf16 included), copied to host numpy; it would turn int64 into
        # int32, so integer and bool tensors are read as numpy, with the dtype the file states.
        with safe_open(str(path), framework="flax") as f:
            for key in f.keys():
                if f.get_slice(key).get_dtype().startswith(("F", "BF")):
                    out[key] = np.asarray(f.get_tensor(key), np.float32)
                else:
                    exact.append(key)
        if exact:
            with safe_open(str(path), framework="numpy") as f:
                out.update({key: f.get_tensor(key) for key in exact})
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise ValueError(f"corrupt safetensors file {path}: {e}") from None
    _check_finite(path, out)
    return out


def _read_pytorch_bin(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ValueError(
            f"{path} is a PyTorch pickle; reading it needs PyTorch (pip install torch==2.13.0), "
            "or save the checkpoint as safetensors"
        ) from None
    try:
        # weights_only=True refuses to execute arbitrary pickled code.
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise ValueError(f"corrupt or unsafe PyTorch checkpoint {path}: {e}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, expected a state dict")
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: {key!r} holds a {type(value).__name__} ({value!r:.60}), not a tensor")
        value = value.detach()
        out[key] = (value.to(torch.float32) if value.is_floating_point() else value).numpy()
    _check_finite(path, out)
    return out


def _check_finite(path: Path, state: dict[str, np.ndarray]) -> None:
    """ValueError naming each floating-point tensor of `path` that holds NaN or Inf."""
    bad = []
    for key, x in state.items():
        # The sum of finite values is finite unless it overflows; only then are the values counted.
        if x.dtype == np.float32 and not np.isfinite(x.sum()) and not np.isfinite(x).all():
            i = np.unravel_index(int(np.argmin(np.isfinite(x))), x.shape)
            bad.append(f"{key} holds {x.size - np.count_nonzero(np.isfinite(x))} NaN/Inf of {x.size} values "
                       f"(the first {x[i]} at {tuple(int(j) for j in i)})")
    if bad:
        raise ValueError(f"{path}: tensors that are not finite:\n  " + "\n  ".join(bad))


def read_state_dict(folder: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a Hugging Face checkpoint folder: float32 numpy arrays, integer and bool ones as stored."""
    folder = Path(folder)
    state: dict[str, np.ndarray] = {}
    for path in find_weight_files(folder):
        part = _read_pytorch_bin(path) if path.suffix == ".bin" else _read_safetensors(path)
        state.update(part)
    if not state:
        raise ValueError(f"the weight files of {folder} hold no tensors")
    return state
