"""Outputs replaced as one: a run killed at any point leaves the old set or the new one, never a
mix; a killed run's leftovers are removed by the next; a second writer is refused by the lock."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from lamina import _staging
from lamina._staging import output_file, output_set
from lamina.errors import OutputError
from lamina.pipeline import analyze_path, rebuild_report, run_study
from lamina.study import StudyOptions
from reliability.faults import (
    FAST,
    hidden,
    lamina_cli,
    one_sentence_error,
    sigkill,
    snapshot,
    start_paused,
)

OPTIONS = {"permutations": 50, "diagnostic_permutations": 20, "sweep_bins": (10, 12)}


def _analyze(table, out, seed: int):
    return analyze_path(table, out, options=StudyOptions(seed=seed, **OPTIONS))


def _seed(out) -> int:
    return json.loads((out / "results.json").read_text())["parameters"]["seed"]


@pytest.mark.slow
@pytest.mark.parametrize("point", ["staged", "commit"])
def test_killed_before_the_set_is_moved_leaves_the_old_set(point, synthetic_table, tmp_path):
    """SIGKILL with the new set complete in staging (or committed, nothing moved): old set intact."""
    out = tmp_path / "out"
    _analyze(synthetic_table, out, seed=0)
    before = snapshot(out)
    assert {
        "results.json",
        "report.html",
        "layers.csv",
        "figures/part6_laminar_profile.png",
    } <= set(before)

    args = ["analyze", synthetic_table, "--out", out, "--seed", 1, *FAST]
    sigkill(start_paused(args, point, tmp_path))
    if point == "staged":
        assert snapshot(out) == before  # byte for byte: nothing of the new set is visible
        assert any(name.startswith(".lamina-stage-") for name in hidden(out))

    # The next command on the directory removes what the killed run left (or finishes it).
    _analyze(synthetic_table, out, seed=2)
    assert _seed(out) == 2
    assert hidden(out) == []  # no staging, commit, lock or temporary file left


@pytest.mark.slow
def test_interrupted_run_cleans_up_and_keeps_the_old_set(synthetic_table, tmp_path):
    """SIGINT (Ctrl-C) with the new set staged: exit 130, old set intact, nothing left."""
    out = tmp_path / "out"
    _analyze(synthetic_table, out, seed=0)
    before = snapshot(out)
    args = ["analyze", synthetic_table, "--out", out, "--seed", 1, *FAST]
    process = start_paused(args, "staged", tmp_path)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    assert process.stderr.read().decode().strip() == "lamina: interrupted"
    process.stderr.close()
    assert snapshot(out) == before
    assert hidden(out) == []


@pytest.mark.slow
def test_killed_while_moving_the_set_is_finished_by_the_next_command(synthetic_table, tmp_path):
    """SIGKILL after the first entry of a committed set moved: `lamina report` rolls it forward."""
    out, clean = tmp_path / "out", tmp_path / "clean"
    _analyze(synthetic_table, out, seed=0)
    _analyze(synthetic_table, clean, seed=1)

    args = ["analyze", synthetic_table, "--out", out, "--seed", 1, *FAST]
    sigkill(start_paused(args, "commit-entry", tmp_path))
    assert any(name.startswith(".lamina-commit-") for name in hidden(out))

    result = lamina_cli("report", out)
    assert result.returncode == 0, result.stderr
    assert _seed(out) == 1
    assert (out / "layers.csv").read_text() == (clean / "layers.csv").read_text()
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(
        p.name for p in (clean / "figures").iterdir()
    )
    assert hidden(out) == []


@pytest.mark.slow
def test_reused_table_survives_the_swap(tmp_path):
    """`lamina run` twice: the second re-uses tokens.parquet, which stays (same file) while
    results, figures and report are replaced."""
    from study.token_tables import save_tiny_gpt2, tiny_study_text

    model = tmp_path / "tiny-gpt2"
    save_tiny_gpt2(model)
    text = tmp_path / "text.txt"
    text.write_text(tiny_study_text())
    out = tmp_path / "out"
    common = {"model_kwargs": {"device": "cpu"}, "progress": False}
    first = run_study(
        str(model), str(text), out, options=StudyOptions(layer=1, seed=0, **OPTIONS), **common
    )
    assert not first.reused_table
    inode = (out / "tokens.parquet").stat().st_ino
    table_bytes = (out / "tokens.parquet").read_bytes()

    second = run_study(
        str(model), str(text), out, options=StudyOptions(layer=1, seed=1, **OPTIONS), **common
    )
    assert second.reused_table
    assert (out / "tokens.parquet").stat().st_ino == inode
    assert (out / "tokens.parquet").read_bytes() == table_bytes
    assert _seed(out) == 1
    assert hidden(out) == []


def test_stale_leftovers_are_removed_and_nothing_else(synthetic_table, tmp_path):
    """Only lamina's own temporary names, and only stale ones (dead pid, or old), are removed."""
    out = tmp_path / "out"
    out.mkdir()
    dead = _dead_pid()
    old = time.time() - 2 * _staging.STALE_AFTER_S
    stale = [
        out / f".results.json.{dead}.abcd1234.tmp",  # a killed writer's temporary file
        out / f".lamina-stage-{dead}-abcd1234",  # a killed run's staging directory
        out / ".report.html.abcd1234.tmp",  # lamina 0.1's name (no pid), old
    ]
    kept = [
        out / ".report.html.efgh5678.tmp",  # lamina 0.1's name, fresh: its writer may be alive
        out / f".results.json.{os.getpid()}.abcd1234.tmp",  # a live process's temporary file
        out / ".results.json.notes",  # not a temporary name
        out / "my-notes.txt",  # the user's file
    ]
    stale[1].mkdir()
    (stale[1] / "results.json").write_text("half")
    for path in [stale[0], stale[2], *kept]:
        path.write_text("x")
    os.utime(stale[2], (old, old))

    _analyze(synthetic_table, out, seed=0)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)

    # `lamina report` keeps figures/, and removes a killed figure writer's file there too.
    figure_temp = out / "figures" / f".part3_layer_histograms.svg.{dead}.abcd1234.tmp"
    figure_temp.write_text("half a figure")
    rebuild_report(out)
    assert not figure_temp.exists()


@pytest.mark.slow
def test_a_second_writer_is_refused_and_a_dead_owners_lock_is_taken_over(synthetic_table, tmp_path):
    out = tmp_path / "out"
    args = ["analyze", synthetic_table, "--out", out, *FAST]
    holder = start_paused(args, "staged", tmp_path)  # holds the lock of out, then waits
    try:
        owner = json.loads((out / _staging.LOCK_NAME).read_text())
        assert owner["pid"] == holder.pid
        result = lamina_cli(*args)
        one_sentence_error(result, str(out), "another lamina process", f"pid {holder.pid}")
    finally:
        sigkill(holder)
    # The lock file of the killed owner is still there, naming a dead pid: it is stale.
    assert json.loads((out / _staging.LOCK_NAME).read_text())["pid"] == holder.pid
    _analyze(synthetic_table, out, seed=3)
    assert _seed(out) == 3
    assert hidden(out) == []


def test_without_flock_a_dead_pid_is_stale_and_a_live_one_is_not(tmp_path, monkeypatch):
    """Where flock is not supported, the lock falls back to the owner's pid."""
    monkeypatch.setattr(_staging, "_flock", lambda fd: None)
    lock = tmp_path / "out" / _staging.LOCK_NAME
    lock.parent.mkdir()
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": os.uname().nodename}))
    with output_set(tmp_path / "out") as staged:
        (staged.path / "results.json").write_text("{}")
    assert (tmp_path / "out" / "results.json").read_text() == "{}"

    lock.write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename}))
    with pytest.raises(OutputError, match=f"pid {os.getppid()}"), output_set(tmp_path / "out"):
        pass


@pytest.mark.slow
def test_a_failed_run_leaves_the_old_set_and_no_staging(synthetic_table, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _analyze(synthetic_table, out, seed=0)
    before = snapshot(out)

    def broken(*args, **kwargs):
        raise RuntimeError("rendering failed")

    monkeypatch.setattr("lamina.report.html.render_report", broken)
    with pytest.raises(RuntimeError):
        _analyze(synthetic_table, out, seed=1)
    assert snapshot(out) == before
    assert hidden(out) == []


def test_a_new_directory_is_not_left_behind_by_a_failed_run(synthetic_table, tmp_path):
    out = tmp_path / "new-out"
    with pytest.raises(Exception, match="layer 99"):
        analyze_path(synthetic_table, out, options=StudyOptions(layer=99, **OPTIONS))
    assert not out.exists()


def test_output_directory_that_is_the_working_directory_keeps_other_files(
    synthetic_table, tmp_path, monkeypatch
):
    """`lamina analyze tokens.parquet` from inside a folder writes beside the user's files."""
    monkeypatch.chdir(synthetic_table.parent)
    (synthetic_table.parent / "notes.txt").write_text("mine")
    _analyze("tokens.parquet", None, seed=0)
    assert (synthetic_table.parent / "notes.txt").read_text() == "mine"
    assert (synthetic_table.parent / "report.html").is_file()
    assert hidden(synthetic_table.parent) == []


def test_single_output_file_is_locked_and_its_stale_temporary_files_removed(tmp_path):
    target = tmp_path / "tokens.parquet"
    leftover = tmp_path / f".tokens.parquet.{_dead_pid()}.abcd1234.tmp"
    leftover.write_bytes(b"half a table")
    with output_file(target):
        assert not leftover.exists()
        with pytest.raises(OutputError, match="another lamina process"), output_file(target):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
