"""lamina.stats: pure numpy/scipy statistics on arrays (no models).

Histograms (:mod:`~lamina.stats.histograms`): ``bins`` is always a number of
BINS (edges = bins + 1) or a rule; two groups share edges from their pooled
data. Divergences (:mod:`~lamina.stats.divergence`) are in nats, or bits with
``base=2``; ``kl_divergence(p, q)`` is KL(p || q). Effect sizes
(:mod:`~lamina.stats.effects`) measure the first group relative to the second.
The permutation engine (:mod:`~lamina.stats.permutation`) tests every column
(layer) at once with labellings shared by all columns; p-value conventions and
corrections live in :mod:`~lamina.stats.corrections`. The ``seed``
compatibility mode (:mod:`~lamina.stats.seed`) reproduces the reference
notebook's numbers, flaws included, for regression only.

Labels: True = correct = the first group P; Q = the incorrect tokens.
"""

from lamina.stats.corrections import (
    fdr_bh,
    holm,
    maxstat_pvalues,
    permutation_pvalues,
)
from lamina.stats.divergence import (
    js_divergence,
    kl_divergence,
    knn_kl_divergence,
    ks_statistic,
    wasserstein,
)
from lamina.stats.effects import auroc, bootstrap_ci, hedges_g, mean_difference
from lamina.stats.histograms import (
    BIN_RULES,
    bin_edges,
    bin_indices,
    histogram_counts,
    knuth_bin_count,
    shared_edges,
)
from lamina.stats.permutation import (
    DIVERGENCES,
    SIGNED_CENTERS,
    STATISTICS,
    PermutationResult,
    permutation_test,
)
from lamina.stats.seed import seed_kl_div, seed_pvalue, seed_symmetric_kl

__all__ = [
    "BIN_RULES",
    "DIVERGENCES",
    "SIGNED_CENTERS",
    "STATISTICS",
    "PermutationResult",
    "auroc",
    "bin_edges",
    "bin_indices",
    "bootstrap_ci",
    "fdr_bh",
    "hedges_g",
    "histogram_counts",
    "holm",
    "js_divergence",
    "kl_divergence",
    "knn_kl_divergence",
    "knuth_bin_count",
    "ks_statistic",
    "maxstat_pvalues",
    "mean_difference",
    "permutation_pvalues",
    "permutation_test",
    "seed_kl_div",
    "seed_pvalue",
    "seed_symmetric_kl",
    "shared_edges",
    "wasserstein",
]
