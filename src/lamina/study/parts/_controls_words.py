"""Part 7's words: the balance table, each layer's verdict and the plain-words summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lamina._format import layers_phrase
from lamina.stats.catalog import CORRECTION_LABELS
from lamina.stats.effects import standardised_mean_difference

if TYPE_CHECKING:
    from lamina.study.options import StudyOptions
    from lamina.study.records import BalanceRow, Controls
    from lamina.study.table_covariates import TableCovariates

#: One verdict per layer, from the test after the controls and the controlled g's interval.
VERDICTS = {
    "survives": "significant after controls",
    "small": "significant, small effect",
    "negligible": "significant but negligible",
    "explained": "explained by the controls",
    "equivalent": "shown negligible",
    "undetermined": "not detected after the controls",
}

ADJUSTMENT_RULE = (
    "least-squares residuals of the log-norms and of the labels on a basis of the controls: "
    "an indicator per binary control, a factor per integer control with at most 16 levels, "
    "a cubic B-spline (log(1 + value) for ctx_pos and target_freq) with round(n^(1/3) / 2) "
    "interior knots (3-20) at quantiles for every other; additive"
)
SEPARATION_NOTE = (
    "the controls alone predict correct and incorrect almost perfectly (they separate the "
    "classes), so an odds ratio given them is undefined and left out"
)
ENTROPY_NOTE = (
    "entropy is among the controls: it is a consequence of the layers' states (the final norm "
    "and the unembedding read them), so this Part 7 asks a different question, whether the "
    "norm tells right from wrong beyond the model's own confidence; it can remove a real "
    "effect that acts through the logits and create one where the norm only sets the output's "
    "temperature. The default controls leave it out."
)
TEST_WORDS = (
    "generalised covariance measure: the correlation of the residuals, each divided by its "
    "SD as a function of the controls; null by the scheme's labellings of the label residual "
    "(the same for every layer); two-sided about 0; the max-statistic over layers of "
    "|statistic| / SD of its own null"
)


def verdict(
    significant: bool, significant_raw: bool, negligible: bool, g: float, options: StudyOptions
) -> str:
    """A layer's verdict.

    Significant after the controls: ``negligible`` when the controlled g's whole
    95% interval lies within +/- ``min_effect`` (an equivalence test), ``small``
    when the point estimate does, else ``survives``. Not significant: ``explained``
    when Part 6 found the layer and the interval shows the controlled effect
    negligible, ``equivalent`` when it shows it negligible without Part 6's
    finding, else ``undetermined`` (not detected; the interval does not exclude an
    effect of ``min_effect``). Not rejecting is never called explaining.
    """
    if significant:
        if negligible:
            return VERDICTS["negligible"]
        small = not np.isfinite(g) or abs(g) < options.min_effect
        return VERDICTS["small" if small else "survives"]
    if negligible:
        return VERDICTS["explained" if significant_raw else "equivalent"]
    return VERDICTS["undetermined"]


def balance_rows(
    covariates: TableCovariates, keep: np.ndarray, labels: np.ndarray, used: list[str]
) -> list[BalanceRow]:
    """Every covariate's means, SDs and standardised difference, correct vs incorrect."""
    from lamina.study.records import BalanceRow

    rows = []
    for name, values in covariates.values.items():
        x = values[keep]
        a, b = x[labels], x[~labels]
        smd = standardised_mean_difference(x, labels)
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
            )
        )
    return rows


def summary_sentence(record: Controls) -> str:
    """Which layers survive the controls, in plain words."""
    controls = ", ".join(record.controls) or "no covariate"
    correction = CORRECTION_LABELS[record.correction]
    n_layers = record.n_layers
    delta = record.min_effect
    sentences = [
        f"Beyond {controls} (null: {record.adjustment.scheme_description}), "
        + (
            f"{record.n_significant} of {n_layers} layers differ at α = {record.alpha:g} "
            f"({correction}): {layers_phrase(record.significant_layers)}."
            if record.n_significant
            else f"no layer of {n_layers} differs at α = {record.alpha:g} ({correction})."
        )
    ]
    if record.survived_layers:
        sentences.append(f"Controlled |g| >= {delta:g}: {layers_phrase(record.survived_layers)}.")
    if record.small_layers:
        sentences.append(
            f"Significant with a small controlled effect (|g| < {delta:g}, interval not within "
            f"±{delta:g}): {layers_phrase(record.small_layers)}."
        )
    if record.negligible_layers:
        sentences.append(
            f"Significant but negligible (95% interval of g within ±{delta:g}): "
            f"{layers_phrase(record.negligible_layers)}."
        )
    if record.explained_layers:
        sentences.append(
            "Significant before the controls and shown negligible after (explained by them): "
            f"{layers_phrase(record.explained_layers)}."
        )
    undetermined = [r for r in record.undetermined_layers if r in record.significant_raw_layers]
    if undetermined:
        sentences.append(
            "Significant before the controls, not detected after, but not shown negligible "
            f"either: {layers_phrase(undetermined)}."
        )
    gain = [r.layer for r in record.layers if r.logloss_gain_ci_low > 0]
    sentences.append(
        f"The controls alone predict correctness with out-of-fold AUROC "
        f"{record.regression.auroc_controls:.3f}; "
        + (
            f"adding the log-norm improves the held-out log-loss (95% CI above 0) at "
            f"{layers_phrase(gain)}."
            if gain
            else "adding the log-norm of any one layer does not improve the held-out log-loss "
            "(95% CI includes 0)."
        )
    )
    return " ".join(sentences)
