"""Part 7: does the difference survive the confounds?

Correct and incorrect tokens differ in more than correctness: correct targets
are shorter, more frequent, more often a repeat of a token earlier in the
window, and unevenly spread over positions in the window; any of these can move
the norms. Part 7 measures each covariate's imbalance between the classes
(balance), tests every layer again with labels permuted only within strata of
the controls (Part 6's statistic and corrections, on the log-norms adjusted for
the strata and the controls), fits the logistic
regression ``correct ~ z(log-norm) + controls`` per layer (the norm's odds
ratio per SD, its permutation score test, and what it adds to the controls'
cross-validated AUROC), and labels each layer by its controlled effect size
(Hedges' g within strata), so that a layer can be significant but negligible.

A layer is *significant after the controls* when both tests reject at the
chosen correction: the conditional permutation test of Part 6's statistic
(labels permuted within strata, on adjusted log-norms) and the permutation
score test of the regression. Rejecting only when both reject is an intersection-union test
(Berger 1982): its type I error is at most that of either test, so the verdict
holds if either the strata capture the controls (coarse quantile bins leave
some confounding inside a stratum) or the linear-logistic adjustment does.
"""

from __future__ import annotations

import numpy as np

from lamina.stats.catalog import SIGNED_CENTERS, unit
from lamina.stats.clusters import cluster_pvalues
from lamina.stats.discrimination import added_auroc
from lamina.stats.effects import Z_975
from lamina.stats.permutation import PermutationResult, permutation_test
from lamina.stats.regression import ScoreStatistic, logistic_fit, with_intercept
from lamina.stats.strata import adjust_within_strata, make_strata, stratified_hedges_g
from lamina.study.options import StudyOptions
from lamina.study.parts._controls_words import (
    VERDICTS,
    balance_rows,
    block_codes,
    regression_terms,
    summary_sentence,
    verdict,
)
from lamina.study.prepare import Prepared
from lamina.study.records import (
    ControlledLayer,
    Controls,
    RegressionSummary,
    StrataSummary,
)

PERMUTATION_SCHEME = (
    "score statistic of the null model (correct ~ controls) fitted once, its null over "
    "labellings permuted within the strata of the controls (the conditional test's "
    "labellings); two-sided"
)
STRATA_RULE = (
    "quantile bins per control (binary controls: their 2 values), crossed (and with the "
    "blocks of --permute-within); walking the cells in order, consecutive cells are pooled "
    "until the pool has at least min_tokens tokens of both classes; a last pool that falls "
    "short joins the previous one; pools never cross a block"
)


def controls(perm: PermutationResult, data: Prepared, options: StudyOptions) -> Controls | None:
    """Part 7 from the prepared table and Part 6's test ``perm`` (None when it does not run)."""
    if not options.controls_on or data.covariates is None:
        return None
    covariates = data.covariates
    notes = [f"{covariates.missing[c]}." for c in options.controls if c not in covariates.values]
    used = [c for c in options.controls if c in covariates.values]
    keep, labels, values = data.keep, data.labels, data.values
    chosen = {c: covariates.values[c][keep] for c in used}
    blocks, block_note = block_codes(data, options)
    if block_note:
        notes.append(block_note)
    strata = make_strata(chosen, labels, n_bins=options.strata_bins, blocks=blocks)
    terms, control_matrix = _control_matrix(chosen, labels.size)
    norms = _standardise(values)
    score = ScoreStatistic(norms, labels, control_matrix)
    # the log-norms with what the strata and the controls explain removed
    adjusted = adjust_within_strata(values, strata.codes, control_matrix)
    # one set of within-strata labellings for both tests
    conditional = permutation_test(
        adjusted,
        labels,
        statistic=options.statistic,
        bins=options.bins_spec,
        n_permutations=options.permutations,
        alternative=options.resolved_alternative,
        seed=options.seed,
        strata=strata.codes,
        companion=score.kernel,
    )
    score_result = score.result(
        conditional.companion_statistic,
        conditional.companion_null,
        options.seed,
        includes_observed=conditional.exact,
    )
    regression, rows_regression = _regression(
        norms, labels, terms, control_matrix, score, score_result, options
    )
    layers = _layers(perm, conditional, values, labels, strata, rows_regression, data, options)
    balance = balance_rows(covariates, keep, labels, strata.codes, used)
    return _record(perm, data, options, used, notes, strata, balance, regression, layers)


def _record(perm, data, options, used, notes, strata, balance, regression, layers) -> Controls:
    significant = [r.layer for r in layers if r.significant]
    record = Controls(
        site=options.site,
        statistic_name=options.statistic,
        statistic_unit=unit(options.statistic),
        alternative=options.resolved_alternative,
        correction=options.correction,
        alpha=options.alpha,
        n_permutations=int(options.permutations),
        seed=options.seed,
        min_effect=options.min_effect,
        controls=list(used),
        controls_requested=list(options.controls),
        notes=notes,
        covariate_sources=dict(data.covariates.sources),
        n_tokens=int(data.labels.size),
        n_correct=int(data.labels.sum()),
        n_incorrect=int((~data.labels).sum()),
        strata=StrataSummary(
            controls=list(used),
            bins_per_control=options.strata_bins,
            bins_used=dict(strata.bins),
            permute_within=options.permute_within,
            n_blocks=strata.n_blocks,
            n_cells=strata.n_cells,
            n_sparse_cells=strata.n_sparse_cells,
            n_strata=strata.n_strata,
            n_informative=strata.n_informative,
            min_tokens=strata.min_tokens,
            rule=STRATA_RULE,
        ),
        balance=balance,
        regression=regression,
        layers=layers,
        n_layers=len(layers),
        n_significant=len(significant),
        significant_layers=significant,
        significant_raw_layers=[r.layer for r in layers if r.significant_raw],
        survived_layers=[r.layer for r in layers if r.significant and not r.negligible],
        negligible_layers=[r.layer for r in layers if r.significant and r.negligible],
        explained_layers=[r.layer for r in layers if r.verdict == VERDICTS["explained"]],
        disagree_layers=[r.layer for r in layers if r.verdict == VERDICTS["disagree"]],
        summary="",
    )
    record.summary = summary_sentence(record)
    return record


def corrected_pvalues(perm: PermutationResult) -> dict[str, np.ndarray]:
    """Every correction's p-values of an all-layer test (cluster-mass included)."""
    return {
        "none": np.ravel(perm.pvalue),
        "maxstat": np.ravel(perm.pvalue_maxstat),
        "holm": np.ravel(perm.pvalue_holm),
        "fdr": np.ravel(perm.pvalue_fdr),
        "cluster": cluster_pvalues(
            perm.statistic,
            perm.null_distribution,
            perm.alternative,
            center=SIGNED_CENTERS.get(perm.statistic_name),
            includes_observed=perm.exact,
        ),
    }


def score_corrected(score) -> dict[str, np.ndarray]:
    """Every correction's p-values of the regression's permutation score test."""
    return {
        "none": score.pvalue,
        "maxstat": score.pvalue_maxstat,
        "holm": score.pvalue_holm,
        "fdr": score.pvalue_fdr,
        "cluster": cluster_pvalues(
            score.statistic, score.null_distribution, "two-sided", center=0.0
        ),
    }


def _standardise(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _control_matrix(chosen, n: int) -> tuple[list[str], np.ndarray]:
    """The regression's control terms and their standardised columns (n, q)."""
    terms, columns = regression_terms(chosen)
    if not columns:
        return terms, np.zeros((n, 0))
    return terms, _standardise(np.column_stack(columns))


def _regression(norms, labels, terms, control_matrix, score, score_result, options):
    """The logistic regression view: per-layer fits, the score test, the AUROC gain."""
    base = with_intercept(control_matrix)
    n_layers = norms.shape[1]
    designs = np.concatenate(
        (np.broadcast_to(base, (n_layers, *base.shape)), norms.T[:, :, None]), axis=2
    )
    fits = logistic_fit(designs, labels, start=np.r_[score.null_fit.coef, 0.0])
    gain = added_auroc(norms, labels, control_matrix, seed=options.seed)
    summary = RegressionSummary(
        model="correct ~ z(log-norm) + " + (" + ".join(terms) if terms else "1"),
        terms=terms,
        permutation_scheme=PERMUTATION_SCHEME,
        n_permutations=score_result.n_permutations,
        seed=options.seed,
        cv_folds=gain.folds,
        n_bootstrap=gain.n_bootstrap,
        auroc_controls=gain.controls,
        auroc_controls_ci_low=float(gain.controls_ci[0]),
        auroc_controls_ci_high=float(gain.controls_ci[1]),
    )
    return summary, (fits, score_result, gain)


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _layers(perm, conditional, values, labels, strata, regression, data, options):
    """One :class:`ControlledLayer` per layer."""
    fits, score, gain = regression
    raw_p = corrected_pvalues(perm)[options.correction]
    cond_p = corrected_pvalues(conditional)
    chosen_p = cond_p[options.correction]
    score_p = score_corrected(score)[options.correction]
    null = np.asarray(conditional.null_distribution)
    g_raw, g_raw_lo, g_raw_hi = stratified_hedges_g(values, labels, np.zeros(labels.size, int))
    g, g_lo, g_hi = stratified_hedges_g(values, labels, strata.codes)
    coef, se = fits.coef[:, -1], fits.se[:, -1]
    with np.errstate(over="ignore"):  # a separated fit: infinite odds ratios become null
        odds = np.exp(np.stack((coef, coef - Z_975 * se, coef + Z_975 * se)))
    rows = []
    for j, layer in enumerate(data.layers):
        significant_conditional = bool(chosen_p[j] <= options.alpha)
        significant_regression = bool(score_p[j] <= options.alpha)
        # intersection-union: both must reject (see the module docstring)
        significant = significant_conditional and significant_regression
        significant_raw = bool(raw_p[j] <= options.alpha)
        negligible = bool(not np.isfinite(g[j]) or abs(g[j]) < options.min_effect)
        rows.append(
            ControlledLayer(
                layer=int(layer),
                hedges_g_raw=float(g_raw[j]),
                hedges_g_raw_ci_low=float(g_raw_lo[j]),
                hedges_g_raw_ci_high=float(g_raw_hi[j]),
                significant_raw=significant_raw,
                statistic=float(conditional.statistic[j]),
                null_mean=float(null[:, j].mean()),
                null_q95=float(np.quantile(null[:, j], 0.95)),
                pvalue=float(cond_p["none"][j]),
                pvalue_maxstat=float(cond_p["maxstat"][j]),
                pvalue_holm=float(cond_p["holm"][j]),
                pvalue_fdr=float(cond_p["fdr"][j]),
                pvalue_cluster=float(cond_p["cluster"][j]),
                pvalue_corrected=float(chosen_p[j]),
                significant_conditional=significant_conditional,
                significant=significant,
                hedges_g=_finite(g[j]),
                hedges_g_ci_low=_finite(g_lo[j]),
                hedges_g_ci_high=_finite(g_hi[j]),
                negligible=negligible,
                verdict=verdict(
                    significant_conditional, significant_regression, significant_raw, negligible
                ),
                odds_ratio=_finite(odds[0, j]),
                odds_ratio_ci_low=_finite(odds[1, j]),
                odds_ratio_ci_high=_finite(odds[2, j]),
                coef=_finite(coef[j]),
                coef_se=_finite(se[j]),
                regression_converged=bool(fits.converged[j]),
                score=float(score.statistic[j]),
                pvalue_score_asymptotic=float(score.pvalue_asymptotic[j]),
                pvalue_regression=float(score.pvalue[j]),
                pvalue_regression_maxstat=float(score.pvalue_maxstat[j]),
                pvalue_regression_holm=float(score.pvalue_holm[j]),
                pvalue_regression_fdr=float(score.pvalue_fdr[j]),
                pvalue_regression_cluster=float(score_corrected(score)["cluster"][j]),
                pvalue_regression_corrected=float(score_p[j]),
                significant_regression=significant_regression,
                auroc_full=float(gain.full[j]),
                auroc_full_ci_low=float(gain.full_ci[j, 0]),
                auroc_full_ci_high=float(gain.full_ci[j, 1]),
                auroc_gain=float(gain.gain[j]),
                auroc_gain_ci_low=float(gain.gain_ci[j, 0]),
                auroc_gain_ci_high=float(gain.gain_ci[j, 1]),
            )
        )
    return rows
