"""Part 7's pieces that are not tests: the balance table, the regression terms, the
permutation blocks, each layer's verdict and the plain-words summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lamina._format import layer_list
from lamina.stats.catalog import CORRECTION_LABELS, short
from lamina.stats.strata import standardised_mean_difference

if TYPE_CHECKING:
    from lamina.study.covariates import TableCovariates
    from lamina.study.options import StudyOptions
    from lamina.study.prepare import Prepared
    from lamina.study.records import BalanceRow, Controls

VERDICTS = {
    "survives": "significant after controls",
    "negligible": "significant but negligible",
    "explained": "explained by the controls",
    "disagree": "the two tests disagree",
    "none": "not significant",
}
#: Controls entered on a log scale in the regression (their effect is roughly logarithmic).
LOG_TERMS = ("ctx_pos",)


def verdict(conditional: bool, regression: bool, significant_raw: bool, negligible: bool) -> str:
    """A layer's label from the two tests after the controls, Part 6's, and the effect size.

    Both reject: significant after controls (or significant but negligible); one
    rejects: the tests disagree; neither: explained by the controls when Part 6
    found the layer, else not significant.
    """
    if conditional and regression:
        return VERDICTS["negligible" if negligible else "survives"]
    if conditional or regression:
        return VERDICTS["disagree"]
    return VERDICTS["explained" if significant_raw else "none"]


def regression_terms(chosen: dict[str, np.ndarray]) -> tuple[list[str], list[np.ndarray]]:
    """The regression's control terms (names and columns; standardised by the caller)."""
    terms, columns = [], []
    for name, values in chosen.items():
        if name in LOG_TERMS:
            terms.append(f"z(log(1 + {name}))")
            columns.append(np.log1p(values))
        else:
            terms.append(f"z({name})")
            columns.append(values)
    return terms, columns


def block_codes(data: Prepared, options: StudyOptions) -> tuple[np.ndarray | None, str | None]:
    """The blocks permutations stay within (kept tokens), and a note when there are none."""
    if options.permute_within == "window" and data.window is not None:
        return data.window[data.keep], None
    if options.permute_within == "doc":
        if data.doc is None:
            return None, (
                "--permute-within doc: this token table has no doc column (one text is one "
                "document), so permutations are not restricted further."
            )
        return data.doc[data.keep], None
    return None, None


def balance_rows(
    covariates: TableCovariates,
    keep: np.ndarray,
    labels: np.ndarray,
    codes: np.ndarray,
    used: list[str],
) -> list[BalanceRow]:
    """Every covariate's means, SDs and standardised differences, correct vs incorrect."""
    from lamina.study.records import BalanceRow

    rows = []
    for name, values in covariates.values.items():
        x = values[keep]
        a, b = x[labels], x[~labels]
        smd = standardised_mean_difference(x, labels)
        within = standardised_mean_difference(x, labels, codes)
        rows.append(
            BalanceRow(
                covariate=name,
                kind="binary" if np.unique(x).size <= 2 else "continuous",
                control=name in used,
                source=covariates.sources[name],
                mean_correct=float(a.mean()),
                mean_incorrect=float(b.mean()),
                sd_correct=float(a.std(ddof=1)),
                sd_incorrect=float(b.std(ddof=1)),
                smd=smd if np.isfinite(smd) else None,
                smd_within_strata=within if np.isfinite(within) else None,
            )
        )
    return rows


def summary_sentence(record: Controls) -> str:
    """Which layers survive the controls, in plain words."""
    controls = ", ".join(record.controls) or "no covariate"
    correction = CORRECTION_LABELS[record.correction]
    n_layers = record.n_layers
    sentences = [
        f"Conditional on {controls} ({record.strata.n_strata} "
        f"{'stratum' if record.strata.n_strata == 1 else 'strata'}), "
        + (
            f"{record.n_significant} of {n_layers} layers differ at α = {record.alpha:g} "
            f"(conditional permutation test and regression score test, both by the "
            f"{correction}): layers {layer_list(record.significant_layers)}."
            if record.n_significant
            else f"no layer of {n_layers} differs at α = {record.alpha:g} (conditional "
            f"permutation test and regression score test, both by the {correction})."
        )
    ]
    if record.negligible_layers:
        sentences.append(
            f"Significant but negligible (|controlled Hedges' g| < {record.min_effect:g}): "
            f"layers {layer_list(record.negligible_layers)}."
        )
    if record.survived_layers:
        sentences.append(
            f"Significant with |g| >= {record.min_effect:g}: "
            f"layers {layer_list(record.survived_layers)}."
        )
    if record.disagree_layers:
        sentences.append(
            "Only one of the two tests rejects (the conditional test of "
            f"{short(record.statistic_name)} or the regression's score test): "
            f"layers {layer_list(record.disagree_layers)}."
        )
    if record.explained_layers:
        sentences.append(
            f"Significant before the controls but not after (explained by them): "
            f"layers {layer_list(record.explained_layers)}."
        )
    gain = [r.layer for r in record.layers if r.auroc_gain_ci_low > 0]
    sentences.append(
        f"The controls alone predict correctness with cross-validated AUROC "
        f"{record.regression.auroc_controls:.3f}; "
        + (
            f"adding the log-norm raises it (95% CI above 0) at layers {layer_list(gain)}."
            if gain
            else "adding the log-norm of any one layer does not raise it (95% CI includes 0)."
        )
    )
    return " ".join(sentences)
