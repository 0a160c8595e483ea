"""Probe scores through every way of extracting: stream windows, a corpus (document folds),
resuming in either pass, a shards directory alone, the command line; and tables without
probes unchanged.

The reference here is the vectors pass 1 added to the sums (recorded as they arrive, in
plan order): the scores pass 2 writes must be their held-out projections, so pass 2 saw the
same vectors, and each row was projected on its own fold's direction. These texts are small
enough for pass 1 to keep their vectors; ``forward_pass_two`` makes pass 2 run the forward
passes again, as it does for a long text.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from capture.probe_reference import assert_scores_close, reference_scores
from lamina.capture import extract
from lamina.capture.assemble import table_from_shards
from lamina.capture.probe_hooks import SumsAccumulator
from lamina.capture.probe_run import ProbeJob
from lamina.sources import load_corpus
from lamina.table import OPTIONAL_COLUMNS, SCORE_COLUMNS, table_metadata
from study.token_tables import save_tiny_gpt2, tiny_study_text
from tiny_models import tiny_loaded


@pytest.fixture(scope="module")
def loaded():
    return tiny_loaded("gpt2")


@pytest.fixture
def forward_pass_two(monkeypatch):
    from lamina.capture import probe_run

    monkeypatch.setattr(probe_run, "KEEP_VECTORS_BYTES", 0)


@pytest.fixture
def recorded(monkeypatch):
    """The vectors pass 1 adds to the sums, by probe column, in the order they arrive."""
    seen: list = []
    add = SumsAccumulator.add

    def recording(self, vectors, correct, folds, skip=None):
        seen.append([v.double().numpy().copy() for v in vectors])
        return add(self, vectors, correct, folds, skip)

    monkeypatch.setattr(SumsAccumulator, "add", recording)

    def vectors(names: list[str]) -> dict[str, np.ndarray]:
        return {n: np.concatenate([batch[j] for batch in seen]) for j, n in enumerate(names)}

    return vectors


def _check_scores(table, vectors: dict[str, np.ndarray], method: str = "diffmeans") -> None:
    correct = table.column("correct").to_numpy()
    fold = table.column("fold").to_numpy()
    for name, x in vectors.items():
        np.testing.assert_allclose(
            np.linalg.norm(x, axis=1), table.column(name).to_numpy(), rtol=1e-5
        )
        expected, _ = reference_scores(x, correct, fold, method)
        assert_scores_close(table.column(f"probe.{name}").to_numpy(), expected)


def test_stream_windows_score_what_pass_one_saw(loaded, recorded, forward_pass_two):
    table = extract(
        loaded, tiny_study_text(3), windows="stream", window=64, stride=16,
        sites=("attn_out", "resid_post"), probe="diffmeans", progress=False, batch_size=2,
    )  # fmt: skip
    meta = table_metadata(table)
    assert meta["probe"]["fold_unit"] == "window"
    assert meta["extraction"]["probe"]["shards_from_kept_vectors"] == 0
    names = [f"{s}.{layer}" for s in ("attn_out", "resid_post") for layer in (0, 1)]
    _check_scores(table, recorded(names))


def test_a_corpus_of_five_documents_folds_by_document(loaded, recorded, forward_pass_two, tmp_path):
    (tmp_path / "docs").mkdir()
    words = tiny_study_text(2).split(" ")
    for k in range(6):  # six documents of different lengths
        text = " ".join(words[k * 50 : k * 50 + 30 + 10 * (k % 3)])
        (tmp_path / "docs" / f"{k}.txt").write_text(text, "utf-8")
    corpus = load_corpus(str(tmp_path / "docs"))
    table = extract(
        loaded, corpus, windows="all", window=64, probe="diffmeans", probe_folds=5,
        progress=False,
    )  # fmt: skip
    assert table_metadata(table)["probe"]["fold_unit"] == "document"
    doc, fold = table.column("doc").to_numpy(), table.column("fold").to_numpy()
    assert all(len(set(fold[doc == d])) == 1 for d in range(6))  # whole documents
    assert (np.diff(fold) >= 0).all() and set(fold) == set(range(5))
    _check_scores(table, recorded(["attn_out.0", "attn_out.1"]))


def test_one_middle_window_folds_by_equal_spans(loaded):
    table = extract(loaded, tiny_study_text(3), windows="middle", window=100, progress=False)
    meta = table_metadata(table)
    assert meta["probe"]["method"] == "diffmeans"  # auto probes a middle window
    assert meta["probe"]["fold_unit"] == "span"
    # its vectors were kept from pass 1: no second forward pass
    assert meta["extraction"]["probe"]["shards_from_kept_vectors"] == 1
    n = table.num_rows
    assert table.column("fold").to_numpy().tolist() == [5 * i // n for i in range(n)]


def _same_rows(a, b) -> bool:
    return a.replace_schema_metadata(None).equals(b.replace_schema_metadata(None))


def _probe_extract(loaded, shards_dir):
    return extract(
        loaded, tiny_study_text(3), windows="all", window=64, shard_windows=8, probe="lda",
        shards_dir=shards_dir, progress=False,
    )  # fmt: skip


def test_a_run_stopped_in_either_pass_resumes_to_the_same_table(loaded, tmp_path, monkeypatch):
    whole = _probe_extract(loaded, tmp_path / "whole")
    n_shards = table_metadata(whole)["extraction"]["shards_computed"]
    # pass 2 projected the vectors pass 1 kept; resumed, it runs the forward passes again:
    # the same arithmetic on the same vectors, so the same table
    assert table_metadata(whole)["extraction"]["probe"]["shards_from_kept_vectors"] == n_shards
    # stopped in pass 2 after two shards' scores were saved
    write = ProbeJob.write_projection
    saved: list[str] = []

    def stop_after_two(self, shards_dir, key, columns):
        if len(saved) == 2:
            raise KeyboardInterrupt
        saved.append(key)
        write(self, shards_dir, key, columns)

    monkeypatch.setattr(ProbeJob, "write_projection", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        _probe_extract(loaded, tmp_path / "stopped")
    monkeypatch.undo()
    again = _probe_extract(loaded, tmp_path / "stopped")
    assert _same_rows(again, whole)
    counts = table_metadata(again)["extraction"]
    assert (counts["shards_computed"], counts["shards_reused"]) == (0, n_shards)
    assert (counts["probe"]["shards_reused"], counts["probe"]["shards_computed"]) == (
        2,
        n_shards - 2,
    )
    assert counts["probe"]["shards_from_kept_vectors"] == 0
    # a shards directory alone assembles the same table
    assert _same_rows(table_from_shards(tmp_path / "stopped"), whole)
    # a shard whose sums are lost is computed again; the table does not change
    sums = sorted((tmp_path / "stopped" / "probe").glob("*.moments2-*.npz"))
    sums[1].unlink()
    resumed = _probe_extract(loaded, tmp_path / "stopped")
    assert _same_rows(resumed, whole)
    assert table_metadata(resumed)["extraction"]["shards_computed"] == 1


def test_ctrl_c_in_the_second_pass_stops_after_a_batch_and_resumes(
    loaded, forward_pass_two, tmp_path, monkeypatch
):
    import os
    import signal

    from lamina.capture.compute import ShardComputer
    from lamina.errors import ExtractionInterrupted

    whole = _probe_extract(loaded, tmp_path / "whole")
    n_shards = table_metadata(whole)["extraction"]["shards_computed"]
    project = ShardComputer.project
    calls: list[int] = []

    def interrupted_in_the_second_shard(self, *args):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: stop after the current batch
        return project(self, *args)

    monkeypatch.setattr(ShardComputer, "project", interrupted_in_the_second_shard)
    # as under a terminal: a suite started in the background (`nohup`) inherits an ignored
    # SIGINT, which lamina leaves ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(ExtractionInterrupted) as stopped:
            _probe_extract(loaded, tmp_path / "stopped")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert str(stopped.value) == (
        f"interrupted in the probe's second pass, after 1 of {n_shards} shards; those are saved in "
        f"{tmp_path / 'stopped'}; run the same command again to resume."
    )
    monkeypatch.setattr(ShardComputer, "project", project)
    again = _probe_extract(loaded, tmp_path / "stopped")
    assert _same_rows(again, whole)
    assert table_metadata(again)["extraction"]["probe"]["shards_reused"] == 1


def test_a_table_without_probes_is_unchanged(loaded):
    table = extract(loaded, tiny_study_text(2), windows="all", window=64, progress=False)
    none = extract(
        loaded, tiny_study_text(2), windows="all", window=64, probe="none", progress=False
    )
    assert _same_rows(table, none)
    assert "probe" not in table_metadata(table) and "probe" not in table_metadata(none)
    optional = [c for c in OPTIONAL_COLUMNS if c not in ("nonfinite", "fold")]
    assert table.column_names == [*SCORE_COLUMNS, *optional, "attn_out.0", "attn_out.1"]


@pytest.mark.slow
def test_the_command_line_probes_with_its_options(tmp_path):
    save_tiny_gpt2(tmp_path / "model")
    (tmp_path / "text.txt").write_text(tiny_study_text(2), encoding="utf-8")
    out = tmp_path / "t.parquet"
    argv = [
        sys.executable, "-m", "lamina", "extract", "--model", str(tmp_path / "model"),
        "--text", str(tmp_path / "text.txt"), "--window", "64", "--out", str(out),
        "--no-progress", "--sites", "attn_out,mlp_out,attn_head", "--probe", "lda",
        "--probe-folds", "3",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out)
    meta = json.loads(table.schema.metadata[b"lamina"])["probe"]
    assert (meta["method"], meta["folds"], meta["sites"]) == ("lda", 3, ["attn_out", "mlp_out"])
    assert [c for c in table.column_names if c.startswith("probe.")] == [
        "probe.attn_out.0", "probe.attn_out.1", "probe.mlp_out.0", "probe.mlp_out.1",
    ]  # fmt: skip
    assert sorted(set(table.column("fold").to_numpy())) == [0, 1, 2]
