"""Shard files: what the model computed for one shard, saved under its content key.

A shard file ``<key>.parquet`` in the shards directory holds, for the shard's
scored positions in plan order, only what the model computed: the prediction
columns and every site's norms. Positions, windows, documents and the
text-derived columns are added when the token table is assembled, from the plan,
so a shard depends on nothing but what its key describes. Files are written
atomically (temporary name, then rename), so a killed run leaves whole shards
or none; ``manifest.json`` beside them lists the shards a run has finished.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lamina._io import atomic_open, atomic_path

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "lamina.shards"
SHARD_KEY = b"lamina_shard"

#: The model-computed columns a shard holds besides the site norms, with their types.
SHARD_SCHEMA = pa.schema(
    [
        ("correct", pa.bool_()),
        ("target_rank", pa.int32()),
        ("target_logprob", pa.float32()),
        ("entropy", pa.float32()),
        ("pred_id", pa.int32()),
        ("nonfinite", pa.bool_()),
    ]
)


def shard_path(shards_dir: Path, key: str) -> Path:
    return Path(shards_dir) / f"{key}.parquet"


def write_shard(shards_dir: Path, key: str, columns: dict[str, np.ndarray]) -> Path:
    """Write one shard's columns atomically; returns its path."""
    fields, arrays = [], []
    for name, values in columns.items():
        field = (
            SHARD_SCHEMA.field(name) if name in SHARD_SCHEMA.names else pa.field(name, pa.float32())
        )
        fields.append(field)
        arrays.append(pa.array(np.asarray(values), type=field.type))
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata={SHARD_KEY: key}))
    path = shard_path(shards_dir, key)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def read_shard(shards_dir: Path, key: str, n_rows: int, columns: Iterable[str]) -> pa.Table | None:
    """The shard's table if its file is whole and is what ``key`` names, else None."""
    return read_stamped(shard_path(shards_dir, key), SHARD_KEY, key, n_rows, columns)


def read_stamped(
    path: Path, meta_key: bytes, stamp: str, n_rows: int, columns: Iterable[str]
) -> pa.Table | None:
    """``columns`` of the Parquet file at ``path`` if it is whole, has ``n_rows`` rows and its
    metadata ``meta_key`` is ``stamp``; None otherwise (a shard to compute again)."""
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError):
        return None
    wanted = list(columns)
    if (
        (table.schema.metadata or {}).get(meta_key) != stamp.encode()
        or table.num_rows != n_rows
        or any(name not in table.column_names for name in wanted)
    ):
        return None
    return table.select(wanted)


def load_manifest(shards_dir: Path) -> dict[str, Any] | None:
    """The shards directory's manifest, or None if it has none or it is unreadable."""
    try:
        manifest = json.loads((Path(shards_dir) / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return None
    return manifest


def save_manifest(shards_dir: Path, manifest: dict[str, Any]) -> None:
    with atomic_open(Path(shards_dir) / MANIFEST_FILE) as fh:
        json.dump(manifest, fh, indent=1, sort_keys=False)
        fh.write("\n")


def remove_stale_temporaries(shards_dir: Path, *, older_than: float) -> int:
    """Delete temporary files a killed run left in the shards directory; return how many.

    Only lamina's own (``.<name>.<random>.tmp``, as :func:`lamina._io.atomic_path`
    names a shard or the manifest while it is written) last modified before
    ``older_than`` (a ``time.time()``), so a file a running worker is writing now
    is never touched.
    """
    removed = 0
    for tmp in Path(shards_dir).glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if tmp.stat().st_mtime < older_than:
                tmp.unlink()
                removed += 1
    return removed
