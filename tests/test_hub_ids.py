"""Hugging Face Hub ids: `samp_jax.load("org/name")` and `samp-jax convert org/name OUT` through huggingface_hub's cache.

A fake cache laid out as huggingface_hub lays it (`models--org--name/refs/main` holding a commit hash,
`snapshots/<hash>/` with the files, optionally symbolic links into `blobs/`), read with HF_HUB_OFFLINE=1;
every socket connection fails, so no test reaches the network.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
from pathlib import Path

import huggingface_hub  # imported before any test sets HF_HUB_OFFLINE: huggingface_hub reads it at import
import numpy as np
import pytest

import samp_jax
from samp_jax.checkpoint import load_checkpoint
from samp_jax.cli import main
from samp_jax.hub import hub_cache_dir, is_hub_id
from samp_jax.pooling import Pooling
from tests.conftest import make_hf_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TEXTS = ["a tiny model in a fake cache", "second text"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("tests/test_hub_ids.py: no network access in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory, minilm_dir) -> Path:
    """A tiny random BERT with its tokenizer and a sentence-transformers CLS pooling (no Normalize)."""
    folder = tmp_path_factory.mktemp("tiny_st")
    make_hf_model(folder, "BertModel", tokenizer_from=minilm_dir, seed=5)
    (folder / "modules.json").write_text(
        '[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},'
        ' {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]')
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text('{"word_embedding_dimension": 32, "pooling_mode_cls_token": true}')
    return folder


def fill_cache(cache: Path, repo_id: str, source: Path, *, blobs: bool) -> Path:
    """`source`'s files as huggingface_hub caches the repository `repo_id` at COMMIT; returns the snapshot."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = file.relative_to(source)
        target = snapshot / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if blobs:  # the real layout: content-addressed blobs, relative symbolic links from the snapshot
            blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(file, blob)
            target.symlink_to(Path(*[".."] * (len(rel.parts) + 1), "blobs", blob.name))
        else:
            shutil.copy(file, target)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.mark.parametrize("blobs", [True, False], ids=["blobs", "plain"])
def test_load_hub_id_from_cache(hub_cache, tiny_st, blobs):
    snapshot = fill_cache(hub_cache, "org/tiny-st", tiny_st, blobs=blobs)
    model = samp_jax.load("org/tiny-st")
    assert Path(model.source) == snapshot.absolute()
    assert model.pooling == Pooling("cls", normalize=False)  # read from the snapshot's modules.json
    np.testing.assert_array_equal(model.embed(TEXTS), samp_jax.load(tiny_st).embed(TEXTS))


def test_cli_convert_hub_id(hub_cache, tiny_st, tmp_path, capsys):
    fill_cache(hub_cache, "org/tiny-st", tiny_st, blobs=True)
    out = tmp_path / "converted"
    assert main(["convert", "org/tiny-st", str(out)]) == 0
    assert "converted org/tiny-st ->" in capsys.readouterr().out
    ckpt = load_checkpoint(out)
    assert ckpt.pooling == Pooling("cls", normalize=False) and ckpt.source is not None and COMMIT in ckpt.source
    np.testing.assert_array_equal(samp_jax.load(out).embed(TEXTS), samp_jax.load(tiny_st).embed(TEXTS))


def test_missing_hub_id_names_id_and_cache(hub_cache, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        samp_jax.load("org/not-cached")
    msg = str(e.value)
    assert "'org/not-cached'" in msg and str(hub_cache) in msg and "HF_HUB_OFFLINE" in msg
    assert main(["convert", "org/not-cached", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "samp-jax: error:" in err and "'org/not-cached'" in err and str(hub_cache) in err
    assert not (tmp_path / "out").exists()


def test_local_path_wins_over_hub_id(hub_cache, tiny_st, tmp_path, monkeypatch, minilm_dir):
    fill_cache(hub_cache, "org/tiny-st", tiny_st, blobs=False)
    monkeypatch.chdir(tmp_path)
    local = tmp_path / "org" / "tiny-st"
    make_hf_model(local, "BertModel", tokenizer_from=minilm_dir, seed=11)  # another model under the same name
    model = samp_jax.load("org/tiny-st")
    assert Path(model.source) == local.absolute()
    assert main(["convert", "org/tiny-st", str(tmp_path / "out")]) == 0
    assert Path(load_checkpoint(tmp_path / "out").source or "") == local.absolute()


def test_hub_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hub_cache_dir() == tmp_path / "cache"


@pytest.mark.parametrize("name, expected", [
    ("org/name", True), ("BAAI/bge-small-en-v1.5", True), ("sentence-transformers/all-MiniLM-L6-v2", True),
    ("name", False), ("a/b/c", False), ("../name", False), ("org/..", False), ("/abs/path", False), ("./x", False),
])
def test_is_hub_id(name, expected):
    assert is_hub_id(name) is expected


def test_pytorch_bin_only_repository(hub_cache, tmp_path, minilm_dir):
    source = tmp_path / "bin_only"
    make_hf_model(source, "BertModel", tokenizer_from=minilm_dir, seed=7, safe=False)
    fill_cache(hub_cache, "org/bin-only", source, blobs=True)
    model = samp_jax.load("org/bin-only")
    np.testing.assert_array_equal(model.embed(TEXTS), samp_jax.load(source).embed(TEXTS))


def test_cache_serves_when_the_network_is_down(hub_cache, tiny_st, monkeypatch):
    """Without HF_HUB_OFFLINE, huggingface_hub tries the Hub first; with no network it falls back to the cache."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    fill_cache(hub_cache, "org/tiny-st", tiny_st, blobs=True)
    model = samp_jax.load("org/tiny-st")
    assert COMMIT in (model.source or "")
    with pytest.raises(FileNotFoundError, match=r"'org/absent'.*not in the cache .*the download failed"):
        samp_jax.load("org/absent")
