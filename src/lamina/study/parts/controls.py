"""Part 7: does the difference survive the confounds?

Correct and incorrect tokens differ in more than correctness: correct targets
are shorter, more frequent, more often a repeat of a token earlier in the
window, unevenly spread over positions, and the first token of a window is
rarely predicted right while carrying a massive norm; any of these can move the
norms. Part 7 measures each covariate's imbalance between the classes
(balance) and then asks, for every layer, one question with one test: is the
log-norm still associated with correctness once what the controls explain has
been removed from both (:mod:`lamina.stats.conditional`: residuals on a
flexible basis of the controls, :mod:`lamina.stats.adjustment`; the null by
circular shifts within each window, :mod:`lamina.stats.shifts`, so that
serially dependent tokens do not inflate it; two-sided and centred, so an
effect of either sign is found equally often).

Beside the test: the controlled effect (the difference of mean log-norms at
equal controls and its Hedges' g, with block-bootstrap intervals), the
one-step odds ratio of a correct prediction per SD of log-norm (block-robust
errors), and the out-of-fold log-loss gain and AUROC of adding the layer to the
controls. The verdict of a layer uses the test and the controlled g's interval
(an equivalence test for "negligible"): see :mod:`._controls_words`.
"""

from __future__ import annotations

import numpy as np

from lamina.stats.clusters import cluster_pvalues
from lamina.stats.conditional import partial_association
from lamina.stats.corrections import resolution_note
from lamina.stats.discrimination import FOLD_RULE, out_of_fold
from lamina.stats.effects import Z_975
from lamina.stats.regression import one_step_log_odds
from lamina.study.options import StudyOptions
from lamina.study.parts._controls_words import (
    ADJUSTMENT_RULE,
    ENTROPY_NOTE,
    SEPARATION_NOTE,
    TEST_WORDS,
    VERDICTS,
    balance_rows,
    summary_sentence,
    verdict,
)
from lamina.study.prepare import Prepared
from lamina.study.records import (
    AdjustmentSummary,
    ControlledLayer,
    Controls,
    LaminarProfile,
    RegressionSummary,
)
from lamina.study.serial import serial_structure

ODDS_METHOD = (
    "one Newton step from the controls' logistic model (correct ~ basis of the controls) "
    "per layer: the log odds ratio per SD of log-norm; standard errors from block sums of "
    "the estimating function (robust to dependence within blocks)"
)


def controls(profile: LaminarProfile, data: Prepared, options: StudyOptions) -> Controls | None:
    """Part 7 from the prepared table and Part 6's ``profile``, whose raw effects and verdicts
    it sets beside its own (None when Part 7 does not run)."""
    if not options.controls_on or data.covariates is None:
        return None
    covariates = data.covariates
    notes = [f"{covariates.missing[c]}." for c in options.controls if c not in covariates.values]
    used = [c for c in options.controls if c in covariates.values]
    serial = serial_structure(data, options)
    if serial.series != options.series:
        notes.append(
            f"--permute-within {options.series}: this token table has no {options.series} "
            "column, so the labellings run over the whole table as one series."
        )
    if "entropy" in used:
        notes.append(ENTROPY_NOTE)
    keep = data.keep
    found = partial_association(
        data.values,
        data.labels,
        {c: covariates.values[c][keep] for c in used},
        serial.codes,
        n_permutations=options.permutations,
        seed=options.seed,
        scheme=options.scheme,
    )
    basis, res, test, effects = found.basis, found.residuals, found.test, found.effects
    order = found.layout.order
    labels, values = data.labels[order], data.values[order]
    design = basis.q * np.sqrt(labels.size)
    sd = values.std(axis=0)
    odds = one_step_log_odds(
        (values - values.mean(axis=0)) / np.where(sd > 0, sd, 1.0),
        labels,
        design,
        found.blocks.ids,
    )
    if odds.separated:
        notes.append(SEPARATION_NOTE)
    oof = out_of_fold(res.rx, labels, design, serial.blocks, seed=options.seed + 2)
    note = resolution_note(
        options.correction, values.shape[1], test.n_permutations, options.alpha, exact=test.exact
    )
    notes += [note] if note else []
    layers = _layers(profile, found, odds, oof, serial, data, options)
    adjustment = AdjustmentSummary(
        controls=list(used),
        terms=basis.terms,
        knots=basis.knots,
        n_columns=basis.n_columns,
        rank=basis.rank,
        rule=ADJUSTMENT_RULE,
        test=TEST_WORDS,
        scheme=options.scheme,
        scheme_description=serial.description,
        series=serial.series,
        n_series=serial.n_series,
        exact=test.exact,
        block_length=found.blocks.length,
        n_blocks=found.blocks.n_blocks,
        n_bootstrap=effects.n_bootstrap,
    )
    regression = RegressionSummary(
        model="correct ~ z(log-norm) + " + (" + ".join(basis.terms) or "1"),
        method=ODDS_METHOD,
        cv_folds=oof.folds,
        cv_rule=FOLD_RULE,
        auroc_controls=oof.auroc_controls,
        auroc_controls_ci_low=float(oof.auroc_controls_ci[0]),
        auroc_controls_ci_high=float(oof.auroc_controls_ci[1]),
    )
    balance = balance_rows(covariates, keep, data.labels, used)
    return _record(data, options, used, notes, adjustment, balance, regression, layers, test)


def _record(data, options, used, notes, adjustment, balance, regression, layers, test):
    def having(key: str) -> list[int]:
        return [r.layer for r in layers if r.verdict == VERDICTS[key]]

    significant = [r.layer for r in layers if r.significant]
    record = Controls(
        site=options.site,
        statistic_name="partial correlation of the adjusted log-norm and label",
        alternative="two-sided",
        correction=options.correction,
        alpha=options.alpha,
        n_permutations=int(test.n_permutations),
        seed=options.seed,
        min_effect=options.min_effect,
        controls=list(used),
        controls_requested=list(options.controls),
        notes=notes,
        covariate_sources=dict(data.covariates.sources),
        n_tokens=int(data.labels.size),
        n_correct=int(data.labels.sum()),
        n_incorrect=int((~data.labels).sum()),
        adjustment=adjustment,
        balance=balance,
        regression=regression,
        layers=layers,
        n_layers=len(layers),
        n_significant=len(significant),
        significant_layers=significant,
        significant_raw_layers=[r.layer for r in layers if r.significant_raw],
        survived_layers=having("survives"),
        small_layers=having("small"),
        negligible_layers=having("negligible"),
        explained_layers=having("explained"),
        undetermined_layers=having("undetermined"),
        summary="",
    )
    record.summary = summary_sentence(record)
    return record


def conditional_pvalues(test) -> dict[str, np.ndarray]:
    """Every correction's p-values of the conditional test (cluster-mass on the studentised
    statistics, two-sided about 0)."""
    return {
        "none": test.pvalue,
        "maxstat": test.pvalue_maxstat,
        "holm": test.pvalue_holm,
        "fdr": test.pvalue_fdr,
        "cluster": cluster_pvalues(
            test.statistic / test.null_sd,
            test.null_distribution / test.null_sd,
            "two-sided",
            center=0.0,
            includes_observed=test.exact,
        ),
    }


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _layers(profile, found, odds, oof, serial, data, options):
    """One :class:`ControlledLayer` per layer (Part 6's row of the layer for the raw effect)."""
    test, effects = found.test, found.effects
    cond_p = conditional_pvalues(test)
    chosen_p = cond_p[options.correction]
    null_abs = np.abs(test.null_distribution)
    with np.errstate(over="ignore", invalid="ignore"):
        log_or = np.stack((odds.coef, odds.coef - Z_975 * odds.se, odds.coef + Z_975 * odds.se))
        odds_ratio = np.exp(log_or)
    rows = []
    for j, (layer, raw) in enumerate(zip(data.layers, profile.layers, strict=True)):
        significant = bool(chosen_p[j] <= options.alpha)
        g_lo, g_hi = effects.hedges_g_ci[j]
        negligible = bool(
            np.isfinite(g_lo) and -options.min_effect < g_lo and g_hi < options.min_effect
        )
        rows.append(
            ControlledLayer(
                layer=int(layer),
                hedges_g_raw=raw.hedges_g,
                hedges_g_raw_ci_low=raw.hedges_g_ci_low,
                hedges_g_raw_ci_high=raw.hedges_g_ci_high,
                significant_raw=raw.significant,
                statistic=float(test.statistic[j]),
                null_sd=float(test.null_sd[j]),
                null_q95=float(np.quantile(null_abs[:, j], 0.95)),
                pvalue=float(cond_p["none"][j]),
                pvalue_maxstat=float(cond_p["maxstat"][j]),
                pvalue_holm=float(cond_p["holm"][j]),
                pvalue_fdr=float(cond_p["fdr"][j]),
                pvalue_cluster=float(cond_p["cluster"][j]),
                pvalue_corrected=float(chosen_p[j]),
                significant=significant,
                difference=_finite(effects.difference[j]),
                difference_ci_low=_finite(effects.difference_ci[j, 0]),
                difference_ci_high=_finite(effects.difference_ci[j, 1]),
                hedges_g=_finite(effects.hedges_g[j]),
                hedges_g_ci_low=_finite(g_lo),
                hedges_g_ci_high=_finite(g_hi),
                negligible=negligible,
                verdict=verdict(
                    significant, raw.significant, negligible, effects.hedges_g[j], options
                ),
                odds_ratio=_finite(odds_ratio[0, j]),
                odds_ratio_ci_low=_finite(odds_ratio[1, j]),
                odds_ratio_ci_high=_finite(odds_ratio[2, j]),
                coef=_finite(odds.coef[j]),
                coef_se=_finite(odds.se[j]),
                auroc_full=float(oof.auroc_full[j]),
                auroc_full_ci_low=float(oof.auroc_full_ci[j, 0]),
                auroc_full_ci_high=float(oof.auroc_full_ci[j, 1]),
                logloss_gain=float(oof.logloss_gain[j]),
                logloss_gain_ci_low=float(oof.logloss_gain_ci[j, 0]),
                logloss_gain_ci_high=float(oof.logloss_gain_ci[j, 1]),
                effective_tokens=_finite(serial.effective_tokens[j]),
            )
        )
    return rows
