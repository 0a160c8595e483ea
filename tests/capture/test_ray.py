"""The Ray engine on a local cluster: the same table as the local engine (probe scores
included: the workers' class sums merge on the driver), shards shared, a killed worker
retried, a missing cluster refused in one sentence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from capture.shard_files import shard_files
from study.token_tables import save_tiny_gpt2, tiny_study_text


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    save_tiny_gpt2(root / "model")
    (root / "docs").mkdir()
    (root / "docs" / "a.txt").write_text(tiny_study_text(3), encoding="utf-8")
    (root / "docs" / "b.txt").write_text(tiny_study_text(2).upper(), encoding="utf-8")
    return root


def _argv(root: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "lamina", "extract", "--model", str(root / "model"),
        "--text", str(root / "docs"), "--window", "64", "--shard-windows", "3",
        "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


def _extraction(table) -> dict:
    return json.loads(table.schema.metadata[b"lamina"])["extraction"]


@pytest.fixture(scope="module")
def local(inputs):
    out = inputs / "local" / "tokens.parquet"
    done = _run(_argv(inputs, out, "--probe", "diffmeans"))
    assert done.returncode == 0, done.stderr
    return pq.read_table(out)


def _same_rows(a, b) -> bool:
    return a.replace_schema_metadata(None).equals(b.replace_schema_metadata(None))


@pytest.mark.slow
def test_ray_with_two_workers_gives_the_local_table_and_shares_its_shards(inputs, local):
    out = inputs / "ray" / "tokens.parquet"
    shards = out.with_name("tokens.parquet.shards")
    # half of the shards come from a local run in the same place: Ray must reuse them
    shards.mkdir(parents=True)
    # (with the probe's class sums of those shards: pass one on Ray adds the others' to them)
    (shards / "probe").mkdir(parents=True)
    local_dir = inputs / "local" / "tokens.parquet.shards"
    local_shards = shard_files(local_dir)
    for f in local_shards[::2]:
        (shards / f.name).write_bytes(f.read_bytes())
        for sums in (local_dir / "probe").glob(f"{f.stem}.moments1-*"):
            (shards / "probe" / sums.name).write_bytes(sums.read_bytes())
    done = _run(_argv(inputs, out, "--engine", "ray", "--workers", "2", "--probe", "diffmeans"))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "core_worker" not in done.stderr
    table = pq.read_table(out)
    counts = _extraction(table)
    assert counts["engine"] == "ray" and counts["workers"] == 2
    assert counts["shards_reused"] == len(local_shards[::2])
    assert counts["shards_computed"] == len(local_shards) - len(local_shards[::2])
    assert counts["probe"]["shards_computed"] == len(local_shards)  # the second pass, on Ray
    meta = json.loads(table.schema.metadata[b"lamina"])["probe"]
    assert meta == json.loads(local.schema.metadata[b"lamina"])["probe"]
    assert any(name.startswith("probe.") for name in table.column_names)
    assert _same_rows(table, local)


def _kill_one_worker_after_first_shard(shards: Path, killed: list[int]) -> None:
    deadline = time.monotonic() + 300
    while not shard_files(shards) and time.monotonic() < deadline:
        time.sleep(0.05)
    for process in psutil.process_iter(["pid", "cmdline"]):
        if "MapWorker" in " ".join(process.info["cmdline"] or []):
            os.kill(process.info["pid"], signal.SIGKILL)
            killed.append(process.info["pid"])
            return


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_the_table_is_complete(inputs, local):
    out = inputs / "killed" / "tokens.parquet"
    killed: list[int] = []
    watcher = threading.Thread(
        target=_kill_one_worker_after_first_shard,
        args=(out.with_name("tokens.parquet.shards"), killed),
    )
    watcher.start()
    done = _run(_argv(inputs, out, "--engine", "ray", "--workers", "2"))
    watcher.join()
    assert killed, "no Ray worker process was found to kill"
    assert done.returncode == 0, done.stderr
    probed = [n for n in local.column_names if n == "fold" or n.startswith("probe.")]
    assert _same_rows(pq.read_table(out), local.drop_columns(probed))


def test_joining_an_address_without_a_cluster_is_one_sentence(inputs, tmp_path):
    done = _run(
        _argv(inputs, tmp_path / "t.parquet", "--engine", "ray", "--ray-address", "127.0.0.1:9")
    )
    assert done.returncode == 2
    assert done.stderr.startswith("lamina: error: no Ray cluster answers at --ray-address")
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "t.parquet").exists()


def test_ray_options_need_the_ray_engine(inputs, tmp_path):
    done = _run(_argv(inputs, tmp_path / "t.parquet", "--workers", "2"))
    assert done.returncode == 2
    assert "--workers and --ray-address apply to --engine ray" in done.stderr


def test_the_ray_engine_without_ray_installed_is_one_sentence(
    inputs, tmp_path, monkeypatch, capsys
):
    """Ray is an extra (lamina[ray]): asking for its engine without it says how to get it."""
    import importlib.util

    from lamina.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    argv = _argv(inputs, tmp_path / "t.parquet", "--engine", "ray")[3:]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lamina: error: --engine ray needs Ray, which is not installed here")
    assert "pip install 'lamina[ray]'" in err and err.count("\n") == 1
    assert not (tmp_path / "t.parquet").exists()
