"""The covariates of a token table: read from its columns, or derived where that is exact.

Tables extracted by this lamina have every covariate column
(:mod:`lamina.capture.covariate_columns`). A table written before them is analysed
with what its other columns give:

- ``input_is_first``: ``ctx_pos == 0`` (the same definition);
- ``target_freq``: ``ln(count / rows)`` of the target id among the table's rows
  (the text's whole token stream is not in the table, so a middle window's
  frequencies come from the window itself);
- ``target_repeat``: the window's tokens ``tokens[start .. p]`` are
  reconstructed from the rows (``token_id`` at ``text_pos``, ``target_id`` at
  ``text_pos + 1``; ``start = text_pos - ctx_pos``); exact, and derived, only
  when every one of those positions is known for every row (true of ``middle``
  and ``all`` windows);
- ``input_is_delimiter`` needs the tokenizer: not derivable.

A covariate that cannot be had is reported with one sentence and left out.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

FROM_TABLE = "the table's column"
SOURCES = {
    "input_is_first": "derived: ctx_pos == 0",
    "target_freq": "derived: ln(count / rows) of the target id among the table's rows",
    "target_repeat": "derived: the window's earlier tokens, reconstructed from the table's rows",
}
NOT_DERIVABLE = {
    "input_is_delimiter": (
        "input_is_delimiter needs the tokenizer and this token table has no such column "
        "(it was written before lamina recorded covariates): re-extract it with "
        "`lamina extract` to use it"
    ),
    "target_repeat": (
        "target_repeat cannot be derived exactly from this token table (some rows' windows "
        "begin at positions the table does not hold): re-extract it with `lamina extract` "
        "to use it"
    ),
}


@dataclasses.dataclass
class TableCovariates:
    """Per-token covariates (float64, one per table row), where each came from, and
    a sentence for each one that could not be had."""

    values: dict[str, np.ndarray]
    sources: dict[str, str]
    missing: dict[str, str]


def table_covariates(table: pa.Table) -> TableCovariates:
    """Every covariate the table has or gives (module docstring)."""
    names = set(table.column_names)

    def column(name: str) -> np.ndarray:
        return table.column(name).to_numpy(zero_copy_only=False)

    values: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    missing: dict[str, str] = {}
    for name in ("ctx_pos", "target_chars", "entropy"):
        values[name] = column(name).astype(np.float64)
        sources[name] = FROM_TABLE
    stored = ("target_freq", "target_repeat", "input_is_first", "input_is_delimiter")
    for name in stored:
        if name in names:
            values[name] = column(name).astype(np.float64)
            sources[name] = FROM_TABLE
    ctx_pos = column("ctx_pos").astype(np.int64)
    if "input_is_first" not in values:
        values["input_is_first"] = (ctx_pos == 0).astype(np.float64)
        sources["input_is_first"] = SOURCES["input_is_first"]
    if "target_freq" not in values:
        values["target_freq"] = table_target_freq(column("target_id"))
        sources["target_freq"] = SOURCES["target_freq"]
    if "target_repeat" not in values:
        doc = column("doc") if "doc" in names else None
        derived = derive_target_repeat(
            column("text_pos"), ctx_pos, column("token_id"), column("target_id"), doc
        )
        if derived is None:
            missing["target_repeat"] = NOT_DERIVABLE["target_repeat"]
        else:
            values["target_repeat"] = derived.astype(np.float64)
            sources["target_repeat"] = SOURCES["target_repeat"]
    if "input_is_delimiter" not in values:
        missing["input_is_delimiter"] = NOT_DERIVABLE["input_is_delimiter"]
    return TableCovariates(values=values, sources=sources, missing=missing)


def table_target_freq(target_id: np.ndarray) -> np.ndarray:
    """``ln(count / rows)`` of every row's target id among all rows' target ids."""
    ids = np.asarray(target_id, dtype=np.int64)
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    return np.log(counts[inverse.ravel()] / ids.size)


def derive_target_repeat(text_pos, ctx_pos, token_id, target_id, doc=None) -> np.ndarray | None:
    """Whether each row's target occurs in ``tokens[start .. p]``, or None if not exact.

    The stream is rebuilt from the rows (per document when ``doc`` is given).
    """
    pos = np.asarray(text_pos, dtype=np.int64)
    if pos.size == 0:
        return np.zeros(0, dtype=bool)
    start = pos - np.asarray(ctx_pos, dtype=np.int64)
    if (start < 0).any():
        return None
    span = int(pos.max()) + 2  # positions 0 .. max + 1 of one document
    offset = np.zeros(pos.size, dtype=np.int64) if doc is None else np.asarray(doc) * span
    n_docs = int(offset.max()) // span + 1
    stream = np.full(n_docs * span, -1, dtype=np.int64)
    stream[offset + pos] = np.asarray(token_id, dtype=np.int64)
    stream[offset + pos + 1] = np.asarray(target_id, dtype=np.int64)
    known = np.r_[0, np.cumsum(stream >= 0)]
    # every position start .. p (inclusive) must be known
    first, last = offset + start, offset + pos
    if (known[last + 1] - known[first] != last - first + 1).any():
        return None
    from lamina.capture.covariate_columns import previous_occurrence

    return previous_occurrence(stream)[offset + pos + 1] >= first
