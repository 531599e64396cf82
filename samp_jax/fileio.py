"""Writes that survive a kill at any moment and never follow a link.

- `atomic_write_bytes` / `atomic_write_text`: the data goes to a new temporary file in the same
  folder (created with O_EXCL, so never through a link), is flushed to disk, then renamed over the
  target. A reader sees the old file or the new one, never a mix. If the target is a symbolic
  link, the link itself is replaced; the file it pointed to is never opened for writing.
- `replace_dir`: puts a fully written folder in place of another in one step (Linux
  `renameat2(RENAME_EXCHANGE)`; elsewhere two renames, with the old folder kept beside the target
  until the new one is in place, and `recover_dir` puts it back if the process died between them).
- `temp_dir_beside`: a fresh hidden folder next to a target, on the same file system, to build a
  replacement in. Leftovers of killed runs are found by `stale_temp_dirs` and never block a run.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil
import tempfile
from pathlib import Path

_TMP_TAG = ".samp-tmp-"
_OLD_TAG = ".samp-old-"


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Writes `data` to `path` atomically; a link at `path` is replaced, never followed."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    if path.is_dir() and not path.is_symlink():
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # renames over the directory entry: a symlink there is replaced, not followed
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def temp_dir_beside(target: str | Path) -> Path:
    """A new, empty hidden folder next to `target` (same file system), named after it and this process."""
    target = Path(target)
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}{_TMP_TAG}{os.getpid()}-"))


def stale_temp_dirs(target: str | Path) -> list[Path]:
    """Temporary folders that runs of a dead process left next to `target`."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    stale = []
    for p in target.parent.glob(f".{target.name}{_TMP_TAG}*"):
        pid = p.name[len(f".{target.name}{_TMP_TAG}"):].split("-", 1)[0]
        if p.is_dir() and not p.is_symlink() and not (pid.isdigit() and _alive(int(pid))):
            stale.append(p)
    return stale


def remove_stale_temp_dirs(target: str | Path) -> None:
    for p in stale_temp_dirs(target):
        shutil.rmtree(p, ignore_errors=True)


def replace_dir(new: str | Path, target: str | Path) -> None:
    """Moves the folder `new` to `target` in one step, replacing (and deleting) what `target` held."""
    new, target = Path(new), Path(target)
    if target.is_symlink():
        raise ValueError(f"{target} is a symbolic link (to {os.readlink(target)}); give the folder itself")
    if not target.exists():
        os.rename(new, target)
        _fsync_dir(target.parent)
        return
    if _exchange(new, target):  # `new` now holds the old contents
        _fsync_dir(target.parent)
        shutil.rmtree(new, ignore_errors=True)
        return
    old = target.with_name(f".{target.name}{_OLD_TAG}{os.getpid()}")
    os.rename(target, old)
    os.rename(new, target)  # a kill between the renames leaves `old` complete: recover_dir restores it
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(target: str | Path) -> None:
    """Puts back the folder a `replace_dir` killed between its two renames left beside `target`."""
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return
    olds = sorted(target.parent.glob(f".{target.name}{_OLD_TAG}*"), key=lambda p: p.stat().st_mtime)
    if olds:
        os.rename(olds[-1], target)


def _exchange(a: Path, b: Path) -> bool:
    """Linux renameat2(RENAME_EXCHANGE): swaps two paths atomically. False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"cannot swap {a} and {b}: {os.strerror(err)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
