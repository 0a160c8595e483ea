"""The token table: one Parquet file, one row per scored token (see docs/token-table.md).

Columns, in order:

==================  ========  ==============================================================
``text_pos``        int64     index in the text's token stream of the token whose logits are read
``window``          int32     index of the window (forward pass) that scored it
``ctx_pos``         int32     text tokens of left context inside that window
``token_id``        int32     the token at ``text_pos``
``target_id``       int32     the token at ``text_pos + 1`` (what the model should predict)
``correct``         bool      ``argmax(logits) == target_id``
``target_rank``     int32     vocabulary entries with a logit strictly above the target's (0 = top-1)
``target_logprob``  float32   log-probability of the target, nats
``entropy``         float32   entropy of the next-token distribution, nats
``target_chars``    int16     characters in the decoded target token
``{site}.{layer}``  float32   raw L2 norm of what ``layer`` writes at ``site`` (e.g. ``attn_out.0``)
==================  ========  ==============================================================

Optional columns (:data:`OPTIONAL_SCHEMA`) follow the score columns when present,
in that schema's order: ``doc`` (document index in a corpus), ``pred_id`` (the
top-1 prediction), the covariates
``target_freq``, ``target_repeat``, ``input_is_first``, ``input_is_delimiter``,
``nonfinite`` (a logit or norm of the row was NaN or inf) and ``fold`` (int16, the
cross-fitting fold of a probe). Tables of format version 1 (no optional columns)
are still read.

Per-head columns are ``attn_head.{layer}.{head}``. A probed table (metadata key
``probe``) has, after the site columns, ``probe.{site}.{layer}`` (float32): each
row's held-out probe score (:func:`probe_column`; not a site column). The schema metadata key
``lamina`` holds a JSON object describing the model, the text, the windows and
the sites.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lamina._io import atomic_path
from lamina.errors import TableError

METADATA_KEY = "lamina"
FORMAT_VERSION = 2
#: Versions ``read_table`` accepts (1: before the optional columns existed).
READABLE_VERSIONS = (1, 2)

SCORE_SCHEMA = pa.schema(
    [
        ("text_pos", pa.int64()),
        ("window", pa.int32()),
        ("ctx_pos", pa.int32()),
        ("token_id", pa.int32()),
        ("target_id", pa.int32()),
        ("correct", pa.bool_()),
        ("target_rank", pa.int32()),
        ("target_logprob", pa.float32()),
        ("entropy", pa.float32()),
        ("target_chars", pa.int16()),
    ]
)
"""The per-token columns that precede the site columns, with their types."""

SCORE_COLUMNS: tuple[str, ...] = tuple(SCORE_SCHEMA.names)

OPTIONAL_SCHEMA = pa.schema(
    [
        ("doc", pa.int32()),
        ("pred_id", pa.int32()),
        ("target_freq", pa.float32()),
        ("target_repeat", pa.bool_()),
        ("input_is_first", pa.bool_()),
        ("input_is_delimiter", pa.bool_()),
        ("nonfinite", pa.bool_()),
        ("fold", pa.int16()),
    ]
)
"""Per-token columns a table may have after the score columns (docs/token-table.md)."""

OPTIONAL_COLUMNS: tuple[str, ...] = tuple(OPTIONAL_SCHEMA.names)

_SITE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
PROBE_PREFIX = "probe"


def site_column(site: str, layer: int, head: int | None = None) -> str:
    """Column name of ``site`` at ``layer`` (and ``head`` for ``attn_head``): ``attn_out.3``."""
    return f"{site}.{layer}" if head is None else f"{site}.{layer}.{head}"


def parse_site_column(name: str) -> tuple[str, int, int | None] | None:
    """``(site, layer, head)`` of a site column name, or None for any other column."""
    parts = name.split(".")
    if len(parts) not in (2, 3) or not _SITE_NAME.match(parts[0]):
        return None
    if not all(part.isdigit() for part in parts[1:]):
        return None
    head = int(parts[2]) if len(parts) == 3 else None
    return parts[0], int(parts[1]), head


def probe_column(site: str, layer: int) -> str:
    """Column name of the probe score of ``site`` at ``layer``: ``probe.attn_out.3``."""
    return f"{PROBE_PREFIX}.{site}.{layer}"


def parse_probe_column(name: str) -> tuple[str, int] | None:
    """``(site, layer)`` of a probe column name, or None for any other column."""
    parts = name.split(".")
    if len(parts) != 3 or parts[0] != PROBE_PREFIX or not _SITE_NAME.match(parts[1]):
        return None
    return (parts[1], int(parts[2])) if parts[2].isdigit() else None


def probe_matrix(table: pa.Table, site: str) -> np.ndarray:
    """Held-out probe scores of ``site`` as ``(n_tokens, n_layers)`` float32, layers ascending."""
    columns = sorted(
        (parsed[1], name)
        for name in table.column_names
        if (parsed := parse_probe_column(name)) is not None and parsed[0] == site
    )
    if not columns:
        raise TableError(
            f"the token table has no probe column for site {site!r}; extract with --probe "
            "diffmeans or --probe lda."
        )
    return _stack(table, [name for _, name in columns])


def site_layers(table: pa.Table, site: str) -> list[int]:
    """Layers present for ``site`` (for ``attn_head``: layers with any head), ascending."""
    layers = set()
    for name in table.column_names:
        parsed = parse_site_column(name)
        if parsed is not None and parsed[0] == site:
            layers.add(parsed[1])
    return sorted(layers)


def table_sites(table: pa.Table) -> list[str]:
    """Sites with at least one column, in column order."""
    seen: dict[str, None] = {}
    for name in table.column_names:
        parsed = parse_site_column(name)
        if parsed is not None:
            seen.setdefault(parsed[0], None)
    return list(seen)


def layer_matrix(table: pa.Table, site: str) -> np.ndarray:
    """Raw norms of ``site`` as a ``(n_tokens, n_layers)`` float32 array, layers ascending.

    Per-head norms are read with :func:`head_matrix`. Raises :class:`TableError`
    if the table has no column for ``site``.
    """
    columns = []
    for name in table.column_names:
        parsed = parse_site_column(name)
        if parsed is not None and parsed[0] == site and parsed[2] is None:
            columns.append((parsed[1], name))
    if not columns:
        hint = (
            "read per-head norms with head_matrix(table, layer)"
            if site_layers(table, site)
            else f"sites in this table: {', '.join(table_sites(table)) or 'none'}"
        )
        raise TableError(f"the token table has no per-layer column for site {site!r}; {hint}.")
    columns.sort()
    return _stack(table, [name for _, name in columns])


def head_matrix(table: pa.Table, layer: int) -> np.ndarray:
    """Raw per-head norms of ``attn_head`` at ``layer`` as ``(n_tokens, n_heads)`` float32."""
    columns = []
    for name in table.column_names:
        parsed = parse_site_column(name)
        if parsed is not None and parsed[0] == "attn_head" and parsed[1] == layer:
            columns.append((parsed[2], name))
    if not columns:
        raise TableError(
            f"the token table has no attn_head column for layer {layer}; extract with "
            "--sites attn_head."
        )
    columns.sort()
    return _stack(table, [name for _, name in columns])


def _stack(table: pa.Table, names: list[str]) -> np.ndarray:
    out = np.empty((table.num_rows, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        out[:, j] = table.column(name).to_numpy()
    return out


def build_table(columns: dict[str, np.ndarray], metadata: dict) -> pa.Table:
    """A token table from column arrays and the ``lamina`` metadata.

    Score columns (all required) and optional columns (those given) are cast to
    their schema types and come first, in schema order; every other column must
    be a site column or a probe column and is float32.
    """
    fields = []
    arrays = []
    for name in SCORE_COLUMNS:
        if name not in columns:
            raise ValueError(f"missing score column {name}")
    for schema in (SCORE_SCHEMA, OPTIONAL_SCHEMA):
        for field in schema:
            if field.name in columns:
                fields.append(field)
                arrays.append(pa.array(np.asarray(columns[field.name]), type=field.type))
    for name, values in columns.items():
        if name in SCORE_COLUMNS or name in OPTIONAL_COLUMNS:
            continue
        if parse_site_column(name) is None and parse_probe_column(name) is None:
            raise ValueError(f"not a site column name: {name}")
        fields.append(pa.field(name, pa.float32()))
        arrays.append(pa.array(np.asarray(values, dtype=np.float32), type=pa.float32()))
    schema = pa.schema(fields, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=False)})
    return pa.Table.from_arrays(arrays, schema=schema)


def table_metadata(table: pa.Table) -> dict:
    """The ``lamina`` metadata object of a token table; :class:`TableError` if absent."""
    raw = (table.schema.metadata or {}).get(METADATA_KEY.encode())
    if raw is None:
        raise TableError(
            "this Parquet file has no lamina metadata; it was not written by `lamina extract`."
        )
    try:
        metadata = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TableError(f"the token table's lamina metadata is not valid JSON ({exc}).") from exc
    if not isinstance(metadata, dict):
        raise TableError(
            f"the token table's lamina metadata is a JSON {type(metadata).__name__}, not an "
            "object; the file was altered: re-create it with `lamina extract`."
        )
    return metadata


def _expected_site_columns(meta: dict) -> list[str]:
    """The site columns the metadata promises (``sites`` x ``n_layers``, x ``n_heads``)."""
    sites, n_layers, n_heads = meta.get("sites"), meta.get("n_layers"), meta.get("n_heads")
    if not isinstance(sites, list) or not all(isinstance(x, str) for x in sites):
        raise ValueError("its 'sites' is not a list of site names")
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"its 'n_layers' is {n_layers!r}, not a positive number")
    names = []
    for site in sites:
        if site == "attn_head":
            if isinstance(n_heads, bool) or not isinstance(n_heads, int) or n_heads < 1:
                raise ValueError(f"its 'n_heads' is {n_heads!r}, not a positive number")
            names += [site_column(site, lay, h) for lay in range(n_layers) for h in range(n_heads)]
        else:
            names += [site_column(site, layer) for layer in range(n_layers)]
    probe = meta.get("probe")
    if probe is not None:
        probed = probe.get("sites") if isinstance(probe, dict) else None
        if not isinstance(probed, list) or not all(isinstance(x, str) for x in probed):
            raise ValueError("its 'probe' has no list of probed sites")
        names += [probe_column(site, layer) for site in probed for layer in range(n_layers)]
        names.append("fold")
    return names


def _first_names(names: list[str], first: int = 4) -> str:
    """The first few of ``names`` for a sentence, and how many more there are."""
    more = len(names) - first
    return ", ".join(names[:first]) + (f" and {more} more" if more > 0 else "")


def validate_table(table: pa.Table, where: str = "the token table") -> dict:
    """Check a token table against its own metadata; return the metadata.

    The metadata must be an object whose ``sites``, ``n_layers`` (and ``n_heads`` for
    ``attn_head``) name exactly the site columns present, whose ``n_scored`` (when
    recorded) is the row count, and whose ``model``, ``text`` and ``windows`` are
    objects; every column must have its documented type. A table that fails was
    altered or damaged after lamina wrote it: :class:`TableError`, one sentence.
    """
    meta = table_metadata(table)
    redo = "the file was altered or damaged: re-create it with `lamina extract`"
    for key in ("model", "text", "windows"):
        if key in meta and not isinstance(meta[key], dict):
            raise TableError(f"{where}'s metadata field {key!r} is not an object; {redo}.")
    try:
        expected = _expected_site_columns(meta)
    except ValueError as exc:
        raise TableError(f"{where}'s metadata is inconsistent: {exc}; {redo}.") from exc
    types = {f.name: f.type for schema in (SCORE_SCHEMA, OPTIONAL_SCHEMA) for f in schema}
    if "probe" not in meta:
        types.pop("fold")  # a fold belongs to a probe
    types.update((name, pa.float32()) for name in expected if name != "fold")
    present = set(table.column_names)
    unknown = [name for name in table.column_names if name not in types]
    missing = [name for name in expected if name not in present]
    listed = _first_names
    claimed = f"metadata: sites {', '.join(meta['sites'])}, {meta['n_layers']} layers"
    if missing:
        instead = f", but has {listed(unknown)} instead" if unknown else ""
        raise TableError(
            f"{where} has no column{'s' if len(missing) > 1 else ''} {listed(missing)}, which "
            f"its metadata lists ({claimed}){instead}; give a renamed column its name back, "
            "or re-create the file with `lamina extract`."
        )
    if unknown:
        raise TableError(
            f"{where} has columns its metadata does not list: {listed(unknown)} ({claimed}); "
            f"{redo}."
        )
    for field in table.schema:
        if field.type != types[field.name]:
            raise TableError(
                f"{where}'s column {field.name} is {field.type}, not {types[field.name]}; {redo}."
            )
    n_scored = meta.get("n_scored")
    if n_scored is not None and n_scored != table.num_rows:
        raise TableError(
            f"{where} has {table.num_rows:,} rows but its metadata records {n_scored!r} scored "
            f"tokens; {redo}."
        )
    return meta


def write_table(table: pa.Table, path: str | os.PathLike[str]) -> None:
    """Write a token table to ``path`` as Parquet, atomically (temporary name, then rename)."""
    table_metadata(table)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def require_table_path(path: str | os.PathLike[str]) -> None:
    """:class:`TableError` if nothing is at ``path`` (cheap: a command checks it first)."""
    if not os.path.exists(path):
        raise TableError(
            f"no token table at {path}; create one with `lamina extract --out {path}`."
        )


def read_table(path: str | os.PathLike[str]) -> pa.Table:
    """Read a token table; :class:`TableError` if it is missing, not a token table, or
    disagrees with its own metadata (:func:`validate_table`)."""
    require_table_path(path)
    if os.path.isdir(path):
        raise TableError(f"{path} is a directory, not a token table file; give its .parquet file.")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TableError(f"{path} is not a readable Parquet file ({exc}).") from exc
    metadata = table_metadata(table)
    missing = [name for name in SCORE_COLUMNS if name not in table.column_names]
    if missing:
        raise TableError(
            f"{path} lacks the token-table column{'s' if len(missing) > 1 else ''} "
            f"{_first_names(missing)}; give a renamed column its name back, or re-create the "
            "file with `lamina extract`."
        )
    version = metadata.get("format_version")
    if version not in READABLE_VERSIONS:
        raise TableError(
            f"{path} has token-table format version {version!r}; this lamina reads "
            f"versions {', '.join(map(str, READABLE_VERSIONS))}; re-create it with "
            "`lamina extract`."
        )
    validate_table(table, str(path))
    return table
