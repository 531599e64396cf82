"""Checkpoint writes never follow a link out of the checkpoint, and a writer killed at any moment leaves the
old state or the new one, whole, with nothing that blocks the next write."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import samp_jax
from convert import convert_hf_checkpoint
from samp_jax import fileio
from samp_jax.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint, save_scales, set_default_plan
from samp_jax.cli import main
from samp_jax.quant.scales import SCALES_FILE, Scales
from tests.conftest import REPO, make_hf_model

DEAD_PID = 99_999_999  # above Linux's pid_max (2**22): no process has it


@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory, minilm_dir):
    """Two tiny models with different weights."""
    folders = []
    for seed in (0, 1):
        folder = tmp_path_factory.mktemp(f"hf{seed}")
        make_hf_model(folder, "BertForSequenceClassification", tokenizer_from=minilm_dir, seed=seed)
        folders.append(folder)
    return folders


@pytest.fixture(scope="module")
def converted(hf_pair):
    return [convert_hf_checkpoint(f) for f in hf_pair]


def _scales(tag: int, source: str = "", channels: int = 64) -> Scales:
    """Every point of the 2-layer model, with values that say which `tag` wrote them."""
    from samp_jax.quant.points import ALL_POINTS

    acts = {f"layer_{i}/{p}": 1.0 + tag + n / 8 for i in range(2) for n, p in enumerate(ALL_POINTS)}  # float32-exact
    weights = {f"layer_{i}/ffn/intermediate": np.full(channels, 0.5 + tag, np.float32) for i in range(2)}
    return Scales(acts, weights, method=f"max-{tag}", source=source or f"tag {tag}")


def _same_params(a, b) -> bool:
    pairs = zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b), strict=True)
    return all(pa == pb and np.array_equal(np.asarray(x), np.asarray(y)) for (pa, x), (pb, y) in pairs)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".samp-tmp-" in p.name or ".samp-old-" in p.name)


# --- links -------------------------------------------------------------------------------------------------


def test_writes_replace_links_and_leave_their_targets_alone(tmp_path, converted):
    out = tmp_path / "ckpt"
    save_checkpoint(converted[0], out)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "meta.json").write_text("not yours")
    (outside / "scales.bin").write_text("not yours either")
    (outside / "cache.json").write_text("{}")
    meta = (out / CHECKPOINT_FILE).read_text()
    (outside / "real_meta.json").write_text(meta)
    (out / CHECKPOINT_FILE).unlink()
    (out / CHECKPOINT_FILE).symlink_to(outside / "real_meta.json")
    (out / SCALES_FILE).symlink_to(outside / "scales.bin")
    (out / "tune_cache.json").symlink_to(outside / "cache.json")

    set_default_plan(out, "bf16")
    save_scales(out, _scales(0))
    fileio.atomic_write_text(out / "tune_cache.json", '{"new": 1}')

    assert (outside / "real_meta.json").read_text() == meta
    assert (outside / "scales.bin").read_text() == "not yours either"
    assert (outside / "cache.json").read_text() == "{}"
    for name in (CHECKPOINT_FILE, SCALES_FILE, "tune_cache.json"):
        assert not (out / name).is_symlink()
    assert samp_jax.load(out).plan.to_string() == "bf16"
    assert load_checkpoint(out).scales.method == "max-0"


def test_output_folder_that_is_a_link_or_a_file_is_named(tmp_path, hf_pair, converted, capsys):
    real = tmp_path / "real"
    save_checkpoint(converted[0], real)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(ValueError, match=rf"output folder {link} is a symbolic link \(to {real}\); give the folder itself"):
        save_checkpoint(converted[1], link, overwrite=True)
    assert main(["convert", str(hf_pair[1]), str(link), "--force"]) == 2
    assert capsys.readouterr().err.startswith(f"samp-jax: error: output folder {link} is a symbolic link")
    assert load_checkpoint(real).source == converted[0].source  # untouched
    assert samp_jax.load(link).checkpoint.source == converted[0].source  # reading through a link is fine

    file = tmp_path / "file"
    file.write_text("mine")
    for force in ([], ["--force"]):
        assert main(["convert", str(hf_pair[0]), str(file), *force]) == 2
        assert capsys.readouterr().err == f"samp-jax: error: output folder {file} is a file, not a folder\n"
    assert file.read_text() == "mine"


# --- whole-checkpoint writes --------------------------------------------------------------------------------


def test_overwrite_drops_the_old_scales_and_keeps_permissions(tmp_path, converted):
    out = tmp_path / "ckpt"
    save_checkpoint(converted[0], out)
    save_scales(out, _scales(0))
    (out / "tune_cache.json").write_text("{}")
    with pytest.raises(FileExistsError, match="holds a samp-jax checkpoint; pass overwrite=True"):
        save_checkpoint(converted[1], out)
    save_checkpoint(converted[1], out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted([CHECKPOINT_FILE, "params", "tokenizer.json"])
    assert load_checkpoint(out).source == converted[1].source
    assert _leftovers(tmp_path) == []
    umask = fileio._umask()
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    assert (out / CHECKPOINT_FILE).stat().st_mode & 0o777 == 0o666 & ~umask


def test_leftovers_of_killed_writes_never_block_the_next(tmp_path, converted, hf_pair, capsys):
    out = tmp_path / "ckpt"
    out.mkdir()  # what a killed orbax save left in a folder before checkpoint writes were atomic
    (out / "params.orbax-checkpoint-tmp-1733").mkdir()
    stale = tmp_path / f".ckpt.samp-tmp-{DEAD_PID}-abc"  # a killed writer's half-built checkpoint
    (stale / "params").mkdir(parents=True)
    assert main(["convert", str(hf_pair[0]), str(out)]) == 0
    assert load_checkpoint(out).source == converted[0].source
    assert _leftovers(tmp_path) == []

    (out / f".{SCALES_FILE}.samp-tmp-{DEAD_PID}-x.tmp").write_bytes(b"half")  # a killed file write
    save_scales(out, _scales(1))
    assert sorted(p.name for p in out.iterdir()) == sorted([SCALES_FILE, CHECKPOINT_FILE, "params", "tokenizer.json"])

    live = out / f".{SCALES_FILE}.samp-tmp-{os.getpid()}-y.tmp"  # a live writer's file is left alone
    live.write_bytes(b"busy")
    save_scales(out, _scales(0))
    assert live.exists()


def test_a_swap_killed_between_its_renames_is_put_back(tmp_path, converted, monkeypatch):
    out = tmp_path / "ckpt"
    save_checkpoint(converted[0], out)
    old = tmp_path / f".ckpt.samp-old-{DEAD_PID}"
    out.rename(old)  # where the two-rename swap stops if killed between its renames
    assert load_checkpoint(out).source == converted[0].source
    assert not old.exists()

    monkeypatch.setattr(fileio, "_exchange", lambda a, b: False)  # file systems without renameat2 exchange
    save_checkpoint(converted[1], out, overwrite=True)
    assert load_checkpoint(out).source == converted[1].source
    shutil.copytree(out, old)  # killed after the second rename: the replaced folder is only deleted
    save_scales(out, _scales(0))
    assert _leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_old_checkpoint(tmp_path, converted, monkeypatch):
    out = tmp_path / "ckpt"
    save_checkpoint(converted[0], out)
    save_scales(out, _scales(0))

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio, "replace_dir", fail)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(converted[1], out, overwrite=True)
    ckpt = load_checkpoint(out)
    assert ckpt.source == converted[0].source and ckpt.scales.method == "max-0"
    assert _leftovers(tmp_path) == []


# --- killed at a random moment ----------------------------------------------------------------------------

# Each worker makes its one write over and over, alternating between two states, until it is killed; it says
# "ready" after its first write, so that the delays fall among writes, not imports.
WORKER = r"""
import itertools
import sys
kind, out, *args = sys.argv[1:]
if kind == "text":  # tune's cache write: fileio alone, without importing the package
    import importlib.util
    spec = importlib.util.spec_from_file_location("fileio", args[0])
    fileio = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fileio)
    texts = [open(p, encoding="utf-8").read() for p in args[1:]]
    write = lambda i: fileio.atomic_write_text(out, texts[i % 2])
else:
    from samp_jax.checkpoint import save_scales, set_default_plan
    from tests.test_atomic_writes import _scales
    if kind == "convert":
        from convert import convert_hf_checkpoint
        def write(i):
            ckpt = convert_hf_checkpoint(args[i % 2], out, overwrite=True)
            save_scales(out, _scales(i % 2, ckpt.source))
    elif kind == "scales":
        write = lambda i: save_scales(out, _scales(i % 2, channels=int(args[0])))
    else:
        write = lambda i: set_default_plan(out, ("fp16", "bf16")[i % 2])
write(1)
print("ready", flush=True)
for i in itertools.count(2):
    write(i)
"""


def _kill_at_random(kind: str, out: Path, args: list[str], delays: list[float], check) -> None:
    """Starts the worker once per delay, SIGKILLs it that long after it is ready, and checks what it left."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    for delay in delays:
        proc = subprocess.Popen([sys.executable, "-c", WORKER, kind, str(out), *args], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline() == "ready\n", proc.stderr.read()
            time.sleep(delay)
            assert proc.poll() is None, proc.stderr.read()
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        check()


@pytest.mark.slow
def test_convert_force_killed_leaves_old_or_new(tmp_path, hf_pair, converted):
    out = tmp_path / "ckpt"
    save_checkpoint(converted[0], out)
    save_scales(out, _scales(0, converted[0].source))
    sources = [c.source for c in converted]

    def check():
        ckpt = load_checkpoint(out)
        which = sources.index(ckpt.source)
        assert _same_params(ckpt.params, converted[which].params)
        if ckpt.scales is not None:  # written after the convert: always that model's
            assert ckpt.scales.source == ckpt.source and ckpt.scales.method == f"max-{which}"

    # A convert and its scales take ~0.15 s here (the write ~half of it): the delays cover a few of them.
    rng = random.Random(7)
    delays = [rng.uniform(0.0, 0.5) for _ in range(5)]
    _kill_at_random("convert", out, [str(f) for f in hf_pair], delays, check)
    save_checkpoint(converted[1], out, overwrite=True)  # the next write succeeds and clears the leftovers
    assert load_checkpoint(out).source == sources[1]
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
def test_save_scales_killed_leaves_old_or_new(tmp_path, converted):
    out = tmp_path / "ckpt"
    save_checkpoint(converted[0], out)
    channels = 1_000_000  # more than a model has, so that writing the file is most of each round (8 MB)
    save_scales(out, _scales(0, channels=channels))
    expected = [_scales(0, channels=channels), _scales(1, channels=channels)]

    def check():
        scales = load_checkpoint(out).scales
        tag = int(scales.method.removeprefix("max-"))
        assert scales.activations == expected[tag].activations and scales.source == f"tag {tag}"
        for k, v in expected[tag].weights.items():
            np.testing.assert_array_equal(scales.weights[k], v)

    rng = random.Random(8)
    _kill_at_random("scales", out, [str(channels)], [rng.uniform(0.0, 0.3) for _ in range(4)], check)
    save_scales(out, _scales(1))
    assert load_checkpoint(out).scales.method == "max-1"
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_set_default_plan_killed_leaves_old_or_new(tmp_path, converted):
    out = tmp_path / "ckpt"
    long_source = dataclasses.replace(converted[0], source="x" * 4_000_000)  # writing the file is most of each round
    save_checkpoint(long_source, out)
    set_default_plan(out, "fp16")
    meta = json.loads((out / CHECKPOINT_FILE).read_text())

    def check():
        got = json.loads((out / CHECKPOINT_FILE).read_text())
        assert got["plan"] in ("fp16", "bf16") and {**got, "plan": "fp16"} == meta
        assert samp_jax.load(out).plan.to_string() == got["plan"]

    rng = random.Random(9)
    _kill_at_random("plan", out, [], [rng.uniform(0.0, 0.3) for _ in range(4)], check)
    set_default_plan(out, "bf16")
    assert samp_jax.load(out).plan.to_string() == "bf16"
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_atomic_write_text_killed_leaves_old_or_new(tmp_path):
    texts = [json.dumps({"cache": "a" * 2_000_000}), json.dumps({"cache": "b" * 3_000_000, "more": 1})]
    sources = []
    for i, text in enumerate(texts):
        sources.append(tmp_path / f"text{i}")
        sources[-1].write_text(text)
    out = tmp_path / "tune_cache.json"
    out.write_text(texts[0])

    def check():
        assert out.read_text() in texts

    rng = random.Random(10)
    args = [str(REPO / "samp_jax" / "fileio.py"), *map(str, sources)]
    _kill_at_random("text", out, args, [rng.uniform(0.0, 0.1) for _ in range(6)], check)
    fileio.atomic_write_text(out, texts[1])
    assert out.read_text() == texts[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text0", "text1", "tune_cache.json"]
