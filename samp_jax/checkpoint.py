"""The converted checkpoint: `samp_jax.json` + an orbax parameter tree + tokenizer.

Layout of a checkpoint folder:
  samp_jax.json    format version, EncoderConfig, TaskSpec, default plan, source
  params/          orbax-checkpoint tree (float32 numpy leaves)
  tokenizer.json   Hugging Face `tokenizers` file (absent if the source had none)
  scales.safetensors  calibrated activation amax (after `samp-jax calibrate`)
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from samp_jax.config import EncoderConfig, read_json
from samp_jax.heads import EncoderWithHead, TaskSpec
from samp_jax.quant.scales import SCALES_FILE, Scales

CHECKPOINT_FILE = "samp_jax.json"
TOKENIZER_FILE = "tokenizer.json"
PARAMS_DIR = "params"
FORMAT = "samp-jax"
FORMAT_VERSION = 1


@dataclasses.dataclass
class Checkpoint:
    """Everything `samp_jax.load` needs, in memory."""

    config: EncoderConfig
    task: TaskSpec
    params: dict[str, Any]
    tokenizer_json: str | None = None
    plan: str | None = None
    source: str | None = None
    scales: Scales | None = None


def expected_param_shapes(config: EncoderConfig, task: TaskSpec) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Shape of every parameter the model declares, without allocating them."""
    module = EncoderWithHead(config, task)
    ids = jax.ShapeDtypeStruct((1, 8), jnp.int32)
    abstract = jax.eval_shape(module.init, jax.random.PRNGKey(0), ids, ids, ids)["params"]
    return {tuple(k.key for k in path): tuple(leaf.shape) for path, leaf in jax.tree_util.tree_leaves_with_path(abstract)}


def check_params(params: Mapping[str, Any], config: EncoderConfig, task: TaskSpec) -> None:
    """ValueError naming each parameter that is missing, extra or mis-shaped."""
    expected = expected_param_shapes(config, task)
    got = {tuple(k.key for k in path): tuple(np.shape(leaf)) for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
    problems = [f"missing params/{'/'.join(p)} {s}" for p, s in expected.items() if p not in got]
    problems += [f"unexpected params/{'/'.join(p)} {s}" for p, s in got.items() if p not in expected]
    problems += [
        f"params/{'/'.join(p)} has shape {got[p]}, the config implies {s}"
        for p, s in expected.items() if p in got and got[p] != s
    ]
    if problems:
        raise ValueError("parameters do not fit the model:\n  " + "\n  ".join(problems))


def save_checkpoint(ckpt: Checkpoint, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Writes `ckpt` to `out_dir` (refuses a non-empty folder unless `overwrite`)."""
    import orbax.checkpoint as ocp

    out = Path(out_dir).absolute()
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True (--force) to replace it")
        if not (out / CHECKPOINT_FILE).is_file():
            raise FileExistsError(f"{out} is not empty and not a samp-jax checkpoint; refusing to overwrite it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    params = jax.tree.map(lambda x: np.asarray(x, dtype=np.float32), ckpt.params)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(out / PARAMS_DIR, params)
    checkpointer.wait_until_finished()
    if ckpt.tokenizer_json is not None:
        (out / TOKENIZER_FILE).write_text(ckpt.tokenizer_json, encoding="utf-8")
    if ckpt.scales is not None:
        ckpt.scales.save(out / SCALES_FILE)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "encoder": ckpt.config.to_dict(),
        "task": ckpt.task.to_dict(),
        "plan": ckpt.plan,
        "source": ckpt.source,
    }
    (out / CHECKPOINT_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out


def is_checkpoint(path: str | Path) -> bool:
    return (Path(path) / CHECKPOINT_FILE).is_file()


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Reads a checkpoint written by `save_checkpoint`, validating every part."""
    import orbax.checkpoint as ocp

    root = Path(path).absolute()
    meta = read_json(root / CHECKPOINT_FILE)
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{root / CHECKPOINT_FILE}: format={meta.get('format')!r} version={meta.get('format_version')!r}, "
            f"expected {FORMAT!r} version {FORMAT_VERSION}"
        )
    try:
        config = EncoderConfig.from_dict(meta["encoder"])
        task = TaskSpec.from_dict(meta["task"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"{root / CHECKPOINT_FILE} is incomplete: {e!r}") from None
    params_dir = root / PARAMS_DIR
    if not params_dir.is_dir():
        raise FileNotFoundError(f"missing parameter folder {params_dir}")
    try:
        params = ocp.StandardCheckpointer().restore(params_dir)
    except Exception as e:  # orbax raises many types for damaged trees
        raise ValueError(f"corrupt parameter checkpoint {params_dir}: {e}") from None
    check_params(params, config, task)
    tok_path = root / TOKENIZER_FILE
    tokenizer_json = tok_path.read_text(encoding="utf-8") if tok_path.is_file() else None
    scales = Scales.load(root / SCALES_FILE) if (root / SCALES_FILE).is_file() else None
    return Checkpoint(config, task, params, tokenizer_json, meta.get("plan"), meta.get("source"), scales)


def save_scales(path: str | Path, scales: Scales) -> None:
    """Stores calibrated or imported scales in an existing checkpoint."""
    root = Path(path)
    if not is_checkpoint(root):
        raise FileNotFoundError(f"{root} is not a samp-jax checkpoint (no {CHECKPOINT_FILE}); convert it first")
    scales.save(root / SCALES_FILE)


def set_default_plan(path: str | Path, plan: str | None) -> None:
    """Stores `plan` (its string form) as the checkpoint's default, used by `samp_jax.load`."""
    file = Path(path) / CHECKPOINT_FILE
    meta = read_json(file)
    meta["plan"] = plan
    file.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
