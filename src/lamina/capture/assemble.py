"""The token table from a plan's skeleton and its shards' columns.

The *skeleton* is every column that follows from the plan and the tokenizer
alone: documents, positions, windows, token ids, ``target_chars`` and Part 7's
covariates (:mod:`lamina.capture.covariate_columns`; ``target_freq`` counts every
token read of every document of the corpus). The
shards hold what the model computed (the prediction columns and the norms), in
plan order. With a shards directory the skeleton is saved as ``plan.parquet``
and the table's metadata (the text or corpus with every document's provenance
and token count, the windows, the sites) in ``manifest.json``, so the table of a
run whose shards are all done can be assembled from the directory alone
(:func:`table_from_shards`, ``lamina analyze DIR/shards``).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lamina import __version__
from lamina._io import atomic_path
from lamina.capture.covariate_columns import COVARIATES, covariate_columns
from lamina.capture.plan import Document, ExtractionPlan
from lamina.capture.scoring import decoded_lengths, token_strings
from lamina.capture.shards import load_manifest, read_shard
from lamina.errors import CaptureError, TableError
from lamina.table import FORMAT_VERSION, SCORE_COLUMNS, build_table

PLAN_FILE = "plan.parquet"
PLAN_KEY = b"lamina_plan"
SKELETON_COLUMNS = (
    "doc",
    "text_pos",
    "window",
    "ctx_pos",
    "token_id",
    "target_id",
    "target_chars",
    *COVARIATES,
)


def skeleton(plan: ExtractionPlan, tokenizer: Any) -> dict[str, np.ndarray]:
    """Every scored row's document, position, window, ids, target length and covariates."""
    counts, n_counted = corpus_counts(plan.documents)
    delimiters: dict[int, bool] = {}
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SKELETON_COLUMNS}
    for shard in plan.shards:
        doc = plan.documents[shard.doc]
        for w in shard.windows:
            text_pos = np.arange(w.score_from, w.stop, dtype=np.int64)
            parts["doc"].append(np.full(w.n_scored, shard.doc, dtype=np.int32))
            parts["text_pos"].append(text_pos)
            parts["window"].append(np.full(w.n_scored, w.index, dtype=np.int32))
            parts["ctx_pos"].append((text_pos - w.start).astype(np.int32))
            parts["token_id"].append(doc.ids(w.score_from, w.stop))
            parts["target_id"].append(doc.ids(w.score_from + 1, w.stop + 1))
        if shard.windows:
            for name, values in _covariates(
                doc, shard.windows, tokenizer, counts, n_counted, delimiters
            ).items():
                parts[name].append(values)
    columns = {
        name: np.concatenate(values) if values else np.zeros(0, dtype=np.int64)
        for name, values in parts.items()
        if name != "target_chars"
    }
    chars = decoded_lengths(tokenizer, columns["target_id"])
    columns["target_chars"] = np.minimum(chars, np.iinfo(np.int16).max).astype(np.int16)
    return {name: columns[name] for name in SKELETON_COLUMNS}


def corpus_counts(documents: Sequence[Document]) -> tuple[np.ndarray, int]:
    """Occurrences of every token id over every token read of every document, and their sum."""
    total = np.zeros(0, dtype=np.int64)
    for doc in documents:
        more = doc.counts if doc.counts is not None else np.bincount(doc.tokens)
        if more.size > total.size:
            more = more.copy()
            more[: total.size] += total
            total = more
        else:
            total[: more.size] += more
    return total, int(total.sum())


def _covariates(
    doc: Document,
    windows: Sequence[Any],
    tokenizer: Any,
    counts: np.ndarray,
    n_counted: int,
    delimiters: dict[int, bool],
) -> dict[str, np.ndarray]:
    """The covariate columns of ``windows`` of ``doc``, positions taken in its kept tokens."""
    local = doc.local(windows)
    text_pos = np.concatenate([np.arange(w.score_from, w.stop) for w in local])
    window_start = np.concatenate([np.full(w.n_scored, w.start) for w in local])
    return covariate_columns(
        doc.tokens,
        text_pos,
        window_start,
        tokenizer,
        counts=counts,
        n_counted=n_counted,
        delimiter_cache=delimiters,
    )


def base_metadata(plan: ExtractionPlan, text: dict[str, Any], sites: dict[str, Any]) -> dict:
    """The table metadata that follows from the plan: text, documents, windows, sites."""
    counts = [doc.n_tokens for doc in plan.documents]
    return {
        "format_version": FORMAT_VERSION,
        "lamina_version": __version__,
        "text": text,
        "documents": [{**doc.provenance, "n_tokens": doc.n_tokens} for doc in plan.documents],
        "windows": plan.windows_metadata(),
        # None when tokenizing stopped early (max_tokens): the texts' lengths are unknown
        "n_text_tokens": None if any(c is None for c in counts) else sum(counts),
        "n_scored": plan.n_scored,
        **sites,
    }


def plan_key(plan: ExtractionPlan) -> str:
    """One string for the whole plan: its shards' keys, in order."""
    import hashlib

    return hashlib.sha256("\n".join(s.key for s in plan.shards).encode("ascii")).hexdigest()


def save_skeleton(
    shards_dir: Path, plan: ExtractionPlan, columns: Mapping[str, np.ndarray]
) -> None:
    """Write ``plan.parquet`` (the skeleton, under the plan's key) unless it is there already."""
    key = plan_key(plan)
    path = Path(shards_dir) / PLAN_FILE
    try:
        if pq.read_schema(path).metadata.get(PLAN_KEY) == key.encode():
            return
    except (OSError, pa.ArrowInvalid, AttributeError):
        pass
    table = pa.table({name: np.asarray(columns[name]) for name in SKELETON_COLUMNS})
    table = table.replace_schema_metadata({PLAN_KEY: key})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def assemble_table(
    skeleton_columns: Mapping[str, np.ndarray],
    computed: Sequence[Mapping[str, np.ndarray]],
    metadata: dict[str, Any],
    *,
    allow_nonfinite: bool = False,
    tokenizer: Any = None,
) -> pa.Table:
    """The token table: the skeleton, the shards' columns (in plan order), the metadata.

    The ``nonfinite`` column is kept only with ``allow_nonfinite``; without it, a
    reused shard that marked rows (computed with it) is refused. With the
    ``tokenizer``, the metadata's ``vocab`` holds the text of every token,
    target and prediction of the table (for the report's token view).
    """
    columns = dict(skeleton_columns)
    names = list(computed[0]) if computed else []
    for name in names:
        columns[name] = np.concatenate([c[name] for c in computed])
    nonfinite = columns.pop("nonfinite", None)
    if nonfinite is not None and nonfinite.any() and not allow_nonfinite:
        raise CaptureError(
            f"{int(nonfinite.sum())} saved token(s) have NaN or infinite outputs (their shards "
            "were computed with --allow-nonfinite); pass --allow-nonfinite again, or delete "
            "the shards to extract anew."
        )
    kept = (*SCORE_COLUMNS, "doc", "pred_id", *COVARIATES)
    ordered = {name: columns[name] for name in kept if name in columns}
    if allow_nonfinite and nonfinite is not None:
        ordered["nonfinite"] = nonfinite
    for name in names:
        if name not in ordered and name in columns:
            ordered[name] = columns[name]
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    metadata = {**metadata, "created": created}
    if tokenizer is not None:
        ids = (ordered["token_id"], ordered["target_id"], ordered["pred_id"])
        metadata["vocab"] = token_strings(tokenizer, *ids)
    return build_table(ordered, metadata)


def table_from_shards(shards_dir: str | Path, *, allow_nonfinite: bool = False) -> pa.Table:
    """The token table of a finished (or fully computed) run, from its shards directory alone.

    Raises :class:`TableError` with one sentence when the directory is not a shards
    directory, its plan is missing, or any shard is missing or damaged.
    """
    folder = Path(shards_dir)
    manifest = load_manifest(folder)
    if manifest is None or not isinstance(manifest.get("metadata"), dict):
        raise TableError(
            f"{folder} is not the shards directory of a lamina run (no readable manifest.json "
            "with the run's metadata); give a token table file."
        )
    try:
        plan_table = pq.read_table(folder / PLAN_FILE)
    except (OSError, pa.ArrowInvalid) as exc:
        raise TableError(f"{folder / PLAN_FILE} is missing or unreadable; resume the run.") from exc
    shards = manifest.get("shards") or []
    names = list(manifest.get("columns") or [])
    computed, missing = [], 0
    for shard in shards:
        table = read_shard(folder, shard["key"], shard["rows"], names)
        if table is None:
            missing += 1
            continue
        computed.append({n: table.column(n).to_numpy(zero_copy_only=False) for n in names})
    if missing or plan_table.num_rows != sum(s["rows"] for s in shards):
        raise TableError(
            f"{missing} of the {len(shards)} shards in {folder} are missing or damaged; run the "
            "same extraction again to compute them, then analyse its token table."
        )
    if not isinstance(manifest.get("model"), dict):
        raise TableError(f"{folder}/manifest.json does not describe the model; resume the run.")
    if isinstance(manifest["metadata"].get("probe"), dict):
        _add_probe_columns(folder, shards, computed, manifest["metadata"])
    skeleton_columns = {
        n: plan_table.column(n).to_numpy(zero_copy_only=False) for n in SKELETON_COLUMNS
    }
    metadata = {
        **manifest["metadata"],
        "model": manifest["model"],
        "seconds": None,
        "command_line": None,
        "assembled_from": str(folder),
    }
    return assemble_table(skeleton_columns, computed, metadata, allow_nonfinite=allow_nonfinite)


def _add_probe_columns(
    folder: Path, shards: list[dict], computed: list[dict[str, np.ndarray]], metadata: dict
) -> None:
    """Every shard's saved ``fold`` and probe columns (:mod:`lamina.capture.probe_run`)."""
    from lamina.capture.probe_run import PROBE_DIR, read_probe_shard

    probe = metadata["probe"]
    digest = str(probe.get("directions_sha256"))
    names = ["fold"] + [
        f"probe.{site}.{layer}" for site in probe["sites"] for layer in range(metadata["n_layers"])
    ]
    for shard, columns in zip(shards, computed, strict=True):
        path = folder / PROBE_DIR / f"{shard['key']}.{digest[:16]}.parquet"
        scores = read_probe_shard(path, f"{shard['key']}|{digest}", shard["rows"], names)
        if scores is None:
            raise TableError(
                f"the probe scores of shard {shard['key']} in {folder} are missing or damaged; "
                "run the same extraction again to compute them."
            )
        bad = np.asarray(columns.get("nonfinite", np.zeros(0)), dtype=bool)
        for name, values in scores.items():
            columns[name] = (
                np.where(bad, np.nan, values) if name != "fold" and bad.any() else values
            )


def is_shards_directory(path: str | Path) -> bool:
    """Whether ``path`` is a directory holding a lamina shards manifest."""
    folder = Path(path)
    return folder.is_dir() and (folder / "manifest.json").is_file()
