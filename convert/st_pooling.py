"""A sentence-transformers folder's pooling: `modules.json`, the Pooling module's config, a Normalize module.

sentence-transformers runs the modules `modules.json` lists, in order: a Transformer (the encoder samp-jax
converts), a Pooling module (how token states become one vector), and often a Normalize module (L2). samp-jax
runs exactly that chain; any other module (a Dense projection, a LayerNorm, a custom module) is refused with
its name rather than silently skipped, since the embeddings would differ.

Both Pooling config formats are read: sentence-transformers 6's `{"pooling_mode": "cls", "embedding_dimension":
...}` and the older `{"pooling_mode_cls_token": true, ..., "word_embedding_dimension": ...}`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path, PurePosixPath
from typing import Any

from samp_jax.config import read_json
from samp_jax.pooling import POOLING_MODES, Pooling

log = logging.getLogger(__name__)

MODULES_FILE = "modules.json"
# the older boolean keys, in sentence-transformers' order of precedence
LEGACY_MODE_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_SUPPORTED = ("Transformer", "Pooling", "Normalize")


def _class_name(module_type: str) -> str | None:
    """`Pooling` for `sentence_transformers.models.Pooling` (and 6.x's longer paths); None for other packages."""
    if not module_type.startswith("sentence_transformers."):
        return None
    return module_type.rsplit(".", 1)[-1]


def _pooling_mode(cfg: dict[str, Any], where: Path) -> str:
    if "pooling_mode" in cfg:
        mode = cfg["pooling_mode"]
        if isinstance(mode, list) and len(mode) == 1:
            mode = mode[0]
        if isinstance(mode, list):
            raise ValueError(f"{where}: pooling_mode={mode!r} concatenates several poolings; samp-jax pools one way "
                             f"(one of {POOLING_MODES})")
        if mode not in POOLING_MODES:
            raise ValueError(f"{where}: pooling_mode={mode!r} is not one of {POOLING_MODES}")
        return str(mode)
    for key in LEGACY_MODE_KEYS:
        if key in cfg and not isinstance(cfg[key], bool):
            raise ValueError(f"{where}: {key}={cfg[key]!r} must be true or false")
    active = [key for key in LEGACY_MODE_KEYS if cfg.get(key)]
    if len(active) > 1:
        raise ValueError(f"{where}: {', '.join(f'{k}=true' for k in active)} concatenates several poolings; "
                         "samp-jax pools one way (set one of them)")
    return LEGACY_MODE_KEYS[active[0]] if active else "mean"  # none set: sentence-transformers' default


def _read_pooling_config(file: Path, hidden_size: int) -> tuple[str, bool]:
    if not file.is_file():
        raise FileNotFoundError(f"missing {file}: the Pooling module's configuration")
    cfg = read_json(file)
    mode = _pooling_mode(cfg, file)
    for key in ("embedding_dimension", "word_embedding_dimension"):
        if key in cfg and cfg[key] != hidden_size:
            raise ValueError(f"{file}: {key}={cfg[key]!r} differs from the encoder's hidden_size={hidden_size}")
    include_prompt = cfg.get("include_prompt", True)
    if not isinstance(include_prompt, bool):
        raise ValueError(f"{file}: include_prompt={include_prompt!r} must be true or false")
    return mode, include_prompt


def _check_normalize(file: Path) -> None:
    if not file.is_file():  # sentence-transformers before 6 wrote none
        return
    source = read_json(file).get("module_input_name", "sentence_embedding")
    if source != "sentence_embedding":
        raise ValueError(f"{file}: module_input_name={source!r}: samp-jax normalizes the sentence embedding only")


def _warn_about_prompts(folder: Path) -> None:
    file = folder / "config_sentence_transformers.json"
    if not file.is_file():
        return
    cfg = read_json(file)
    model_type = cfg.get("model_type", "SentenceTransformer")
    if model_type != "SentenceTransformer":
        raise ValueError(f"{file}: model_type={model_type!r}; samp-jax converts SentenceTransformer bi-encoders")
    name = cfg.get("default_prompt_name")
    if name:
        prompt = (cfg.get("prompts") or {}).get(name)
        log.warning("%s: default_prompt_name=%r: sentence-transformers prepends %r to every text; samp-jax embeds "
                    "texts as given, so prepend it yourself", file, name, prompt)


def read_pooling(folder: str | Path, hidden_size: int) -> Pooling | None:
    """The pooling of the sentence-transformers folder `folder`; None when it has no `modules.json`.

    Raises ValueError naming the module, the file and the value for what samp-jax cannot reproduce.
    """
    folder = Path(folder)
    file = folder / MODULES_FILE
    if not file.is_file():
        return None
    try:
        modules = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"corrupt JSON in {file}: {e}") from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ValueError(f"{file} must hold a list of modules like {{'path': '1_Pooling', 'type': "
                         f"'sentence_transformers.models.Pooling'}}, got {modules!r}")
    names: list[str] = []
    paths: list[str] = []
    for i, m in enumerate(modules):
        module_type, path = m.get("type"), m.get("path", "")
        if not isinstance(module_type, str) or not isinstance(path, str):
            raise ValueError(f"{file}: module {i} has type={module_type!r}, path={path!r}; both must be strings")
        pure = PurePosixPath(path)
        if pure.is_absolute() or ".." in pure.parts:
            raise ValueError(f"{file}: module {i} path={path!r} must stay inside the folder")
        name = _class_name(module_type)
        if name not in _SUPPORTED:
            what = "a Dense projection after pooling" if name == "Dense" else "a module samp-jax does not run"
            raise ValueError(f"{file}: module {i} type={module_type!r} (folder {path!r}) is {what}; samp-jax "
                             f"supports {' -> '.join(_SUPPORTED)} (Normalize optional), so its embeddings would differ")
        names.append(name)
        paths.append(path)
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ValueError(f"{file}: modules {names} are not Transformer -> Pooling [-> Normalize], the chain samp-jax runs")
    if paths[0] not in ("", "."):
        raise ValueError(f"{file}: the Transformer module's folder is path={paths[0]!r}; samp-jax reads the encoder "
                         "from the folder's top level (config.json and weights beside modules.json)")
    mode, include_prompt = _read_pooling_config(folder / paths[1] / "config.json", hidden_size)
    normalize = len(names) == 3
    if normalize:
        _check_normalize(folder / paths[2] / "config.json")
    _warn_about_prompts(folder)
    return Pooling(mode, normalize=normalize, include_prompt=include_prompt)
