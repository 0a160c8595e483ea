"""Small I/O helpers shared by every writer: atomic files and the cache dir."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from lamina.errors import LaminaError, OutputError


def cache_dir() -> Path:
    """lamina's cache directory.

    ``$LAMINA_CACHE`` if set, else ``$XDG_CACHE_HOME/lamina``, else
    ``~/.cache/lamina``. Not created here.
    """
    env = os.environ.get("LAMINA_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "lamina"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file lives in the same directory (so the final rename is
    atomic on POSIX) and is removed if the body raises, so a failure never
    leaves a half-written ``path``.
    """
    final = Path(path)
    parent = final.parent if str(final.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"cannot write {final}: {parent} is a file, not a directory.")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the directory {parent}: {exc.strerror}.") from exc
    if final.is_dir():
        raise OutputError(f"cannot write {final}: it is a directory; give a file name.")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file 0600; outputs are meant to be shared, so give
        # the final file the permissions a plain open() would have.
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open()`` a temporary file beside ``path`` and rename it onto ``path`` on success."""
    if mode not in ("w", "wb"):
        raise ValueError("atomic_open only writes ('w' or 'wb')")
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _sha256_memo_path() -> Path:
    return cache_dir() / "sha256-memo.json"


def sha256_memoised(path: Path) -> str:
    """Hex sha256 of a file, remembered in the cache by (path, size, mtime, inode).

    A file whose size, modification time or inode changed is hashed again. Failing to
    read or write the memo only costs the rehash.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = str(path)
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}
    memo_file = _sha256_memo_path()
    try:
        memo = json.loads(memo_file.read_text(encoding="utf-8"))
        if not isinstance(memo, dict):
            memo = {}
    except (OSError, ValueError):
        memo = {}
    hit = memo.get(key)
    if isinstance(hit, dict) and all(hit.get(k) == v for k, v in stamp.items()):
        digest = hit.get("sha256")
        if isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest):
            return digest
    digest = sha256_file(path)
    memo[key] = {**stamp, "sha256": digest}
    # Entries of files that no longer exist are dropped so the memo does not grow forever.
    memo = {k: v for k, v in memo.items() if k == key or Path(k).exists()}
    with contextlib.suppress(OSError, LaminaError), atomic_open(memo_file, "w") as fh:
        json.dump(memo, fh, indent=1, sort_keys=True)
    return digest
