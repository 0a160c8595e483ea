"""A killed or interrupted extraction resumes: only the missing shards are computed again.

The faults are real: ``lamina extract`` runs in a subprocess that is sent SIGKILL
(or SIGINT) once it has saved some shards; the rerun must give the table of an
uninterrupted run while computing only the windows whose shards were lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from capture.shard_files import shard_files
from reliability.faults import ctrl_c_as_in_a_terminal
from study.token_tables import save_tiny_gpt2, tiny_study_text

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    save_tiny_gpt2(root / "model")
    (root / "text.txt").write_text(tiny_study_text(8), encoding="utf-8")
    return root


def _argv(root: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "lamina", "extract", "--model", str(root / "model"),
        "--text", str(root / "text.txt"), "--window", "64", "--shard-windows", "4",
        "--out", str(out), "--no-progress",
    ]  # fmt: skip


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


def _start_and_signal(argv: list[str], shards: Path, sig: int, after: int) -> subprocess.Popen:
    """Start the run, wait until ``after`` shards are saved, send ``sig``; return the process."""
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    deadline = time.monotonic() + 300
    while len(shard_files(shards)) < after:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the run ended before saving {after} shards: {process.communicate()}")
        time.sleep(0.01)
    os.kill(process.pid, sig)
    process.wait(timeout=300)
    return process


@pytest.fixture(scope="module")
def uninterrupted(inputs):
    out = inputs / "whole" / "tokens.parquet"
    done = _run(_argv(inputs, out))
    assert done.returncode == 0, done.stderr
    return pq.read_table(out)


def _meta(table) -> dict:
    return json.loads(table.schema.metadata[b"lamina"])


def test_sigkill_loses_at_most_the_shard_in_flight(inputs, uninterrupted):
    out = inputs / "killed" / "tokens.parquet"
    shards = out.with_name("tokens.parquet.shards")
    process = _start_and_signal(_argv(inputs, out), shards, signal.SIGKILL, after=3)
    assert process.returncode == -signal.SIGKILL
    assert not out.exists()
    saved = {p.stem for p in shard_files(shards)}
    again = _run(_argv(inputs, out))
    assert again.returncode == 0, again.stderr
    table = pq.read_table(out)
    counts = _meta(table)["extraction"]
    manifest = json.loads((shards / "manifest.json").read_text())
    assert counts["shards_reused"] == len(saved) >= 3
    assert counts["shards_computed"] == len(manifest["shards"]) - len(saved)
    missing = [s for s in manifest["shards"] if s["key"] not in saved]
    assert counts["windows_computed"] == sum(s["windows"][1] - s["windows"][0] + 1 for s in missing)
    assert table.drop(["window"]).equals(uninterrupted.drop(["window"]))
    assert not list(shards.glob(".*.tmp")), "temporary files of the killed run are gone"


def test_sigint_stops_after_the_batch_keeps_the_shards_and_says_how_to_resume(
    inputs, uninterrupted
):
    out = inputs / "interrupted" / "tokens.parquet"
    shards = out.with_name("tokens.parquet.shards")
    process = _start_and_signal(_argv(inputs, out), shards, signal.SIGINT, after=2)
    stderr = process.stderr.read()
    assert process.returncode == 130, stderr
    assert "run the same command again to resume" in stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert not out.exists()
    saved = len(shard_files(shards))
    again = _run(_argv(inputs, out))
    assert again.returncode == 0, again.stderr
    table = pq.read_table(out)
    assert _meta(table)["extraction"]["shards_reused"] == saved
    assert table.drop(["window"]).equals(uninterrupted.drop(["window"]))


def test_the_first_sigint_asks_for_a_stop_and_an_ignored_one_stays_ignored():
    from lamina.capture.extraction import _stop_on_sigint

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as under a terminal
    try:
        with _stop_on_sigint(True) as stop:
            assert stop is not None and not stop()
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # the handler runs in this thread at the next check
            assert stop()
        assert signal.getsignal(signal.SIGINT) == signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under `nohup lamina ... &`
        with _stop_on_sigint(True) as stop:
            assert stop is None and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
