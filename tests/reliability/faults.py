"""Faults made for real, for the reliability tests.

* :func:`lamina_cli` runs ``python -m lamina`` in a subprocess, :func:`start_paused`
  starts one that stops at a named pause point (``LAMINA_PAUSE_AT``, see
  :func:`lamina._staging.pause_point`) so that a test can SIGKILL (or SIGINT) it there;
* :func:`mount_tmpfs_at` mounts a small tmpfs (a real full disk, or a real read-only
  file system) when the test runs as root where mounting is allowed;
* :data:`FAST` are analysis options that keep a run to a few seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
FAST = ["--permutations", "50", "--diagnostic-permutations", "20", "--sweep-bins", "10", "12"]


def ctrl_c_as_in_a_terminal() -> None:
    """``preexec_fn``: the child gets SIGINT's default disposition, as under a terminal.

    A shell that starts a command in the background (``nohup ... &``) makes it ignore
    SIGINT, and its children inherit that: Python then never raises KeyboardInterrupt,
    and a test of Ctrl-C would hang rather than test lamina.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def lamina_cli(
    *args: object, env: dict | None = None, input_bytes: bytes | None = None, cwd=None
) -> subprocess.CompletedProcess:
    """``python -m lamina ARGS`` in a subprocess (stdout and stderr as text)."""
    result = subprocess.run(
        [sys.executable, "-m", "lamina", *map(str, args)],
        env={**os.environ, **(env or {})},
        input=input_bytes,
        capture_output=True,
        timeout=600,
        check=False,
        cwd=cwd,
    )
    result.stdout = result.stdout.decode(errors="replace")
    result.stderr = result.stderr.decode(errors="replace")
    return result


def one_sentence_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Assert exit 2 with one line on stderr (no traceback) holding every needle."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("lamina: error: "), result.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def start_paused(
    args: list[object], point: str, tmp_path: Path, env: dict | None = None
) -> subprocess.Popen:
    """Start ``python -m lamina ARGS`` and return once it waits at pause point ``point``."""
    flag = tmp_path / f"paused-{point}-{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen(
        [sys.executable, "-m", "lamina", *map(str, args)],
        env={**os.environ, **(env or {}), "LAMINA_PAUSE_AT": point, "LAMINA_PAUSE_FLAG": str(flag)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    deadline = time.monotonic() + 300  # a guard against a hang, not a timing assertion
    while not flag.exists():
        if process.poll() is not None:
            raise AssertionError(f"lamina ended before {point}: {process.stderr.read().decode()}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError(f"lamina never reached the pause point {point}")
        time.sleep(0.05)
    return process


def sigkill(process: subprocess.Popen) -> None:
    """SIGKILL a process and reap it (a zombie would still look alive)."""
    process.send_signal(signal.SIGKILL)
    process.wait()
    if process.stderr is not None:
        process.stderr.close()


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every visible file under ``folder`` (relative path -> bytes); hidden entries skipped."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


def hidden(folder: Path) -> list[str]:
    """Hidden entries directly in ``folder`` (lamina's lock, staging and temporary names)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def mount_tmpfs_at(target: Path, options: str) -> str | None:
    """Mount a tmpfs at ``target``; None on success, else why not."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if shutil.which("mount") is None:
        return "no mount command"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if done.returncode == 0 else f"mount refused: {done.stderr.strip()}"


def remount_read_only(target: Path) -> None:
    done = subprocess.run(
        ["mount", "-o", "remount,ro", str(target)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only: {done.stderr.strip()}")


def fill(target: Path, leave: int) -> None:
    """Fill the file system of ``target`` until about ``leave`` bytes are free."""
    free = shutil.disk_usage(target).free
    with open(target / "filler", "wb") as fh:
        block = b"\0" * (1 << 16)
        remaining = max(0, free - leave)
        while remaining > 0:
            remaining -= fh.write(block[: min(len(block), remaining)])
