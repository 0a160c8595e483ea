"""From a token table to the arrays every part analyses: columns, log-norms, exclusions.

The site's raw L2 norms become natural-log norms (float64; the notebook mode
takes logs in float32 as the notebook did). A token whose vector has a zero norm
(log = -inf) or a non-finite norm at any analysed layer is excluded from Parts
3-7, counted, and reported; Part 2 uses every scored token. A row the
extraction marked ``nonfinite`` (a NaN or inf logit or norm, kept by
``--allow-nonfinite``) is left out of every part from 2 on and counted apart.
Tokens excluded on request (``exclude``: the first token of each window,
delimiters) are dropped before every part, Part 2 included, and counted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.errors import InputError, TableError
from lamina.study.options import StudyOptions
from lamina.study.table_covariates import NOT_DERIVABLE, TableCovariates, table_covariates
from lamina.table import layer_matrix, site_layers, table_metadata

if TYPE_CHECKING:
    import pyarrow as pa

EXCLUSION_RULE = (
    "a token whose vector has a zero (log = -inf) or non-finite L2 norm at any "
    "analysed layer is excluded from Parts 3-7"
)
NONFINITE_RULE = (
    "a token the extraction marked nonfinite (a NaN or inf logit or norm, kept by "
    "--allow-nonfinite) is excluded from Parts 2-7"
)


@dataclasses.dataclass
class Prepared:
    """The arrays of one site of a token table, ready for the parts.

    Per scored token (``n_tokens``, table order): ``correct``, ``ctx_pos``,
    ``target_chars``, ``log_norm`` (n_tokens, n_layers) and ``zero`` (the norm
    was 0); ``keep`` marks the tokens the parts 3-7 use, whose labels and
    log-norms are ``labels`` and ``values`` (n_kept, n_layers). Tokens excluded
    on request are not among the ``n_tokens``; ``n_table_rows`` counts every row.
    ``covariates`` holds the per-token covariates (:mod:`.covariates`), and
    ``window`` and ``doc`` the blocks (``doc`` None without that column); ``rows`` the
    table row of each of the ``n_tokens`` (to read further columns of the same tokens).
    """

    meta: dict[str, Any]
    site: str
    layers: list[int]
    layer_index: int
    correct: np.ndarray
    ctx_pos: np.ndarray
    target_chars: np.ndarray
    log_norm: np.ndarray
    zero: np.ndarray
    keep: np.ndarray
    labels: np.ndarray
    values: np.ndarray
    exclusions: dict[str, Any]
    n_table_rows: int = 0
    covariates: TableCovariates | None = None
    window: np.ndarray | None = None
    doc: np.ndarray | None = None
    rows: np.ndarray | None = None

    @property
    def n_tokens(self) -> int:
        return int(self.correct.size)

    @property
    def layer_values(self) -> np.ndarray:
        """The kept tokens' log-norms at the single layer of Parts 3-5."""
        return self.values[:, self.layer_index]


def prepare_table(table: pa.Table, options: StudyOptions) -> Prepared:
    """The site's arrays of ``table``; raises for a layer, site or class size it cannot serve."""
    meta = table_metadata(table)
    site = options.site
    layers = _check_layers(table, meta, site, options.layer)
    raw = np.asarray(layer_matrix(table, site))  # (n_tokens, n_layers) float32 L2 norms
    return prepare_matrix(table, site, raw, layers, layers.index(options.layer), options)


def prepare_matrix(
    table: pa.Table,
    site: str,
    raw: np.ndarray,
    columns: list[int],
    column_index: int,
    options: StudyOptions,
) -> Prepared:
    """The arrays of any matrix of raw norms (one column per analysed test) of ``table``.

    ``columns`` label the matrix's columns (the layers of a per-layer site;
    :mod:`lamina.study.site_profiles` numbers a per-head matrix's columns) and
    ``column_index`` is the one of Parts 3-5. The exclusion rule is the same
    for every matrix: a zero or non-finite norm in any column excludes the token.
    """
    meta = table_metadata(table)
    layers = list(columns)
    n_table_rows = int(table.num_rows)
    rows = np.arange(n_table_rows)
    if "nonfinite" in table.column_names:
        marked = table.column("nonfinite").to_numpy(zero_copy_only=False)
        rows = rows[~np.asarray(marked, dtype=bool)]
    table, raw, n_nonfinite = _drop_nonfinite(table, raw)
    correct = _require_column(table, "correct").astype(bool)
    if correct.size == 0:
        raise InputError("the token table has no scored tokens; use a longer text or window.")
    covariates = table_covariates(table)
    kept_rows, requested = _requested_exclusions(covariates, correct, options)
    correct = correct[kept_rows]
    ctx_pos = _require_column(table, "ctx_pos").astype(np.int64)[kept_rows]
    target_chars = _require_column(table, "target_chars").astype(np.int64)[kept_rows]
    covariates.values = {k: v[kept_rows] for k, v in covariates.values.items()}
    if correct.size == 0:
        raise InputError("--exclude leaves no tokens; drop it or use a longer text or window.")
    raw = raw[kept_rows]
    finite = np.isfinite(raw)
    zero = raw == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        # The notebook takes logs of float32 norms in float32; lamina in float64.
        log_norm = (
            np.log(raw).astype(np.float64) if options.notebook else np.log(raw.astype(np.float64))
        )
    keep = ~(zero | ~finite).any(axis=1)
    exclusions = {**_exclusions(correct, keep, zero, finite, layers), **requested}
    if n_nonfinite or "nonfinite" in table.column_names:
        exclusions.update(nonfinite_rule=NONFINITE_RULE, n_nonfinite_excluded=n_nonfinite)
    labels = correct[keep]
    _check_class_sizes(labels, exclusions["n_tokens_excluded"] + n_nonfinite)
    return Prepared(
        meta=meta,
        site=site,
        layers=layers,
        layer_index=column_index,
        correct=correct,
        ctx_pos=ctx_pos,
        target_chars=target_chars,
        log_norm=log_norm,
        zero=zero,
        keep=keep,
        labels=labels,
        values=log_norm[keep],
        exclusions=exclusions,
        n_table_rows=n_table_rows,
        covariates=covariates,
        window=_optional_column(table, "window", kept_rows),
        doc=_optional_column(table, "doc", kept_rows),
        rows=rows[kept_rows],
    )


def _drop_nonfinite(table: pa.Table, raw: np.ndarray) -> tuple[pa.Table, np.ndarray, int]:
    """The table and its norm matrix without the rows marked ``nonfinite``; how many there were."""
    if "nonfinite" not in table.column_names:
        return table, raw, 0
    marked = np.asarray(table.column("nonfinite").to_numpy(zero_copy_only=False), dtype=bool)
    if not marked.any():
        return table, raw, 0
    return table.filter(~marked), raw[~marked], int(marked.sum())


def _optional_column(table: pa.Table, name: str, rows: np.ndarray) -> np.ndarray | None:
    if name not in table.column_names:
        return None
    return table.column(name).to_numpy(zero_copy_only=False).astype(np.int64)[rows]


#: The covariate that marks each kind of token ``exclude`` can drop.
EXCLUDE_COVARIATE = {"first": "input_is_first", "delimiters": "input_is_delimiter"}


def _requested_exclusions(
    covariates: TableCovariates, correct: np.ndarray, options: StudyOptions
) -> tuple[np.ndarray, dict[str, Any]]:
    """Rows kept after ``options.exclude``, and the counts ``exclusions`` records."""
    drop = np.zeros(correct.size, dtype=bool)
    by_kind = {}
    for kind in options.exclude:
        name = EXCLUDE_COVARIATE[kind]
        if name not in covariates.values:
            raise InputError(f"--exclude {kind}: {NOT_DERIVABLE[name]}, or drop {kind}.")
        marked = covariates.values[name] > 0
        by_kind[kind] = int(marked.sum())
        drop |= marked
    record = {
        "requested": list(options.exclude),
        "n_requested_excluded": int(drop.sum()),
        "n_requested_correct_excluded": int((drop & correct).sum()),
        "requested_by_kind": by_kind,
    }
    return np.flatnonzero(~drop), record


def _check_layers(table: pa.Table, meta: Mapping[str, Any], site: str, layer: int) -> list[int]:
    layers = list(site_layers(table, site))
    if not layers:
        present = ", ".join(meta.get("sites", [])) or "none"
        raise InputError(
            f"the token table has no {site!r} columns (sites captured: {present}); "
            f"pick one of those with --site or re-extract with --site {site}."
        )
    if layer not in layers:
        raise InputError(
            f"--layer {layer} does not exist: the table has {site} layers "
            f"{layers[0]}-{layers[-1]}; pick one of them."
        )
    return layers


def _require_column(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names:
        raise TableError(
            f"the token table has no {name!r} column; re-extract it with this version of lamina."
        )
    return table.column(name).to_numpy(zero_copy_only=False)


def _exclusions(
    correct: np.ndarray, keep: np.ndarray, zero: np.ndarray, finite: np.ndarray, layers: list[int]
) -> dict[str, Any]:
    return {
        "rule": EXCLUSION_RULE,
        "n_tokens_excluded": int((~keep).sum()),
        "n_correct_excluded": int((~keep & correct).sum()),
        "n_incorrect_excluded": int((~keep & ~correct).sum()),
        "zero_norm_by_layer": {str(layer): int(zero[:, j].sum()) for j, layer in enumerate(layers)},
        "non_finite_by_layer": {
            str(layer): int((~finite[:, j]).sum()) for j, layer in enumerate(layers)
        },
    }


def _check_class_sizes(labels: np.ndarray, n_excluded: int) -> None:
    n_correct, n_incorrect = int(labels.sum()), int((~labels).sum())
    for name, count in (("correctly", n_correct), ("incorrectly", n_incorrect)):
        if count < 2:
            raise InputError(
                f"only {count} token(s) were predicted {name}"
                + (
                    f" after excluding {n_excluded} token(s) with a zero or non-finite norm or "
                    "output"
                    if n_excluded
                    else ""
                )
                + "; comparing the classes needs at least 2 of each: use a longer text or "
                "window, or another model."
            )
