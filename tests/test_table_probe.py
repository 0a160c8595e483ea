"""A token table with probe scores: read, checked against its metadata, never taken for sites;
and a run's table reused only when it has the probe scores the run asks for."""

from __future__ import annotations

import numpy as np
import pytest

from lamina.errors import TableError
from lamina.pipeline.reuse import table_matches
from lamina.study.options import WindowOptions
from lamina.table import (
    build_table,
    layer_matrix,
    parse_probe_column,
    parse_site_column,
    probe_matrix,
    read_table,
    site_layers,
    table_sites,
    validate_table,
    write_table,
)

PROBE = {"method": "diffmeans", "folds": 5, "fold_unit": "span", "sites": ["attn_out"]}


def _table(n: int = 10, probe: dict | None = PROBE, drop: str | None = None):
    rng = np.random.default_rng(0)
    columns = {
        "text_pos": np.arange(n), "window": np.zeros(n), "ctx_pos": np.arange(n),
        "token_id": np.ones(n), "target_id": np.ones(n), "correct": rng.random(n) < 0.5,
        "target_rank": np.zeros(n), "target_logprob": np.zeros(n), "entropy": np.zeros(n),
        "target_chars": np.ones(n), "attn_out.0": rng.random(n), "attn_out.1": rng.random(n),
    }  # fmt: skip
    meta = {"format_version": 2, "sites": ["attn_out"], "n_layers": 2, "n_scored": n}
    if probe is not None:
        columns["fold"] = 5 * np.arange(n) // n
        columns["probe.attn_out.0"] = rng.normal(size=n)
        columns["probe.attn_out.1"] = rng.normal(size=n)
        meta["probe"] = probe
    columns.pop(drop, None)
    return build_table(columns, meta)


def test_probe_columns_are_not_site_columns():
    assert parse_site_column("probe.attn_out.3") is None
    assert parse_probe_column("probe.attn_out.3") == ("attn_out", 3)
    assert parse_probe_column("attn_out.3") is None and parse_probe_column("probe.x.y") is None
    table = _table()
    assert table.schema.field("fold").type == "int16"
    assert table_sites(table) == ["attn_out"] and site_layers(table, "attn_out") == [0, 1]
    assert layer_matrix(table, "attn_out").shape == (10, 2)
    np.testing.assert_array_equal(
        probe_matrix(table, "attn_out")[:, 1], table.column("probe.attn_out.1").to_numpy()
    )
    with pytest.raises(TableError, match="no probe column for site 'mlp_out'"):
        probe_matrix(table, "mlp_out")


def test_a_table_with_probes_reads_back_and_is_checked_against_its_metadata(tmp_path):
    write_table(_table(), tmp_path / "t.parquet")
    assert read_table(tmp_path / "t.parquet").num_rows == 10
    with pytest.raises(TableError, match=r"has no column probe\.attn_out\.1, which its metadata"):
        validate_table(_table(drop="probe.attn_out.1"))
    with pytest.raises(TableError, match="has no column fold"):
        validate_table(_table(drop="fold"))
    lost = _table().replace_schema_metadata(_table(probe=None).schema.metadata)
    with pytest.raises(TableError, match="columns its metadata does not list: fold, probe"):
        validate_table(lost)


META = {
    "model": {"spec": "m", "context_length": 128},
    "text": {"sha256": "s"},
    "documents": [{"spec": "long.txt", "n_tokens": 1791}],
    "windows": {"mode": "middle", "window": 128, "bos": False, "max_tokens": None},
    "sites": ["attn_out", "attn_head"],
    "n_scored": 128,
}
RUN = {"model": "m", "text_sha256": "s", "windows": WindowOptions(), "site": "attn_out"}


def test_a_table_is_reused_only_with_the_probe_scores_asked_for():
    assert table_matches(META, **RUN)[0]  # probes not asked about
    assert table_matches(META, **RUN, probe="auto") == (
        False,
        "it has no diffmeans probe scores",
    )
    probed = {**META, "probe": PROBE}
    assert table_matches(probed, **RUN, probe="auto")[0]
    assert table_matches(probed, **RUN, probe="diffmeans", probe_folds=3) == (
        False,
        "its probe has 5 folds, not 3",
    )
    assert table_matches(probed, **RUN, probe="lda") == (False, "it has no lda probe scores")
    assert table_matches(META, **RUN, probe="none")[0]
    assert table_matches(META, **{**RUN, "site": "attn_head"}, probe="lda")[0]  # never probed
    all_windows = {**META, "windows": {**META["windows"], "mode": "all", "stride": 64}}
    assert table_matches(
        all_windows, **{**RUN, "windows": WindowOptions(mode="all")}, probe="auto"
    )[0]
