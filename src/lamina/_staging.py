"""Output sets replaced as one, the lock that keeps two writers apart, and what killed runs left.

Every lamina command that writes an output directory does it through :func:`output_set`::

    with output_set(out, names=FILES, last=("report.html",)) as staged:
        write(staged.path / "results.json")     # the new set, in out/.lamina-stage-PID-XXXXXXXX/
    # success: the new set is moved into out; an error or a signal: out is left as it was

Inside ``out`` while a writer works:

``.lamina.lock``
    the lock: ``flock``-ed by its owner for as long as it writes, holding the owner's
    pid, host, start time and command as JSON. A second writer fails at once with one
    sentence naming the owner (:func:`hold_lock` can also wait). A lock whose owner died
    (SIGKILL, power loss) is free: the kernel drops a dead process's ``flock``, so a stale
    lock file is simply taken over. Where ``flock`` is not supported, the owner's pid is
    checked instead (taken over when no such process runs on this machine).
``.lamina-stage-PID-XXXXXXXX/``
    the new set being written; nothing in ``out`` changes until it is complete.
``.lamina-commit-PID-XXXXXXXX/``
    the complete new set being moved into place. Renaming the staging directory to this
    name is the commit point; the entries then replace their namesakes in ``out`` one
    rename each (a directory such as ``figures/`` as a whole), ``report.html`` last. A
    writer killed inside this step (a few renames, no data written) leaves its commit
    directory behind, and the next lamina command on ``out`` finishes it (roll-forward)
    before anything else, so a lamina reader never sees a mix.

Entries of ``out`` that the new set does not contain (a re-used ``tokens.parquet``, a
user's own files, the shards of a resumable extraction) are never touched. The next
writer, holding the lock, removes a killed writer's staging directory (no live writer
can own one) and its temporary files (``.NAME.PID.XXXXXXXX.tmp``, see
:func:`lamina._io.atomic_path`): only names of lamina's own patterns, and only when
their pid is no running process here or they are older than :data:`STALE_AFTER_S`.

A single output file (``lamina extract --out FILE``) is written with :func:`output_file`:
a lock beside it, the same clean-up, and the atomic rename of :func:`lamina._io.atomic_path`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path

from lamina._io import write_error
from lamina.errors import OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

LOCK_NAME = ".lamina.lock"
STAGE_PREFIX = ".lamina-stage-"
COMMIT_PREFIX = ".lamina-commit-"
OLD_PREFIX = ".old-"  # inside a commit directory: an entry of out it replaced
#: A temporary entry whose owner cannot be checked is stale after this many seconds.
STALE_AFTER_S = 600.0
#: Test hook: ``LAMINA_PAUSE_AT=NAME`` makes lamina stop at the pause point NAME (writing its
#: pid to the file ``LAMINA_PAUSE_FLAG``) until it is killed. See :func:`pause_point`.
PAUSE_ENV = "LAMINA_PAUSE_AT"
PAUSE_FLAG_ENV = "LAMINA_PAUSE_FLAG"

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.tmp$")
_OLD_TEMP = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")  # lamina 0.1: no pid
_RUN_DIR = re.compile(r"^\.lamina-(?P<kind>stage|commit)-(?P<pid>\d+)-[A-Za-z0-9_]{8}$")


@dataclasses.dataclass(frozen=True)
class StagedOutputs:
    """Where a writer puts its new set: ``path``; ``out`` is where it will be."""

    out: Path
    path: Path

    def __truediv__(self, name: str) -> Path:
        return self.path / name


# ----------------------------------------------------------------------------- processes


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (a zombie counts as dead)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def pause_point(name: str) -> None:
    """Stop here until killed if the environment asks for it (tests kill lamina at named points).

    Points: ``staged`` (the new set is complete in its staging directory, nothing
    committed), ``commit`` (committed, nothing moved), ``commit-entry`` (the first
    entry moved into place), ``cache-build`` (a model cache half built).
    """
    if os.environ.get(PAUSE_ENV) != name:
        return
    flag = os.environ.get(PAUSE_FLAG_ENV)
    if flag:
        Path(flag).write_text(str(os.getpid()), encoding="utf-8")
    time.sleep(3600)


# ----------------------------------------------------------------------------- the lock


def _owner() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["lamina", *sys.argv[1:]])[:300],
    }


def _read_owner(path: Path) -> dict:
    with contextlib.suppress(OSError, ValueError):
        owner = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(owner, dict):
            return owner
    return {}


def _flock(fd: int) -> bool | None:
    """True: locked; False: another process holds it; None: flock is not supported here."""
    if fcntl is None:  # pragma: no cover - not POSIX
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        return None  # ENOLCK, EOPNOTSUPP, EINVAL: a file system without flock
    return True


def _try_lock(path: Path) -> int | None:
    """An open, locked descriptor of ``path`` with our owner record, or None if it is held."""
    for _ in range(100):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise write_error(path.parent, exc) from exc
        try:
            locked = _flock(fd)
            if locked is None:
                owner = _read_owner(path)
                host = owner.get("host")
                pid = owner.get("pid")
                same_host = host in (None, socket.gethostname())
                if pid != os.getpid() and (not same_host or pid_alive(pid)):
                    locked = False
            if locked is False:
                os.close(fd)
                return None
            # Its last owner may have removed the file between our open and our lock.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            record = json.dumps(_owner()).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
            return fd
        except OSError as exc:
            os.close(fd)
            raise write_error(path.parent, exc) from exc
    raise OutputError(f"cannot take the lock {path}: it keeps changing; retry.")  # pragma: no cover


def _busy(path: Path, what: str) -> OutputError:
    owner = _read_owner(path)
    who = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
    if owner.get("started"):
        who += f", since {owner['started']}"
    return OutputError(
        f"{what} is being written by another lamina process ({who}); wait for it to finish "
        "or choose another output."
    )


@contextlib.contextmanager
def hold_lock(
    path: str | os.PathLike[str],
    *,
    what: str,
    wait: float | None = 0.0,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the lock file ``path`` for the block.

    ``wait``: seconds to wait for another owner to finish (0: fail at once, None: wait for
    as long as it runs); then :class:`OutputError` names the owner. ``on_wait`` receives
    one line when the wait starts. The file is removed when the block ends.
    """
    path = Path(path)
    deadline = None if wait is None else time.monotonic() + wait
    told = False
    while (fd := _try_lock(path)) is None:
        if deadline is not None and time.monotonic() >= deadline:
            raise _busy(path, what)
        if on_wait is not None and not told:
            on_wait(str(_busy(path, what)).split(";")[0] + "; waiting for it")
            told = True
        time.sleep(0.1)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                path.unlink()
        os.close(fd)


# ----------------------------------------------------------------------------- clean-up


def _age(path: Path, now: float) -> float:
    try:
        return now - path.lstat().st_mtime
    except OSError:
        return 0.0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _stale(path: Path, pid: int | None, now: float) -> bool:
    if pid is not None and pid != os.getpid() and not pid_alive(pid):
        return True
    return pid != os.getpid() and _age(path, now) > STALE_AFTER_S


def remove_stale(directory: str | os.PathLike[str], names: Collection[str]) -> list[Path]:
    """Remove the temporary files and folders of ``names`` in ``directory`` left by dead writers.

    Only lamina's temporary names count (``.NAME.PID.XXXXXXXX.tmp``, and lamina 0.1's
    ``.NAME.XXXXXXXX.tmp``), and only when stale: their pid runs no process here, or
    they are older than :data:`STALE_AFTER_S`. Returns what was removed.
    """
    removed = []
    now = time.time()
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP.match(entry.name)
        pid = int(match.group("pid")) if match else None
        if not match:
            match = _OLD_TEMP.match(entry.name)
        if match and match.group("name") in names and _stale(entry, pid, now):
            _remove(entry)
            removed.append(entry)
    return removed


def recover(out: Path, *, names: Collection[str] = (), last: Sequence[str] = ()) -> None:
    """Finish what killed writers left in ``out``; call it holding ``out``'s lock.

    Every commit directory is rolled forward (its entries moved into place), oldest
    first, and every staging directory removed: with the lock held, no live writer
    owns one. Stale temporary files of ``names`` are removed.
    """
    now = time.time()
    leftovers = []
    with contextlib.suppress(OSError):
        leftovers = sorted(out.iterdir(), key=lambda p: _age(p, now), reverse=True)
    for entry in leftovers:
        match = _RUN_DIR.match(entry.name)
        if not match or int(match.group("pid")) == os.getpid():
            continue
        if match.group("kind") == "commit":
            try:
                _roll_forward(entry, out, last)
            except OSError as exc:
                raise write_error(out, exc) from exc
        else:
            _remove(entry)
    remove_stale(out, names)


# ----------------------------------------------------------------------------- the commit


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    with contextlib.suppress(OSError):
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` to the disk (a commit survives power loss)."""
    for folder, _, files in os.walk(root):
        for name in files:
            _fsync(Path(folder) / name)
        _fsync(Path(folder))


def _order(commit: Path, last: Sequence[str]) -> list[Path]:
    entries = [p for p in commit.iterdir() if not p.name.startswith(OLD_PREFIX)]

    def key(p: Path) -> tuple:
        rank = last.index(p.name) if p.name in last else -1
        return (rank, not p.is_dir(), p.name)

    return sorted(entries, key=key)


def _roll_forward(commit: Path, out: Path, last: Sequence[str]) -> None:
    """Move every entry of the commit directory onto its namesake in ``out``; remove it."""
    for i, src in enumerate(_order(commit, last)):
        dst = out / src.name
        if src.is_dir() or dst.is_dir():
            # A folder cannot be renamed onto another: the old one steps aside first.
            old = commit / (OLD_PREFIX + src.name)
            if dst.exists() or dst.is_symlink():
                _remove(old)
                os.rename(dst, old)
            os.rename(src, dst)
        else:
            os.replace(src, dst)
        if i == 0:
            pause_point("commit-entry")
    _remove(commit)
    _fsync(out)


def _commit(stage: Path, out: Path, last: Sequence[str]) -> None:
    _sync_tree(stage)
    commit = stage.with_name(COMMIT_PREFIX + stage.name.removeprefix(STAGE_PREFIX))
    os.rename(stage, commit)
    pause_point("commit")
    _roll_forward(commit, out, last)


@contextlib.contextmanager
def output_set(
    out: str | os.PathLike[str],
    *,
    names: Collection[str] = (),
    last: Sequence[str] = (),
    wait: float | None = 0.0,
) -> Iterator[StagedOutputs]:
    """Lock ``out``, clean up after killed writers, and yield a staging directory to fill.

    When the block ends normally the staged entries replace their namesakes in ``out``
    (``last`` moved last, in that order; directories first); when it raises, the staging
    directory is removed and ``out`` is as it was (and removed if this call created it and
    it is empty). ``names``: the file names whose stale temporary files are removed.
    ``wait``: see :func:`hold_lock`.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a directory; give a directory path.")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(out, exc) from exc
    try:
        with hold_lock(out / LOCK_NAME, what=str(out), wait=wait):
            recover(out, names=names, last=last)
            try:
                stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", dir=out))
            except OSError as exc:
                raise write_error(out, exc) from exc
            try:
                yield StagedOutputs(out=out, path=stage)
                pause_point("staged")
                try:
                    _commit(stage, out, last)
                except OSError as exc:
                    raise write_error(out, exc) from exc
            finally:
                _remove(stage)
    finally:
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if empty: the run failed before committing anything


@contextlib.contextmanager
def output_file(path: str | os.PathLike[str], *, wait: float | None = 0.0) -> Iterator[Path]:
    """Lock a single output file (a lock file beside it) and remove its stale temporary files.

    Write the file itself atomically inside the block (:func:`lamina._io.atomic_path`).
    """
    final = Path(path)
    parent = final.parent if str(final.parent) else Path(".")
    if final.is_dir():
        raise OutputError(f"cannot write {final}: it is a directory; give a file name.")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(parent, exc) from exc
    with hold_lock(parent / f".{final.name}.lamina-lock", what=str(final), wait=wait):
        remove_stale(parent, (final.name,))
        yield final
