"""lamina.stats: pure numpy/scipy statistics on arrays (no models).

What each statistic is (kind, unit, labels, null centre) is in
:mod:`~lamina.stats.catalog`. Histograms (:mod:`~lamina.stats.histograms`):
``bins`` is always a number of BINS (edges = bins + 1) or a rule; two groups
share edges from their pooled data. Divergences (:mod:`~lamina.stats.divergence`)
are in nats, or bits with ``base=2``; ``kl_divergence(p, q)`` is KL(p || q).
Effect sizes (:mod:`~lamina.stats.effects`) measure the first group relative to
the second. The permutation engine (:mod:`~lamina.stats.permutation`) tests
every column (layer) at once with labellings shared by all columns; p-value
conventions and corrections live in :mod:`~lamina.stats.corrections`. Tests
conditional on control covariates: strata (:mod:`~lamina.stats.strata`;
``permutation_test(..., strata=...)``), logistic regression and its
permutation score test (:mod:`~lamina.stats.regression`), cross-validated
AUROC gain (:mod:`~lamina.stats.discrimination`), cluster-mass correction over
adjacent layers (:mod:`~lamina.stats.clusters`).

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
    "js_divergence": ".divergence",
    "kl_divergence": ".divergence",
    "knn_kl_divergence": ".divergence",
    "ks_statistic": ".divergence",
    "wasserstein": ".divergence",
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
    "shared_edges": ".histograms",
    "PermutationResult": ".permutation",
    "permutation_test": ".permutation",
    "cluster_pvalues": ".clusters",
    "added_auroc": ".discrimination",
    "logistic_fit": ".regression",
    "score_test": ".regression",
    "ScoreStatistic": ".regression",
    "adjust_within_strata": ".strata",
    "make_strata": ".strata",
    "quantile_bins": ".strata",
    "standardised_mean_difference": ".strata",
    "stratified_hedges_g": ".strata",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
