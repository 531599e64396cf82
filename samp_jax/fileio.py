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

Temporary names carry the writer's process id, so that leftovers of a dead writer can be told from
the work of a live one. New files and folders get the permissions `open` and `mkdir` would give them
(0o666 / 0o777 less the umask; a replaced file keeps its mode), not `tempfile`'s private 0o600 / 0o700.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import glob
import os
import shutil
import stat
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
    _remove_stale_temp_files(path)
    mode = _kept_mode(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=_temp_file_prefix(path), suffix=".tmp")
    try:
        os.fchmod(fd, mode)
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
    made = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}{_TMP_TAG}{os.getpid()}-"))
    os.chmod(made, 0o777 & ~_umask())
    return made


def stale_temp_dirs(target: str | Path) -> list[Path]:
    """Temporary folders that runs of a dead process left next to `target`."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    return [p for p in _dead_writers(target, _TMP_TAG) if p.is_dir() and not p.is_symlink()]


def remove_stale_temp_dirs(target: str | Path) -> None:
    for p in stale_temp_dirs(target):
        shutil.rmtree(p, ignore_errors=True)


def replace_dir(new: str | Path, target: str | Path) -> None:
    """Moves the folder `new` to `target` in one step, replacing (and deleting) what `target` held."""
    new, target = Path(new), Path(target)
    if target.is_symlink():
        raise ValueError(f"{target} is a symbolic link (to {os.readlink(target)}); give the folder itself")
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} is a file, not a folder; refusing to replace it")
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
    try:
        os.rename(new, target)  # a kill between the renames leaves `old` complete: recover_dir restores it
    except BaseException:
        os.rename(old, target)
        raise
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(target: str | Path) -> None:
    """Puts back the folder a `replace_dir` killed between its two renames left beside `target`.

    Only a dead writer's folder is touched: a live one is between its renames and finishes itself.
    Where `target` is in place, such a folder is the replaced one that the kill kept from being deleted.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return
    olds = [p for p in _dead_writers(target, _OLD_TAG) if p.is_dir() and not p.is_symlink()]
    if not olds:
        return
    if not os.path.lexists(target):
        olds.sort(key=lambda p: p.stat().st_mtime)
        os.rename(olds.pop(), target)
        _fsync_dir(target.parent)
    for p in olds:
        shutil.rmtree(p, ignore_errors=True)


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


def _dead_writers(target: Path, tag: str) -> list[Path]:
    """Entries beside `target` named `.{name}{tag}{pid}...` whose process is gone."""
    head = f".{target.name}{tag}"
    found = []
    for p in target.parent.glob(f"{glob.escape(head)}*"):
        pid = p.name[len(head):].split("-", 1)[0]
        if not (pid.isdigit() and _alive(int(pid))):
            found.append(p)
    return found


def _temp_file_prefix(path: Path) -> str:
    return f".{path.name}{_TMP_TAG}{os.getpid()}-"


def _remove_stale_temp_files(path: Path) -> None:
    """Temporary files that writers of `path` killed before their rename left behind."""
    for p in _dead_writers(path, _TMP_TAG):
        if p.name.endswith(".tmp") and p.is_file() and not p.is_symlink():
            with contextlib.suppress(OSError):
                p.unlink()


def _kept_mode(path: Path) -> int:
    """The permissions for a new file at `path`: those of the regular file it replaces, else 0o666 less the umask."""
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    return 0o666 & ~_umask()


def _umask() -> int:
    """This process's umask, read without changing it where Linux allows (os.umask can only set it)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
