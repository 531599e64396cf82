"""Reading a Hugging Face checkpoint folder's weights as numpy arrays, never running pickles."""

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

    out = {}
    try:
        # "flax" reads every dtype (bf16 included); arrays are copied to host numpy.
        with safe_open(str(path), framework="flax") as f:
            for key in f.keys():
                out[key] = np.asarray(f.get_tensor(key), dtype=np.float32)
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"corrupt safetensors file {path}: {e}") from None
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
    return {k: v.detach().to(torch.float32).numpy() for k, v in state.items()}


def read_state_dict(folder: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a Hugging Face checkpoint folder, as float32 numpy arrays."""
    folder = Path(folder)
    state: dict[str, np.ndarray] = {}
    for path in find_weight_files(folder):
        part = _read_pytorch_bin(path) if path.suffix == ".bin" else _read_safetensors(path)
        state.update(part)
    if not state:
        raise ValueError(f"the weight files of {folder} hold no tensors")
    return state
