"""Small I/O helpers shared by every writer: atomic files, the cache dir, OS errors as sentences."""

from __future__ import annotations

import contextlib
import errno
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


def os_error_reason(exc: BaseException) -> str:
    """What an OSError means for a writer, in words: ``the disk is full``, ``permission denied``."""
    code = _errno(exc)
    words = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "the operation is not permitted",
        errno.ENOTDIR: "a part of the path is a file, not a directory",
        errno.EFBIG: "the file is too large for the file system",
        errno.EIO: "the device reported an I/O error",
    }
    if code in words:
        return words[code]
    text = (getattr(exc, "strerror", None) or str(exc)).strip()
    text = re.split(r"(?<=\.)\s", text.splitlines()[0] if text else "", maxsplit=1)[0]
    text = text.rstrip(".") or type(exc).__name__
    return text[0].lower() + text[1:]


def _errno(exc: BaseException) -> int | None:
    """The errno of an OSError; pyarrow's carry it only in their message (``[errno 28]``)."""
    code = getattr(exc, "errno", None)
    if code is None:
        found = re.search(r"\[errno (\d+)\]", str(exc), re.IGNORECASE)
        code = int(found.group(1)) if found else None
    return code


# A path inside a staging directory (lamina._staging) is named by the path it will have.
_STAGED = re.compile(r"[/\\]\.lamina-stage-\d+-[A-Za-z0-9_]{8}(?=[/\\]|$)")


#: What lacks, by errno, when a directory cannot be written.
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_READ_ONLY = (errno.EROFS,)
_FORBIDDEN = (errno.EACCES, errno.EPERM)


def write_advice(exc: BaseException, instead: str, otherwise: str) -> str:
    """What to do about an OSError met while writing, by its errno.

    ``instead`` is how to write elsewhere, completed by a kind of directory
    (``"write to"``, ``"set LAMINA_CACHE to"``); ``otherwise`` is the advice for
    any other errno. A full disk gets ``free some space there``, a read-only file
    system a writable one, a permission error a directory one can write to.
    """
    code = _errno(exc)
    if code in _FULL:
        return f"free some space there or {instead} a directory on a disk with room"
    if code in _READ_ONLY:
        return f"{instead} a directory on a writable file system"
    if code in _FORBIDDEN:
        return f"{instead} a directory you can write to"
    return otherwise


def cache_write_message(what: str, folder: str | os.PathLike[str], exc: BaseException) -> str:
    """One sentence for a cache directory that cannot be written, its advice by the errno.

    ``"cannot write the model cache in DIR: the file system is read-only; set
    LAMINA_CACHE to a directory on a writable file system."``
    """
    advice = write_advice(
        exc, "set LAMINA_CACHE to", "check the disk, or set LAMINA_CACHE to a writable directory"
    )
    return f"cannot write the {what} in {folder}: {os_error_reason(exc)}; {advice}."


def write_error(path: str | os.PathLike[str], exc: BaseException) -> OutputError:
    """One sentence for an OSError met while writing ``path`` (raise it ``from exc``)."""
    path = _STAGED.sub("", str(path))
    advice = write_advice(exc, "write to", "check the disk and the path")
    return OutputError(f"cannot write {path}: {os_error_reason(exc)}; {advice}.")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file lives in the same directory (so the final rename is
    atomic on POSIX), is named ``.NAME.PID.XXXXXXXX.tmp`` (so a later run can
    tell a killed writer's leftover from a live one's, see :mod:`lamina._staging`)
    and is removed if the body raises, so a failure never leaves a half-written
    ``path``. An ``OSError`` (a full disk, a read-only or forbidden directory)
    becomes an :class:`OutputError` naming ``path``.
    """
    final = Path(path)
    parent = final.parent if str(final.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"cannot write {final}: {parent} is a file, not a directory.")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        advice = write_advice(exc, "write to", "write to a directory you can write to")
        raise OutputError(
            f"cannot create the directory {parent}: {os_error_reason(exc)}; {advice}."
        ) from exc
    if final.is_dir():
        raise OutputError(f"cannot write {final}: it is a directory; give a file name.")
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp", dir=parent
        )
        os.close(fd)
    except OSError as exc:
        raise write_error(final, exc) from exc
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates the file 0600; outputs are meant to be shared, so give
        # the final file the permissions a plain open() would have.
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
    except OSError as exc:
        raise write_error(final, exc) from exc
    finally:
        with contextlib.suppress(OSError):
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
