"""The entry layer: `samp_jax.load`, which reads samp-jax checkpoints and converts Hugging Face folders.

Layers, top to bottom (an import never points up):
  samp_jax.api, samp_jax.cli   the entry layer: the only modules of samp_jax that import `convert`
  convert                      Hugging Face checkpoints -> samp-jax checkpoints; imports the core only
  samp_jax.model, .tune, ...   the library core: checkpoints, plans, quantization, calibration, the
                               encoder, the compiled runtime and the allocator; never imports `convert`
  pallas_kernels               the ops the encoder calls, through the package's public face
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

from samp_jax.checkpoint import is_checkpoint, load_checkpoint
from samp_jax.hub import local_or_hub
from samp_jax.model import SampModel
from samp_jax.plan import Plan
from samp_jax.sharding import Devices


def load(path: str | Path, plan: str | Plan | None = None, *, compilation_cache: str | Path | None = None,
         kernels: str = "auto", devices: Devices = None) -> SampModel:
    """Loads a samp-jax checkpoint, or converts a Hugging Face folder on the fly.

    Args:
      path: a folder written by `samp-jax convert`, a Hugging Face model
        folder (`config.json` + safetensors or `pytorch_model.bin`), or a
        Hugging Face Hub id ("org/name": downloaded into huggingface_hub's
        cache, or read from it with HF_HUB_OFFLINE=1); a local path that
        exists wins over an id.
      plan: a precision plan: a `Plan`, its string form ("fp32", "bf16",
        "ffn_int8:0-7,fp16:8-11", ...), or a path to its JSON; default: the
        checkpoint's stored plan, else "fp32". Quantized plans need the
        checkpoint's scales (`samp-jax calibrate`).
      compilation_cache: a folder for JAX's persistent compilation cache, so
        executables survive the process (also `$SAMP_JAX_COMPILATION_CACHE`).
      kernels: "auto" runs the Pallas kernels where the device has them (the
        Mosaic GPU 8-bit GEMMs on Hopper, the Triton LayerNorm and embedding
        on any NVIDIA GPU) and XLA elsewhere; "xla" forces the plain-XLA path.
      devices: None (the default device), "all", a count or a list of local
        devices, or a one-axis `Mesh` named "data": every batch's rows are split
        over them, parameters replicated (`samp_jax.sharding`).
    """
    cache = compilation_cache or os.environ.get("SAMP_JAX_COMPILATION_CACHE")
    if cache:
        enable_compilation_cache(cache)
    path = local_or_hub(path)  # the path itself where it exists or is not shaped like "org/name"
    if is_checkpoint(path):  # first: it also restores a checkpoint a killed replacement left beside `path`
        ckpt = load_checkpoint(path)
    elif not path.exists():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    elif (path / "config.json").is_file():
        # imported here: `convert` imports samp_jax's core, and `import convert` before `import samp_jax` must work
        from convert import convert_hf_checkpoint

        ckpt = convert_hf_checkpoint(path)
    else:
        raise FileNotFoundError(
            f"{path} is neither a samp-jax checkpoint (no samp_jax.json) nor a Hugging Face folder (no config.json)"
        )
    return SampModel(ckpt, plan=plan, kernels=kernels, devices=devices)


def enable_compilation_cache(folder: str | Path) -> None:
    """Keeps compiled executables in `folder` across processes (JAX's persistent cache)."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
