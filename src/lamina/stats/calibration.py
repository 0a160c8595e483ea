"""Calibration by simulation: how often lamina's tests reject, and its intervals cover.

:func:`run_cell` draws ``n_tables`` synthetic token tables
(:func:`lamina.stats.simulation.simulate_table`: the confound shapes and the
serial dependence of real text, a planted controlled effect) and runs on each
the tests exactly as a study runs them:

- Part 6: Part 6's permutation test (JS, robust bins, the max-statistic over
  layers) with the circular-shift null within windows, and with exchangeable
  permutations for comparison; the block-bootstrap interval of the raw Hedges'
  g (only where the raw effect is the planted one: no confound on the norms);
- Part 7: :func:`lamina.stats.conditional.partial_association` with the
  default controls (its test, max-statistic over layers, and the controlled
  g's interval), and optionally the out-of-fold log-loss gain's interval.

Every rate comes with its Monte-Carlo standard error ``sqrt(r (1 - r) / k)``
over the ``k`` tables (or table-layers) it is a share of; rates over layers
pool correlated layers, so their real Monte-Carlo error is larger than shown.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lamina.stats.conditional import partial_association
from lamina.stats.corrections import maxstat_pvalues
from lamina.stats.permutation import permutation_test
from lamina.stats.resampling import bootstrap_blocks, hedges_g_intervals
from lamina.stats.shifts import shift_layout
from lamina.stats.simulation import simulate_table

ALPHA = 0.05
#: The default controls of a study (lamina.study.options.DEFAULT_CONTROLS).
CONTROLS = ("ctx_pos", "target_chars", "target_freq", "target_repeat", "input_is_first")


@dataclasses.dataclass
class Rate:
    """A share ``k / n`` with its Monte-Carlo standard error."""

    hits: int = 0
    total: int = 0

    def add(self, hits, total: int = 1) -> None:
        self.hits += int(np.sum(hits))
        self.total += int(total)

    @property
    def rate(self) -> float:
        return self.hits / self.total if self.total else math.nan

    @property
    def se(self) -> float:
        r = self.rate
        return math.sqrt(r * (1 - r) / self.total) if self.total else math.nan

    def to_dict(self) -> dict:
        return {"rate": self.rate, "se": self.se, "hits": self.hits, "n": self.total}


def _maxstat(observed: np.ndarray, null: np.ndarray, studentise: bool) -> np.ndarray:
    """Max-statistic p-values of an unsigned statistic, raw or with each column
    standardised by its null (:func:`lamina.stats.corrections.maxstat_pvalues`)."""
    if studentise:
        centre, sd = null.mean(axis=0), null.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        observed, null = (observed - centre) / sd, (null - centre) / sd
    return maxstat_pvalues(observed, null, "greater")


def run_cell(
    *,
    n_tokens: int,
    n_layers: int = 30,
    confound: str = "none",
    rho: float = 0.5,
    effect: float = 0.0,
    effect_layers=None,
    n_tables: int = 100,
    n_permutations: int = 199,
    window_sd: float = 0.0,
    part6: bool = True,
    exchangeable: bool = False,
    seed: int = 0,
) -> dict:
    """Rates of one simulated condition (module docstring); a JSON-ready dict."""
    rates = {
        name: Rate()
        for name in (
            "part6_shift_fwer",
            "part6_shift_fwer_studentised",
            "part6_exchangeable_fwer",
            "part6_exchangeable_effect_layers_found",
            "part6_effect_layers_found",
            "part6_effect_layers_found_studentised",
            "part6_g_coverage",
            "part7_fwer",
            "part7_layer_rejection",
            "part7_effect_layers_found",
            "part7_effect_layers_found_positive",
            "part7_effect_layers_found_negative",
            "part7_g_coverage",
        )
    }
    planted = np.zeros(n_layers, dtype=bool)
    if effect:
        planted[list(range(n_layers)) if effect_layers is None else list(effect_layers)] = True
    for t in range(n_tables):
        table = simulate_table(
            n_tokens,
            n_layers,
            confound=confound,
            rho=rho,
            label_rho=rho,
            effect=effect,
            effect_layers=effect_layers,
            window_sd=window_sd,
            seed=seed + t,
        )
        if part6 and (confound == "none" or planted.any()):
            _part6(table, rates, planted, n_permutations, exchangeable, seed + t, confound)
        _part7(table, rates, planted, n_permutations, seed + t)
    return {
        "n_tokens": n_tokens,
        "n_layers": n_layers,
        "confound": confound,
        "rho": rho,
        "effect": effect,
        "n_planted_layers": int(planted.sum()),
        "window_sd": window_sd,
        "n_tables": n_tables,
        "n_permutations": n_permutations,
        "alpha": ALPHA,
        "rates": {k: v.to_dict() for k, v in rates.items() if v.total},
    }


def _part6(table, rates, planted, n_permutations, exchangeable, seed, confound) -> None:
    values, labels, window = table.values, table.labels, table.window
    shift = permutation_test(
        values,
        labels,
        n_permutations=n_permutations,
        robust_bins=True,
        seed=seed,
        shift_within=window,
    )
    null_effect = not planted.any()
    for studentise, suffix in ((False, ""), (True, "_studentised")):
        p = _maxstat(shift.statistic, shift.null_distribution, studentise)
        if null_effect and confound == "none":
            rates["part6_shift_fwer" + suffix].add(p.min() <= ALPHA)
        if planted.any():
            rates["part6_effect_layers_found" + suffix].add(p[planted] <= ALPHA, planted.sum())
    if exchangeable and confound == "none":
        perm = permutation_test(
            values, labels, n_permutations=n_permutations, robust_bins=True, seed=seed
        )
        if null_effect:
            rates["part6_exchangeable_fwer"].add(perm.pvalue_maxstat.min() <= ALPHA)
        else:
            found = perm.pvalue_maxstat[planted] <= ALPHA
            rates["part6_exchangeable_effect_layers_found"].add(found, planted.sum())
    if confound == "none":
        layout = shift_layout(window)
        order = layout.order
        y = labels[order].astype(np.float64)
        x = values[order]
        products = (x - x.mean(axis=0)) * (y - y.mean())[:, None]
        ci = hedges_g_intervals(x, labels[order], bootstrap_blocks(products, layout), seed=seed)
        rates["part6_g_coverage"].add(
            (ci[:, 0] <= table.true_g) & (table.true_g <= ci[:, 1]), values.shape[1]
        )


def _part7(table, rates, planted, n_permutations, seed) -> None:
    covariates = table.covariates()
    found = partial_association(
        table.values,
        table.labels,
        {c: covariates[c] for c in CONTROLS},
        table.window,
        n_permutations=n_permutations,
        seed=seed,
    )
    p = found.test.pvalue_maxstat
    rejected = p <= ALPHA
    if not planted.any():
        rates["part7_fwer"].add(rejected.any())
        rates["part7_layer_rejection"].add(found.test.pvalue <= ALPHA, p.size)
    else:
        sign = np.sign(found.test.statistic[planted])
        true_sign = np.sign(table.true_g[planted])
        rates["part7_effect_layers_found"].add(
            rejected[planted] & (sign == true_sign), planted.sum()
        )
        key = "positive" if table.true_g[planted][0] > 0 else "negative"
        rates[f"part7_effect_layers_found_{key}"].add(
            rejected[planted] & (sign == true_sign), planted.sum()
        )
    ci = found.effects.hedges_g_ci
    g = table.true_g
    rates["part7_g_coverage"].add((ci[:, 0] <= g) & (g <= ci[:, 1]), g.size)


# ----------------------------------------------------------------------------- Part 8

#: Part 8's rates; ``*_fixed``: the shift null and the bootstrap interval before they are
#: widened for cross-fitting (:data:`lamina.stats.linear_probes.CROSSFIT_VARIANCE`).
PROBE_RATES = (
    "probe_fwer",
    "probe_layer_rejection",
    "probe_auroc_coverage",
    "norm_auroc_coverage",
    "probe_fwer_fixed",
    "probe_layer_rejection_fixed",
    "probe_auroc_coverage_fixed",
    "probe_gain_above_zero",
)


def run_probe_cell(
    *,
    n_tokens: int = 40_000,
    n_layers: int = 30,
    dim: int = 32,
    rho: float = 0.5,
    method: str = "diffmeans",
    n_tables: int = 100,
    n_permutations: int = 199,
    folds: int = 5,
    window: int = 1024,
    gain: bool = False,
    seed: int = 0,
) -> dict:
    """Part 8's rates where the labels carry nothing: a JSON-ready dict.

    Each table: labels from :func:`lamina.stats.simulation.simulate_table` (serially
    dependent, accuracy 0.45, no confound), and per layer ``dim``-dimensional vectors, AR(1)
    series within windows with lag-1 autocorrelation ``rho`` and SD ``1 / sqrt(1 + k)`` along
    axis ``k``, plus an offset of 3 along the first, independent of the labels; folds of whole windows
    (:func:`lamina.stats.linear_probes.group_folds`); held-out scores by ``method``. Part 8's test
    (held-out AUROC above 1/2, circular shifts within windows, widened for cross-fitting,
    max-statistic over layers) gives the family-wise error and the per-layer rejection rate;
    its interval (and that of the log-norm oriented out of fold) the coverage of 1/2; with
    ``gain``, the share of layers whose log-loss gain over an intercept has its interval above
    0. :data:`PROBE_RATES` names them.
    """
    from lamina.stats.linear_probes import crossfit_scores, group_folds
    from lamina.stats.simulation import ar1_within_windows

    rates = {name: Rate() for name in PROBE_RATES}
    scale = 1.0 / np.sqrt(1.0 + np.arange(dim))  # unequal variances: lda is not diffmeans
    for t in range(n_tables):
        table = simulate_table(n_tokens, 1, rho=rho, label_rho=rho, window=window, seed=seed + t)
        fold = group_folds(table.window, folds)
        rng = np.random.default_rng([seed + t, 8])
        scores = np.empty((n_tokens, n_layers))
        log_norms = np.empty((n_tokens, n_layers))
        for layer in range(n_layers):
            x = ar1_within_windows(rng, n_tokens, window, dim, rho) * scale
            x[:, 0] += 3.0
            scores[:, layer] = crossfit_scores(x, table.labels, fold, method)[0]
            log_norms[:, layer] = np.log(np.linalg.norm(x, axis=1))
        _probe_rates(rates, table, fold, scores, log_norms, n_permutations, gain, seed + t)
    return {
        "n_tokens": n_tokens,
        "n_layers": n_layers,
        "dim": dim,
        "rho": rho,
        "method": method,
        "folds": folds,
        "n_tables": n_tables,
        "n_permutations": n_permutations,
        "alpha": ALPHA,
        "rates": {k: v.to_dict() for k, v in rates.items() if v.total},
    }


def _probe_rates(rates, table, fold, scores, log_norms, n_permutations, gain, seed) -> None:
    """One table's Part 8 tests and intervals, as the study computes them (arrays in window
    order, the table's order)."""
    from lamina.stats.discrimination import out_of_fold
    from lamina.stats.linear_probes import (
        CROSSFIT_VARIANCE,
        held_out_auroc,
        oriented_by_fold,
        widened_permutation,
    )

    labels, codes = table.labels, table.window
    n_layers = scores.shape[1]
    fixed = permutation_test(
        scores,
        labels,
        statistic="auroc",
        alternative="greater",
        n_permutations=n_permutations,
        seed=seed,
        shift_within=codes,
    )
    for suffix, perm in (("", widened_permutation(fixed)), ("_fixed", fixed)):
        rates["probe_fwer" + suffix].add(perm.pvalue_maxstat.min() <= ALPHA)
        rates["probe_layer_rejection" + suffix].add(perm.pvalue <= ALPHA, n_layers)
    y = labels.astype(np.float64)
    norms = oriented_by_fold(log_norms, labels, fold)[0]
    products = np.hstack((scores - scores.mean(axis=0), norms - norms.mean(axis=0)))
    blocks = bootstrap_blocks(products * (y - y.mean())[:, None], shift_layout(codes))
    for key, values in (("probe", scores), ("norm", norms)):
        auc, ci = held_out_auroc(values, labels, blocks, seed=seed)
        rates[f"{key}_auroc_coverage"].add(_covers(ci, 0.5), n_layers)
        if key == "probe":
            narrow = auc[:, None] + (ci - auc[:, None]) / np.sqrt(CROSSFIT_VARIANCE)
            rates["probe_auroc_coverage_fixed"].add(_covers(narrow, 0.5), n_layers)
    if gain:
        ones = np.ones((labels.size, 1))
        found = out_of_fold(scores, labels, ones, blocks, seed=seed, folds=fold)
        rates["probe_gain_above_zero"].add(found.logloss_gain_ci[:, 0] > 0, n_layers)


def _covers(interval: np.ndarray, value: float) -> np.ndarray:
    return (interval[:, 0] <= value) & (interval[:, 1] >= value)
