"""Hugging Face Hub ids (`org/name`) -> a local model folder, through huggingface_hub's cache.

`samp_jax.load("org/name")` and `samp-jax convert org/name OUT` download the files a conversion reads
(config, weights, tokenizer, sentence-transformers module configs) into huggingface_hub's cache, or, with
`HF_HUB_OFFLINE=1` (or no network), take them from it. A local path that exists always wins over an id.

The cache folder and offline mode are read from the environment at each call (`HF_HUB_CACHE`,
`HUGGINGFACE_HUB_CACHE`, `HF_HOME`; `HF_HUB_OFFLINE`, `TRANSFORMERS_OFFLINE`), as huggingface_hub reads
them at import, so a process that sets them later is still obeyed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# `org/name`: huggingface_hub's repo-id characters; one slash
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
# What a conversion reads. Weights: safetensors first; pytorch_model.bin only where a repository has no safetensors.
_FILES = [
    "config.json", "*.safetensors", "model.safetensors.index.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt",
    "spm.model", "sentencepiece.bpe.model", "added_tokens.json",
    "modules.json", "config_sentence_transformers.json", "sentence_bert_config.json", "*/config.json",
]
_BIN_FILES = ["pytorch_model.bin", "pytorch_model-*.bin", "pytorch_model.bin.index.json"]
_TRUE = {"1", "ON", "YES", "TRUE"}


def is_hub_id(name: str) -> bool:
    """Whether `name` has the shape of a Hub model id (`org/name`)."""
    return _HUB_ID.fullmatch(name) is not None and ".." not in name


def hub_cache_dir() -> Path:
    """huggingface_hub's cache folder, as its environment variables name it now."""
    env = os.environ
    hf_home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface")
    folder = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(hf_home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(folder)))


def hub_offline() -> bool:
    """Whether downloads are off: `HF_HUB_OFFLINE` (else `TRANSFORMERS_OFFLINE`) now, else as huggingface_hub read
    it at import."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return env.upper() in _TRUE if env else bool(constants.HF_HUB_OFFLINE)


def resolve_hub_id(repo_id: str) -> Path:
    """The local snapshot folder of the Hub model `repo_id`, downloaded into the cache where needed and allowed.

    FileNotFoundError naming the id and the cache folder when the model is neither cached nor downloadable.
    """
    import huggingface_hub

    cache, offline = hub_cache_dir(), hub_offline()
    entry = cache / f"models--{repo_id.replace('/', '--')}"

    def download(patterns: list[str]) -> Path:
        return Path(huggingface_hub.snapshot_download(repo_id, allow_patterns=patterns, cache_dir=cache,
                                                      local_files_only=offline))

    try:
        folder = download(_FILES)
        if not any(folder.glob("*.safetensors")):
            folder = download(_FILES + _BIN_FILES)
    except Exception as e:  # not cached, not found, gated, no network, a proxy error: the download did not happen
        how = ("HF_HUB_OFFLINE is set, so nothing is downloaded" if offline
               else f"the download failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        raise FileNotFoundError(
            f"{repo_id!r} is not a local folder, and the Hugging Face Hub model {repo_id!r} is not in the cache "
            f"{cache} (no usable {entry.name}; {how})"
        ) from None
    return folder


def local_or_hub(path: str | Path) -> Path:
    """`path` itself where it exists or is not shaped like a Hub id; else the Hub model's cached snapshot."""
    if Path(path).exists() or not is_hub_id(str(path)):
        return Path(path)
    return resolve_hub_id(str(path))
