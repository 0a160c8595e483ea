"""Part 3: one layer, the log-norm histograms of correct and incorrect tokens on shared bins.

Part 3 also looks at every analysed layer's pooled log-norms for outliers that
span most of the range (a massive activation, such as the first token of a
window): there equal-width bins over ``[min, max]`` put nearly every token in
a few bins and the binned divergences collapse. Its record names those layers
and says what the binning in use does about them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lamina._format import layer_list
from lamina.stats.histograms import ROBUST_TAIL, histogram_counts, outlier_spread, shared_edges
from lamina.study.options import StudyOptions
from lamina.study.parts import notebook
from lamina.study.parts._common import class_summary
from lamina.study.records import LayerHistograms, Normalisations

#: A layer is flagged when the tokens beyond its central 99% span more than this share of
#: its log-norm range (:func:`lamina.stats.histograms.outlier_spread`).
OUTLIER_SPREAD_LIMIT = 0.5


def layer_histograms(
    x: np.ndarray,
    labels: np.ndarray,
    options: StudyOptions,
    *,
    all_values: np.ndarray | None = None,
    layers: Sequence[int] | None = None,
) -> LayerHistograms:
    """Histograms of the layer's log-norms ``x`` (kept tokens) split by ``labels``.

    ``all_values``: every analysed layer's log-norms (n, L), with their ``layers``
    (default 0..L-1), checked for outliers; None checks the one layer.
    """
    x_correct, x_incorrect = x[labels], x[~labels]
    if options.notebook:
        edges, counts_c, counts_i = notebook.histograms(x, labels, options.bins)
    else:
        edges = np.asarray(
            shared_edges(
                x_correct, x_incorrect, bins=options.bins_spec, robust=options.robust_bins
            ),
            dtype=np.float64,
        )
        counts_c = histogram_counts(x_correct, edges)
        counts_i = histogram_counts(x_incorrect, edges)
    outliers = outlier_layers(
        x[:, None] if all_values is None else all_values,
        [options.layer] if all_values is None else layers,
    )
    return LayerHistograms(
        layer=options.layer,
        site=options.site,
        n_bins=int(edges.size - 1),
        bin_rule=options.bin_rule,
        edges=edges,
        counts_correct=counts_c,
        counts_incorrect=counts_i,
        probability_correct=counts_c / counts_c.sum(),
        probability_incorrect=counts_i / counts_i.sum(),
        correct=class_summary(x_correct),
        incorrect=class_summary(x_incorrect),
        difference=float(x_correct.mean() - x_incorrect.mean()),
        normalisations={
            "correct": normalisations(counts_c, edges),
            "incorrect": normalisations(counts_i, edges),
        },
        binning="robust" if options.robust_bins else "range",
        outlier_layers=outliers,
        binning_note=binning_note(outliers, options),
    )


def outlier_layers(values: np.ndarray, layers: Sequence[int] | None = None) -> list[int]:
    """The layers (columns of ``values``, (n, L)) whose outliers span most of the range.

    A layer is listed when :func:`~lamina.stats.histograms.outlier_spread` of its
    pooled values exceeds :data:`OUTLIER_SPREAD_LIMIT`.
    """
    values = np.asarray(values, dtype=np.float64)
    names = list(range(values.shape[1])) if layers is None else [int(v) for v in layers]
    return [
        names[j]
        for j in range(values.shape[1])
        if outlier_spread(values[:, j]) > OUTLIER_SPREAD_LIMIT
    ]


def binning_note(layers: list[int], options: StudyOptions) -> str | None:
    """A sentence on the ``layers`` whose outliers span most of the range, or None."""
    if not layers:
        return None
    where = f"layer{'s' if len(layers) > 1 else ''} {layer_list(layers)}"
    found = (
        f"At {where} the {2 * ROBUST_TAIL:.0%} most extreme tokens span more than half of the "
        "log-norm range (a massive-activation outlier such as the first token of a window)"
    )
    if options.robust_bins:
        return f"{found}; robust bins keep the histogram's resolution there (--binning robust)."
    collapsed = (
        "the equal-width bins over [min, max] are collapsed there, so the binned divergences "
        "(JS, KL) understate the difference"
    )
    if options.notebook:
        return (
            f"{found}; the notebook's {collapsed} (the notebook mode keeps its bins; without "
            "--compat notebook, --binning robust keeps the histogram's resolution)."
        )
    if options.bin_rule is not None:
        return (
            f"{found}; the bin rule's {collapsed}: use a bin count (--bins) with --binning "
            "robust, or --exclude first."
        )
    return f"{found}; {collapsed}: use --binning robust or --exclude first."


def normalisations(counts: np.ndarray, edges: np.ndarray) -> Normalisations:
    """What counts, densities, density x bin width and probabilities sum to (the notebook's print)."""
    widths = np.diff(edges)
    total = counts.sum()
    density = counts / (total * widths)
    probability = counts / total
    return Normalisations(
        sum_counts=int(total),
        sum_density=float(density.sum()),
        sum_density_times_bin_width=float((density * widths).sum()),
        sum_probability=float(probability.sum()),
    )
