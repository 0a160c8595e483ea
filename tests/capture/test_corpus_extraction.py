"""Corpora and shards: documents never mix, shards resume, different inputs never share."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.compute as pc
import pytest

from capture.shard_files import shard_files
from lamina.capture import extract
from lamina.capture.shards import MANIFEST_FILE, load_manifest
from lamina.sources import load_corpus
from lamina.table import table_metadata
from study.token_tables import tiny_study_text
from tiny_models import tiny_loaded


@pytest.fixture(scope="module")
def loaded():
    return tiny_loaded("gpt2")


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text(tiny_study_text(2), encoding="utf-8")
    (tmp_path / "docs" / "b.txt").write_text(tiny_study_text(1).upper(), encoding="utf-8")
    return load_corpus(str(tmp_path / "docs"))


def _rows(table, doc):
    mask = pc.equal(table.column("doc"), doc)
    return table.filter(mask)


def test_each_document_is_extracted_as_if_alone(loaded, corpus):
    table = extract(loaded, corpus, windows="all", window=64, progress=False)
    meta = table_metadata(table)
    assert [d["spec"] for d in meta["documents"]] == [d.provenance.spec for d in corpus.documents]
    assert meta["text"]["sha256"] == corpus.sha256 and meta["text"]["n_documents"] == 2
    for index, doc in enumerate(corpus.documents):
        rows = _rows(table, index)
        alone = extract(loaded, doc, windows="all", window=64, progress=False)
        assert rows.num_rows == alone.num_rows == meta["documents"][index]["n_tokens"] - 1
        for name in ("text_pos", "ctx_pos", "target_id", "correct", "attn_out.1"):
            np.testing.assert_array_equal(
                rows.column(name).to_numpy(), alone.column(name).to_numpy(), err_msg=name
            )
        # no window crosses into the next document: each window's rows are one document's
        windows = rows.column("window").to_numpy()
        assert set(windows).isdisjoint(set(_rows(table, 1 - index).column("window").to_numpy()))
    # window indices count over the corpus, in document order
    assert np.all(np.diff(table.column("window").to_numpy()) >= 0)


@pytest.mark.parametrize("windows", ["all", "middle"])
def test_covariates_count_frequencies_over_the_corpus_and_repeats_within_a_document(
    loaded, corpus, windows
):
    """target_freq: every token of every document (middle windows too); target_repeat: its own."""
    from lamina.capture import tokenize

    table = extract(loaded, corpus, windows=windows, window=64, progress=False)
    streams = [tokenize(loaded.tokenizer, doc.text) for doc in corpus.documents]
    counts = np.bincount(np.concatenate(streams))
    total = sum(s.size for s in streams)
    df = table.to_pandas()
    assert set(df["doc"]) == {0, 1}
    for row in df.itertuples():
        tokens = streams[row.doc]
        p, start = row.text_pos, row.text_pos - row.ctx_pos
        target = tokens[p + 1]
        assert row.target_freq == pytest.approx(np.log(counts[target] / total), rel=1e-6)
        assert row.target_repeat == (target in tokens[start : p + 1].tolist())
        assert row.input_is_first == (row.ctx_pos == 0)


def test_max_tokens_counts_over_the_corpus(loaded, corpus):
    first = len(extract(loaded, corpus.documents[0], window=64, progress=False))
    table = extract(loaded, corpus, window=64, max_tokens=first + 10, progress=False)
    assert table.num_rows == first + 10
    assert _rows(table, 1).num_rows == 10


def test_a_rerun_computes_only_the_missing_shards_and_gives_the_same_table(
    loaded, corpus, tmp_path
):
    shards = tmp_path / "shards"
    first = extract(loaded, corpus, window=64, shards_dir=shards, shard_windows=3, progress=False)
    files = shard_files(shards)
    manifest = load_manifest(shards)
    assert len(files) == len(manifest["shards"]) == len(manifest["done"]) >= 4
    # lose two shards (as a killed run would), then run again
    lost = [s for s in manifest["shards"] if s["key"] in {f.stem for f in files[:2]}]
    for f in files[:2]:
        f.unlink()
    again = extract(loaded, corpus, window=64, shards_dir=shards, shard_windows=3, progress=False)
    counts = table_metadata(again)["extraction"]
    assert counts["shards_computed"] == 2
    assert counts["shards_reused"] == len(files) - 2
    assert counts["windows_computed"] == sum(s["windows"][1] - s["windows"][0] + 1 for s in lost)
    assert again.drop(["window"]).equals(first.drop(["window"]))
    assert again.column("window").equals(first.column("window"))


def test_different_inputs_never_share_shards(loaded, corpus, tmp_path):
    shards = tmp_path / "shards"
    extract(loaded, corpus, window=64, shards_dir=shards, progress=False)
    keys = {f.stem for f in shard_files(shards)}
    for change in ({"window": 48}, {"sites": ("attn_out", "mlp_out")}, {"bos": True}):
        options = {"window": 64, **change}
        table = extract(loaded, corpus, shards_dir=shards, progress=False, **options)
        assert table_metadata(table)["extraction"]["shards_reused"] == 0, change
    other = tiny_loaded("gpt2", seed=1)
    table = extract(other, corpus, window=64, shards_dir=shards, progress=False)
    assert table_metadata(table)["extraction"]["shards_reused"] == 0
    # the first run's shards are all still there, untouched
    assert keys <= {f.stem for f in shard_files(shards)}


def test_a_damaged_shard_is_computed_again(loaded, corpus, tmp_path):
    shards = tmp_path / "shards"
    first = extract(loaded, corpus, window=64, shards_dir=shards, progress=False)
    victim = shard_files(shards)[0]
    victim.write_bytes(victim.read_bytes()[:100])  # truncated
    other = shard_files(shards)[1]
    other.rename(shards / f"{'0' * 64}.parquet")  # a file under a key it does not carry
    again = extract(loaded, corpus, window=64, shards_dir=shards, progress=False)
    assert table_metadata(again)["extraction"]["shards_computed"] == 2
    assert again.equals(first.replace_schema_metadata(again.schema.metadata))
    manifest = json.loads((shards / MANIFEST_FILE).read_text())
    assert manifest["model"]["fingerprint"] == loaded.report.fingerprint


def test_batch_size_auto_equals_one_window_at_a_time(loaded, corpus):
    one = extract(loaded, corpus, window=64, batch_size=1, progress=False)
    auto = extract(loaded, corpus, window=64, batch_size="auto", progress=False)
    assert table_metadata(auto)["extraction"]["batch_size"] > 1
    for name in ("correct", "pred_id", "target_rank"):
        np.testing.assert_array_equal(one.column(name).to_numpy(), auto.column(name).to_numpy())
    # float32 matrix products of different shapes may round differently: 1e-5 relative
    for name in ("attn_out.0", "attn_out.1", "target_logprob", "entropy"):
        np.testing.assert_allclose(
            one.column(name).to_numpy(), auto.column(name).to_numpy(), rtol=1e-5, atol=1e-6
        )


def _fits_at_most(limit, monkeypatch):
    """Make every forward pass of more than ``limit`` windows run out of memory."""
    import torch

    from lamina.capture.compute import ShardComputer

    original = ShardComputer.forward_fresh
    sizes = []

    def forward_fresh(self, token_tensor, group):
        sizes.append(len(group))
        if len(group) > limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, token_tensor, group)

    monkeypatch.setattr(ShardComputer, "forward_fresh", forward_fresh)
    return sizes


def test_out_of_memory_halves_the_batch_and_remembers_the_size(
    loaded, corpus, tmp_path, monkeypatch
):
    from lamina.capture.batching import _MEMORY_FILE

    monkeypatch.setenv("LAMINA_CACHE", str(tmp_path / "cache"))
    one = extract(loaded, corpus, window=64, batch_size=1, progress=False)
    sizes = _fits_at_most(2, monkeypatch)
    halved = extract(loaded, corpus, window=64, batch_size=8, progress=False)
    assert sizes[0] > 2 and max(s for s in sizes if s <= 2) == 2
    # after the first failure the smaller size is kept: no batch of more than 2 is tried again
    assert all(s <= 2 for s in sizes[sizes.index(2) :])
    remembered = json.loads((tmp_path / "cache" / _MEMORY_FILE).read_text())
    assert list(remembered.values()) == [2]
    for name in ("correct", "pred_id", "target_rank", "text_pos"):
        np.testing.assert_array_equal(one.column(name).to_numpy(), halved.column(name).to_numpy())
    np.testing.assert_allclose(
        one.column("attn_out.1").to_numpy(), halved.column("attn_out.1").to_numpy(), rtol=1e-5
    )


def test_one_window_that_does_not_fit_is_one_sentence(loaded, corpus, tmp_path, monkeypatch):
    from lamina.errors import CaptureError

    monkeypatch.setenv("LAMINA_CACHE", str(tmp_path / "cache"))
    _fits_at_most(0, monkeypatch)
    with pytest.raises(CaptureError, match="one window of 64 tokens does not fit"):
        extract(loaded, corpus, window=64, batch_size=4, progress=False)


def test_a_shards_directory_alone_gives_the_table_once_every_shard_is_done(
    loaded, corpus, tmp_path
):
    from lamina.capture.assemble import table_from_shards
    from lamina.errors import TableError

    shards = tmp_path / "shards"
    table = extract(loaded, corpus, window=64, shards_dir=shards, progress=False)
    again = table_from_shards(shards)
    drop = ["window"]
    assert (
        again.drop(drop)
        .replace_schema_metadata(None)
        .equals(table.drop(drop).replace_schema_metadata(None))
    )
    meta, original = table_metadata(again), table_metadata(table)
    for key in ("model", "text", "documents", "windows", "sites", "n_scored"):
        assert meta[key] == original[key], key
    shard_files(shards)[0].unlink()
    with pytest.raises(TableError, match=r"1 of the \d+ shards .* are missing or damaged"):
        table_from_shards(shards)
