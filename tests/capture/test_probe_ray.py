"""Probe scores on Ray: the workers' class sums merge on the driver into the local run's
directions, and the second pool's scores are the local run's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from capture.shard_files import shard_files
from study.token_tables import save_tiny_gpt2, tiny_study_text

pytestmark = pytest.mark.slow


def test_ray_workers_sums_merge_into_the_local_runs_scores(tmp_path):
    save_tiny_gpt2(tmp_path / "model")
    (tmp_path / "text.txt").write_text(tiny_study_text(3), encoding="utf-8")

    def run(out, *extra):
        argv = [
            sys.executable, "-m", "lamina", "extract", "--model", str(tmp_path / "model"),
            "--text", str(tmp_path / "text.txt"), "--window", "64", "--shard-windows", "8",
            "--out", str(out), "--no-progress", "--probe", "diffmeans", *extra,
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return pq.read_table(out)

    local = run(tmp_path / "local.parquet")
    # half of pass 1's shards (with their sums) come from the local run: Ray reuses them
    shards = tmp_path / "ray.parquet.shards"
    (shards / "probe").mkdir(parents=True)
    for f in shard_files(tmp_path / "local.parquet.shards")[::2]:
        shutil.copy(f, shards / f.name)
        for sums in (tmp_path / "local.parquet.shards" / "probe").glob(f"{f.stem}.moments1-*"):
            shutil.copy(sums, shards / "probe" / sums.name)
    table = run(tmp_path / "ray.parquet", "--engine", "ray", "--workers", "2")
    meta = json.loads(table.schema.metadata[b"lamina"])
    n_shards = len(shard_files(tmp_path / "local.parquet.shards"))
    assert meta["extraction"]["shards_reused"] == len(range(0, n_shards, 2))
    assert meta["extraction"]["probe"]["shards_computed"] == n_shards
    local_meta = json.loads(local.schema.metadata[b"lamina"])
    assert meta["probe"] == local_meta["probe"]
    assert table.replace_schema_metadata(None).equals(local.replace_schema_metadata(None))
