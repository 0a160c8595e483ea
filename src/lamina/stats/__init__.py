"""lamina.stats: pure numpy/scipy statistics on arrays (no models).

What each statistic is (kind, unit, labels, null centre) is in
:mod:`~lamina.stats.catalog`. Histograms (:mod:`~lamina.stats.histograms`):
``bins`` is always a number of BINS (edges = bins + 1) or a rule; two groups
share edges from their pooled data. Divergences (:mod:`~lamina.stats.two_sample`)
are in nats, or bits with ``base=2``; ``kl_divergence(p, q)`` is KL(p || q).
Effect sizes (:mod:`~lamina.stats.effects`) measure the first group relative to
the second. The permutation engine (:mod:`~lamina.stats.permutation`) tests
every column (layer) at once with labellings shared by all columns; p-value
conventions and corrections live in :mod:`~lamina.stats.corrections`. Serial
dependence: circular-shift labellings (:mod:`~lamina.stats.shifts`;
``permutation_test(..., shift_within=...)``), autocorrelation and block length
(:mod:`~lamina.stats.dependence`), the block bootstrap
(:mod:`~lamina.stats.resampling`). Tests conditional on control covariates: a
flexible basis (:mod:`~lamina.stats.adjustment`) and the generalised covariance
measure with a shift null (:mod:`~lamina.stats.conditional`); the odds ratio
(:mod:`~lamina.stats.regression`); out-of-fold AUROC and log-loss gain
(:mod:`~lamina.stats.discrimination`); cluster-mass correction over adjacent
layers (:mod:`~lamina.stats.clusters`); synthetic tables for calibration
(:mod:`~lamina.stats.simulation`).

Labels: True = correct = the first group P; Q = the incorrect tokens.

Names are imported lazily: ``from lamina.stats import STATISTICS`` loads the
catalogue only, not numpy or scipy.
"""

from lamina._lazy import lazy_exports

_EXPORTS = {
    "ALTERNATIVES": ".catalog",
    "BINLESS_ESTIMATORS": ".catalog",
    "CATALOG": ".catalog",
    "CORRECTIONS": ".catalog",
    "DIVERGENCES": ".catalog",
    "HISTOGRAM_STATISTICS": ".catalog",
    "SIGNED_CENTERS": ".catalog",
    "STATISTICS": ".catalog",
    "is_divergence": ".catalog",
    "is_signed": ".catalog",
    "fdr_bh": ".corrections",
    "holm": ".corrections",
    "maxstat_pvalues": ".corrections",
    "permutation_pvalues": ".corrections",
    "count_at_least_as_extreme": ".corrections",
    "js_divergence": ".two_sample",
    "kl_divergence": ".two_sample",
    "knn_kl_divergence": ".two_sample",
    "ks_statistic": ".two_sample",
    "wasserstein": ".two_sample",
    "auroc": ".effects",
    "bootstrap_ci": ".effects",
    "hedges_g": ".effects",
    "hedges_g_se": ".effects",
    "mean_difference": ".effects",
    "BIN_RULES": ".catalog",
    "bin_edges": ".histograms",
    "bin_indices": ".histograms",
    "histogram_counts": ".histograms",
    "knuth_bin_count": ".histograms",
    "outlier_spread": ".histograms",
    "shared_edges": ".histograms",
    "PermutationResult": ".permutation",
    "permutation_test": ".permutation",
    "cluster_pvalues": ".clusters",
    "out_of_fold": ".discrimination",
    "logistic_fit": ".regression",
    "one_step_log_odds": ".regression",
    "standardised_mean_difference": ".effects",
    "control_basis": ".adjustment",
    "residualise": ".conditional",
    "conditional_test": ".conditional",
    "controlled_effects": ".conditional",
    "shift_layout": ".shifts",
    "autocorrelation": ".dependence",
    "effective_tokens": ".dependence",
    "block_length": ".dependence",
    "make_blocks": ".resampling",
    "simulate_table": ".simulation",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
