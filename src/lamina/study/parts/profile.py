"""Part 6: the laminar profile, every layer tested at once with shared labellings.

Per layer: the classes' mean log-norms and their difference, the statistic with
its permutation null, raw and corrected p-values (max-statistic, Holm,
Benjamini-Hochberg; the option ``correction`` marks significance) and effect
sizes (AUROC, Hedges' g with a 95% interval). The cluster-mass p-value over
adjacent layers (:mod:`lamina.stats.clusters`) is reported too.
"""

from __future__ import annotations

import numpy as np

from lamina._format import layers_phrase
from lamina.stats.catalog import SIGNED_CENTERS, is_divergence, unit
from lamina.stats.clusters import cluster_pvalues
from lamina.stats.corrections import resolution_note
from lamina.stats.effects import auroc, hedges_g, hedges_g_ci
from lamina.stats.permutation import PermutationResult, permutation_test
from lamina.stats.resampling import hedges_g_intervals
from lamina.study.options import StudyOptions
from lamina.study.parts._common import bits
from lamina.study.prepare import Prepared
from lamina.study.records import LaminarProfile, LayerRow
from lamina.study.serial import serial_structure


def all_layers_test(prepared: Prepared, options: StudyOptions) -> PermutationResult:
    """The permutation test of every layer at once, the same labellings for all."""
    return permutation_test(
        prepared.values,
        prepared.labels,
        statistic=options.statistic,
        bins=options.bins_spec,
        robust_bins=options.robust_bins,
        n_permutations=options.permutations,
        alternative=options.resolved_alternative,
        seed=options.seed,
        compat="notebook" if options.notebook else None,
        **({} if options.notebook else serial_structure(prepared, options).test_arguments()),
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
    serial = serial_structure(prepared, options)
    g_ci = _g_intervals(values, labels, serial, options)
    rows = []
    for j, layer in enumerate(prepared.layers):
        x_correct, x_incorrect = values[labels, j], values[~labels, j]
        mean_c, mean_i = float(x_correct.mean()), float(x_incorrect.mean())
        layer_null = null[:, j]
        g = float(hedges_g(x_correct, x_incorrect))
        g_low, g_high = (float(v) for v in g_ci[j])
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
                norm_autocorrelation=[_round(v) for v in serial.values_acf[:, j]],
                effective_tokens=float(serial.effective_tokens[j]),
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
        scheme=options.scheme if not options.notebook else "notebook",
        scheme_description=serial.description if not options.notebook else "",
        series=serial.series,
        n_series=serial.n_series,
        exact=bool(perm.exact),
        label_autocorrelation=[_round(v) for v in serial.label_acf],
        block_length=serial.blocks.length,
        n_blocks=serial.blocks.n_blocks,
        notes=_notes(rows, perm, options),
    )


def _g_intervals(values, labels, serial, options: StudyOptions) -> np.ndarray:
    """Hedges' g intervals (L, 2): by blocks of tokens under the shift scheme; Hedges &
    Olkin's normal interval where the tokens are taken as independent (exchangeable, notebook)."""
    if options.scheme == "shift" and not options.notebook:
        order = serial.layout.order
        return hedges_g_intervals(
            values[order], labels[order], serial.blocks, seed=options.seed + 1
        )
    out = np.empty((values.shape[1], 2))
    n1, n0 = int(labels.sum()), int((~labels).sum())
    for j in range(values.shape[1]):
        g = float(hedges_g(values[labels, j], values[~labels, j]))
        out[j] = hedges_g_ci(g, n1, n0)
    return out


def _round(value: float) -> float | None:
    return round(float(value), 4) if np.isfinite(value) else None


def _notes(rows, perm: PermutationResult, options: StudyOptions) -> list[str]:
    """What the reader of the profile must know: the resolution of the correction, clusters."""
    notes = []
    note = resolution_note(
        options.resolved_correction,
        len(rows),
        int(perm.n_permutations),
        options.alpha,
        exact=bool(perm.exact),
    )
    if note:
        notes.append(note)
    if options.resolved_correction == "cluster":
        notes.append(
            "The cluster-mass correction supports clusters of adjacent layers, not single "
            "layers: a layer marked significant lies in a significant cluster (here: "
            f"{layers_phrase([r.layer for r in rows if r.significant])})."
        )
    return notes
