"""The token table: schema, metadata, matrices, atomic writes and read errors."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lamina.errors import OutputError, TableError
from lamina.table import (
    FORMAT_VERSION,
    METADATA_KEY,
    SCORE_COLUMNS,
    build_table,
    head_matrix,
    layer_matrix,
    parse_site_column,
    read_table,
    site_column,
    site_layers,
    table_metadata,
    table_sites,
    write_table,
)

N = 7


def _columns(rng) -> dict[str, np.ndarray]:
    columns = {
        "text_pos": np.arange(N) + 10,
        "window": np.zeros(N),
        "ctx_pos": np.arange(N),
        "token_id": rng.integers(0, 50, N),
        "target_id": rng.integers(0, 50, N),
        "correct": rng.random(N) < 0.5,
        "target_rank": rng.integers(0, 50, N),
        "target_logprob": -rng.random(N),
        "entropy": rng.random(N),
        "target_chars": rng.integers(1, 9, N),
    }
    # layers deliberately out of order: matrices sort them
    for layer in (2, 0, 1, 10):
        columns[site_column("attn_out", layer)] = rng.random(N) + layer
    for head in (1, 0):
        columns[site_column("attn_head", 3, head)] = rng.random(N) + head
    return columns


@pytest.fixture
def table():
    return build_table(_columns(np.random.default_rng(0)), {"format_version": FORMAT_VERSION})


def test_schema_types_and_order(table):
    assert table.column_names[: len(SCORE_COLUMNS)] == list(SCORE_COLUMNS)
    types = {field.name: field.type for field in table.schema}
    assert types["text_pos"] == pa.int64()
    assert types["window"] == types["ctx_pos"] == types["target_rank"] == pa.int32()
    assert types["token_id"] == types["target_id"] == pa.int32()
    assert types["correct"] == pa.bool_()
    assert types["target_logprob"] == types["entropy"] == pa.float32()
    assert types["target_chars"] == pa.int16()
    assert types["attn_out.0"] == types["attn_head.3.1"] == pa.float32()


def test_site_columns_and_matrices(table):
    columns = _columns(np.random.default_rng(0))
    assert site_column("attn_out", 4) == "attn_out.4"
    assert site_column("attn_head", 4, 2) == "attn_head.4.2"
    assert parse_site_column("attn_head.4.2") == ("attn_head", 4, 2)
    assert parse_site_column("target_id") is None
    assert parse_site_column("attn_out.x") is None
    assert site_layers(table, "attn_out") == [0, 1, 2, 10]
    assert site_layers(table, "attn_head") == [3]
    assert table_sites(table) == ["attn_out", "attn_head"]
    expected = np.stack([columns[f"attn_out.{layer}"] for layer in (0, 1, 2, 10)], axis=1)
    matrix = layer_matrix(table, "attn_out")
    assert matrix.dtype == np.float32 and matrix.shape == (N, 4)
    np.testing.assert_array_equal(matrix, expected.astype(np.float32))
    heads = head_matrix(table, 3)
    np.testing.assert_array_equal(
        heads, np.stack([columns["attn_head.3.0"], columns["attn_head.3.1"]], 1).astype(np.float32)
    )
    with pytest.raises(TableError, match="head_matrix"):
        layer_matrix(table, "attn_head")
    with pytest.raises(TableError, match="sites in this table: attn_out, attn_head"):
        layer_matrix(table, "mlp_out")
    with pytest.raises(TableError, match="layer 4"):
        head_matrix(table, 4)


def test_write_read_round_trip(tmp_path):
    # read_table checks the columns against the metadata: layers 0-2 of attn_out, 2 heads
    columns = {
        name: values
        for name, values in _columns(np.random.default_rng(0)).items()
        if not name.startswith("attn_head") and name != "attn_out.10"
    }
    columns.update({f"attn_head.{lay}.{h}": np.ones(N) for lay in range(3) for h in range(2)})
    meta = {"format_version": FORMAT_VERSION, "sites": ["attn_out", "attn_head"], "n_layers": 3}
    table = build_table(columns, {**meta, "n_heads": 2, "n_scored": N})
    path = tmp_path / "sub" / "tokens.parquet"
    write_table(table, path)
    assert list(path.parent.iterdir()) == [path]  # no temporary file left
    back = read_table(path)
    assert back.equals(table)
    assert table_metadata(back) == {**meta, "n_heads": 2, "n_scored": N}


def test_failed_write_leaves_nothing(table, tmp_path, monkeypatch):
    path = tmp_path / "tokens.parquet"

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", fail)
    with pytest.raises(OutputError, match=r"cannot write .*tokens.parquet: disk full"):
        write_table(table, path)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match="directory"):
        write_table(table, tmp_path)


def test_read_errors(table, tmp_path):
    with pytest.raises(TableError, match="no token table at"):
        read_table(tmp_path / "missing.parquet")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    with pytest.raises(TableError, match="not a readable Parquet file"):
        read_table(garbage)
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), plain)
    with pytest.raises(TableError, match="no lamina metadata"):
        read_table(plain)
    old = tmp_path / "old.parquet"
    metadata = {METADATA_KEY: json.dumps({"format_version": 0})}
    pq.write_table(table.replace_schema_metadata(metadata), old)
    with pytest.raises(TableError, match="format version 0"):
        read_table(old)
    partial = tmp_path / "partial.parquet"
    pq.write_table(table.drop_columns(["entropy"]), partial)
    with pytest.raises(TableError, match="entropy"):
        read_table(partial)
