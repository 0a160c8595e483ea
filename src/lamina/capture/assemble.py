"""The token table from a plan and its shards' columns.

Positions, windows, documents and the text-derived columns (``target_chars``)
come from the plan and the tokenizer; the prediction columns and the norms from
the shards, in plan order. The metadata describes the model, the text or corpus
(every document's provenance and token count), the windows and the sites.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from lamina import __version__
from lamina.capture.plan import ExtractionPlan
from lamina.capture.scoring import decoded_lengths
from lamina.errors import CaptureError
from lamina.table import FORMAT_VERSION, SCORE_COLUMNS, build_table


def plan_columns(plan: ExtractionPlan) -> dict[str, np.ndarray]:
    """The positional columns of every scored row: doc, text_pos, window, ctx_pos, ids."""
    parts: dict[str, list[np.ndarray]] = {
        name: [] for name in ("doc", "text_pos", "window", "ctx_pos", "token_id", "target_id")
    }
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
    return {
        name: np.concatenate(values) if values else np.zeros(0, dtype=np.int64)
        for name, values in parts.items()
    }


def assemble_table(
    plan: ExtractionPlan,
    shard_columns: Mapping[str, Mapping[str, np.ndarray]],
    *,
    tokenizer: Any,
    model_report: dict[str, Any],
    text: dict[str, Any],
    sites: dict[str, Any],
    seconds: float,
    command_line: str | None,
    extra: dict[str, Any] | None = None,
    allow_nonfinite: bool = False,
) -> pa.Table:
    """The token table of ``plan``; ``shard_columns`` maps each shard's key to its columns.

    The ``nonfinite`` column is kept only with ``allow_nonfinite``; without it, a
    reused shard that marked rows (computed with it) is refused.
    """
    columns: dict[str, np.ndarray] = plan_columns(plan)
    computed = [shard_columns[shard.key] for shard in plan.shards]
    names = list(computed[0]) if computed else []
    for name in names:
        columns[name] = np.concatenate([c[name] for c in computed])
    chars = decoded_lengths(tokenizer, columns["target_id"])
    columns["target_chars"] = np.minimum(chars, np.iinfo(np.int16).max)
    nonfinite = columns.pop("nonfinite", None)
    if nonfinite is not None and nonfinite.any() and not allow_nonfinite:
        raise CaptureError(
            f"{int(nonfinite.sum())} saved token(s) have NaN or infinite outputs (their shards "
            "were computed with --allow-nonfinite); pass --allow-nonfinite again, or delete "
            "the shards to extract anew."
        )
    ordered = {name: columns[name] for name in SCORE_COLUMNS}
    ordered["doc"] = columns["doc"]
    ordered["pred_id"] = columns["pred_id"]
    if allow_nonfinite and nonfinite is not None:
        ordered["nonfinite"] = nonfinite
    for name in names:
        if name not in ordered and name in columns:
            ordered[name] = columns[name]
    metadata = {
        "format_version": FORMAT_VERSION,
        "lamina_version": __version__,
        "model": model_report,
        "text": text,
        "documents": [{**doc.provenance, "n_tokens": doc.n_tokens} for doc in plan.documents],
        "windows": plan.windows_metadata(),
        "n_text_tokens": _total_tokens(plan),
        "n_scored": len(ordered["text_pos"]),
        **sites,
        "seconds": round(seconds, 3),
        "command_line": command_line,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    return build_table(ordered, metadata)


def _total_tokens(plan: ExtractionPlan) -> int | None:
    """Tokens in every document, or None when tokenizing stopped early (``max_tokens``)."""
    counts = [doc.n_tokens for doc in plan.documents]
    return None if any(c is None for c in counts) else sum(counts)
