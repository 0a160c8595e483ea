"""Part 6: the laminar profile, every layer tested at once with shared labellings.

Per layer: the classes' mean log-norms and their difference, the statistic with
its permutation null, raw and corrected p-values (max-statistic, Holm,
Benjamini-Hochberg; the option ``correction`` marks significance) and effect
sizes (AUROC, Hedges' g with a 95% interval). The cluster-mass p-value over
adjacent layers (:mod:`lamina.stats.clusters`) is reported too.
"""

from __future__ import annotations

import numpy as np

from lamina.stats.catalog import SIGNED_CENTERS, is_divergence, unit
from lamina.stats.clusters import cluster_pvalues
from lamina.stats.effects import auroc, hedges_g, hedges_g_ci
from lamina.stats.permutation import PermutationResult, permutation_test
from lamina.study.options import StudyOptions
from lamina.study.parts._common import bits
from lamina.study.prepare import Prepared
from lamina.study.records import LaminarProfile, LayerRow


def all_layers_test(prepared: Prepared, options: StudyOptions) -> PermutationResult:
    """The permutation test of every layer at once, the same labellings for all."""
    return permutation_test(
        prepared.values,
        prepared.labels,
        statistic=options.statistic,
        bins=options.bins_spec,
        n_permutations=options.permutations,
        alternative=options.resolved_alternative,
        seed=options.seed,
        compat="notebook" if options.notebook else None,
    )


def layer_cluster_pvalues(
    perm: PermutationResult, options: StudyOptions, segments=None
) -> np.ndarray:
    """Cluster-mass p-values over adjacent layers (NaN in the notebook mode: no shared null).

    ``segments``: the runs of adjacent columns (see :func:`lamina.stats.cluster_pvalues`);
    None when the columns are one site's layers in order.
    """
    if options.notebook:
        return np.full(np.ravel(perm.statistic).size, np.nan)
    return cluster_pvalues(
        perm.statistic,
        perm.null_distribution,
        perm.alternative,
        center=SIGNED_CENTERS.get(perm.statistic_name),
        includes_observed=perm.exact,
        segments=segments,
    )


def laminar_profile(
    perm: PermutationResult, prepared: Prepared, options: StudyOptions, segments=None
) -> LaminarProfile:
    """Part 6 from the all-layer test ``perm`` (``segments``: see :func:`layer_cluster_pvalues`)."""
    correction = options.resolved_correction
    pvalues = {
        "none": np.ravel(perm.pvalue),
        "maxstat": np.ravel(perm.pvalue_maxstat),
        "holm": np.ravel(perm.pvalue_holm),
        "fdr": np.ravel(perm.pvalue_fdr),
        "cluster": layer_cluster_pvalues(perm, options, segments),
    }
    statistic = np.ravel(perm.statistic).astype(np.float64)
    null = np.asarray(perm.null_distribution, dtype=np.float64)
    divergence = is_divergence(options.effective_statistic)
    values, labels = prepared.values, prepared.labels
    rows = []
    for j, layer in enumerate(prepared.layers):
        x_correct, x_incorrect = values[labels, j], values[~labels, j]
        mean_c, mean_i = float(x_correct.mean()), float(x_incorrect.mean())
        layer_null = null[:, j]
        g = float(hedges_g(x_correct, x_incorrect))
        g_low, g_high = hedges_g_ci(g, x_correct.size, x_incorrect.size)
        chosen = float(pvalues[correction][j])
        rows.append(
            LayerRow(
                layer=int(layer),
                n_correct=int(x_correct.size),
                n_incorrect=int(x_incorrect.size),
                n_zero_norm=int(prepared.zero[:, j].sum()),
                mean_log_norm_correct=mean_c,
                mean_log_norm_incorrect=mean_i,
                difference=mean_c - mean_i,
                statistic=float(statistic[j]),
                statistic_bits=bits(float(statistic[j])) if divergence else None,
                null_mean=float(layer_null.mean()),
                null_min=float(layer_null.min()),
                null_max=float(layer_null.max()),
                null_q95=float(np.quantile(layer_null, 0.95)),
                pvalue=float(pvalues["none"][j]),
                pvalue_maxstat=float(pvalues["maxstat"][j]),
                pvalue_holm=float(pvalues["holm"][j]),
                pvalue_fdr=float(pvalues["fdr"][j]),
                pvalue_corrected=chosen,
                significant=bool(chosen <= options.alpha),
                auroc=float(auroc(x_correct, x_incorrect)),
                hedges_g=g,
                hedges_g_ci_low=g_low,
                hedges_g_ci_high=g_high,
                pvalue_cluster=float(pvalues["cluster"][j]),
            )
        )
    return LaminarProfile(
        site=options.site,
        statistic_name=options.effective_statistic,
        statistic_unit=unit(options.effective_statistic),
        alternative=options.resolved_alternative,
        correction=correction,
        alpha=options.alpha,
        n_permutations=int(perm.n_permutations),
        layers=rows,
        backend=perm.backend,
        backend_reason=perm.backend_reason,
    )
