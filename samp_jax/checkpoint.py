"""The converted checkpoint: `samp_jax.json` + an orbax parameter tree + tokenizer.

Layout of a checkpoint folder:
  samp_jax.json    format version, EncoderConfig, TaskSpec, default plan, source, and a bi-encoder's
                   pooling (absent: mean pooling, L2-normalized)
  params/          orbax-checkpoint tree (float32 numpy leaves)
  tokenizer.json   Hugging Face `tokenizers` file (absent if the source had none)
  scales.safetensors  calibrated activation amax (after `samp-jax calibrate`)

Every write leaves the old checkpoint or the new one whole, whenever the writer is killed:
a whole checkpoint is built in a hidden folder beside it and swapped in by one rename
(`samp_jax.fileio.replace_dir`); a single file is written beside its target and renamed
over it (`atomic_write_*`), which replaces a symbolic link there instead of writing through
it. Readers and writers first put back what a writer killed mid-swap left
(`fileio.recover_dir`), and a writer clears temporary folders of dead writers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from samp_jax import fileio
from samp_jax.config import EncoderConfig, read_json
from samp_jax.heads import EncoderWithHead, TaskSpec
from samp_jax.pooling import Pooling
from samp_jax.quant.scales import SCALES_FILE, Scales

CHECKPOINT_FILE = "samp_jax.json"
TOKENIZER_FILE = "tokenizer.json"
PARAMS_DIR = "params"
FORMAT = "samp-jax"
FORMAT_VERSION = 1
# orbax's name for a save in progress: a folder holding only such leftovers of a killed save (as saving
# straight into the output folder left them) counts as empty.
_ORBAX_TMP_TAG = ".orbax-checkpoint-tmp"


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
    pooling: Pooling | None = None  # a bi-encoder's sentence-transformers pooling; None: mean, L2-normalized


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


def check_finite(params: Mapping[str, Any]) -> None:
    """ValueError naming each parameter that holds NaN or Inf (they would make every output NaN)."""
    bad = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        x = np.asarray(leaf)
        if not np.isfinite(x.sum()) and not np.isfinite(x).all():  # the sum is finite for finite values unless it overflows
            n = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
            bad.append(f"params/{'/'.join(str(k.key) for k in path)} holds {n} NaN/Inf of {np.size(x)} values")
    if bad:
        raise ValueError("parameters are not finite:\n  " + "\n  ".join(bad))


def save_checkpoint(ckpt: Checkpoint, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Writes `ckpt` as the folder `out_dir`, all at once.

    `out_dir` must be new, empty, or (with `overwrite`) a samp-jax checkpoint; a folder holding
    anything else is never replaced. An overwrite replaces the whole folder: the new one holds
    only what `ckpt` holds, so the old checkpoint's scales (and tune cache and reports), which
    were measured with the old weights, are gone; calibrate again. A run killed at any moment
    leaves the old checkpoint or the new one, and the leftovers never block the next run.
    """
    import orbax.checkpoint as ocp

    out = Path(out_dir).absolute()
    if out.is_symlink():
        raise ValueError(f"output folder {out} is a symbolic link (to {os.readlink(out)}); "
                         "give the folder itself, a checkpoint is replaced as a whole")
    fileio.recover_dir(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output folder {out} is a file, not a folder")
    fileio.remove_stale_temp_dirs(out)
    held = [p.name for p in out.iterdir() if _ORBAX_TMP_TAG not in p.name] if out.is_dir() else []
    if held and not is_checkpoint(out):
        raise FileExistsError(f"{out} is not empty and not a samp-jax checkpoint (it holds {sorted(held)[:5]}); "
                              "refusing to replace it, with or without overwrite (--force): give a new or empty folder")
    if held and not overwrite:
        raise FileExistsError(f"{out} is not empty: it holds a samp-jax checkpoint; "
                              "pass overwrite=True (--force) to replace it")
    check_finite(ckpt.params)
    params = jax.tree.map(lambda x: np.asarray(x, dtype=np.float32), ckpt.params)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "encoder": ckpt.config.to_dict(),
        "task": ckpt.task.to_dict(),
        "plan": ckpt.plan,
        "source": ckpt.source,
    }
    if ckpt.pooling is not None:
        meta["pooling"] = ckpt.pooling.to_dict()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = fileio.temp_dir_beside(out)
    try:
        with _settled_orbax():
            checkpointer = ocp.StandardCheckpointer()
            try:
                checkpointer.save(tmp / PARAMS_DIR, params)
                checkpointer.wait_until_finished()
            finally:
                checkpointer.close()
        if ckpt.tokenizer_json is not None:
            fileio.atomic_write_text(tmp / TOKENIZER_FILE, ckpt.tokenizer_json)
        if ckpt.scales is not None:
            ckpt.scales.save(tmp / SCALES_FILE)
        fileio.atomic_write_text(tmp / CHECKPOINT_FILE, json.dumps(meta, indent=2) + "\n")
        fileio.replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already where the swap succeeded
    return out


def is_checkpoint(path: str | Path) -> bool:
    """Whether `path` holds a samp-jax checkpoint (after putting back one a killed writer left mid-swap)."""
    fileio.recover_dir(Path(path).absolute())
    return (Path(path) / CHECKPOINT_FILE).is_file()


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Reads a checkpoint written by `save_checkpoint`, validating every part."""
    import orbax.checkpoint as ocp

    root = Path(path).absolute()
    fileio.recover_dir(root)
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
    try:
        pooling = Pooling.from_dict(meta["pooling"]) if meta.get("pooling") is not None else None
    except (ValueError, TypeError) as e:
        raise ValueError(f"{root / CHECKPOINT_FILE}: {e}") from None
    params_dir = root / PARAMS_DIR
    if not params_dir.is_dir():
        raise FileNotFoundError(f"missing parameter folder {params_dir}")
    try:
        with _settled_orbax():
            checkpointer = ocp.StandardCheckpointer()
            try:
                params = checkpointer.restore(params_dir)
            finally:
                checkpointer.close()
    except Exception as e:  # orbax raises many types for damaged trees
        raise ValueError(f"corrupt parameter checkpoint {params_dir}: {e}") from None
    check_params(params, config, task)
    try:
        check_finite(params)
    except ValueError as e:
        raise ValueError(f"{params_dir}: {e}") from None
    tok_path = root / TOKENIZER_FILE
    tokenizer_json = tok_path.read_text(encoding="utf-8") if tok_path.is_file() else None
    scales = Scales.load(root / SCALES_FILE) if (root / SCALES_FILE).is_file() else None
    return Checkpoint(config, task, params, tokenizer_json, meta.get("plan"), meta.get("source"), scales, pooling)


def save_scales(path: str | Path, scales: Scales) -> None:
    """Stores calibrated or imported scales in an existing checkpoint (one atomic file write)."""
    root = Path(path)
    if not is_checkpoint(root):
        raise FileNotFoundError(f"{root} is not a samp-jax checkpoint (no {CHECKPOINT_FILE}); convert it first")
    scales.save(root / SCALES_FILE)


def set_default_plan(path: str | Path, plan: str | None) -> None:
    """Stores `plan` (its string form) as the checkpoint's default, used by `samp_jax.load`."""
    root = Path(path)
    if not is_checkpoint(root):
        raise FileNotFoundError(f"{root} is not a samp-jax checkpoint (no {CHECKPOINT_FILE}); convert it first")
    file = root / CHECKPOINT_FILE
    meta = read_json(file)
    meta["plan"] = plan
    fileio.atomic_write_text(file, json.dumps(meta, indent=2) + "\n")


class _SettlingEventLoop(asyncio.SelectorEventLoop):
    """An event loop whose `close` first lets its unfinished tasks end.

    orbax runs each save or restore on a new loop and closes it as soon as the result is in; when one
    tensorstore read fails, the others are still in flight, and each of their completions then reaches
    the closed loop and prints a "RuntimeError: Event loop is closed" traceback, long after the error
    was reported. Waiting for them first keeps a failed read to its one error. The failures of reads that
    ended before the loop closed (never retrieved by orbax, reported when the task is collected) go to
    the debug log: the first failure is the one raised.
    """

    def __init__(self) -> None:
        super().__init__()
        self.set_exception_handler(_log_secondary_failure)

    def close(self) -> None:
        if not self.is_running() and not self.is_closed():
            pending = [t for t in asyncio.all_tasks(self) if not t.done()]
            if pending:
                done, _ = self.run_until_complete(asyncio.wait(pending, timeout=60))
                for task in done:  # retrieved, so that asyncio does not log them as never retrieved
                    if not task.cancelled():
                        task.exception()
        super().close()


def _log_secondary_failure(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    logging.getLogger(__name__).debug("orbax task after the first failure: %s", context.get("message"),
                                      exc_info=context.get("exception"))


class _SettlingPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return _SettlingEventLoop()


_policy_lock = threading.Lock()


@contextlib.contextmanager
def _settled_orbax() -> Iterator[None]:
    """Runs orbax calls on `_SettlingEventLoop`s (the policy is set for the call, one call at a time)."""
    import warnings

    with _policy_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # event-loop policies are deprecated from Python 3.14
        previous = asyncio.get_event_loop_policy()
        asyncio.set_event_loop_policy(_SettlingPolicy())
        try:
            yield
        finally:
            asyncio.set_event_loop_policy(previous)
