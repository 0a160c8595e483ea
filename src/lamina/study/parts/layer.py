"""Part 3: one layer, the log-norm histograms of correct and incorrect tokens on shared bins."""

from __future__ import annotations

import numpy as np

from lamina.stats.histograms import histogram_counts, shared_edges
from lamina.study.options import StudyOptions
from lamina.study.parts import notebook
from lamina.study.parts._common import class_summary
from lamina.study.records import LayerHistograms, Normalisations


def layer_histograms(x: np.ndarray, labels: np.ndarray, options: StudyOptions) -> LayerHistograms:
    """Histograms of the layer's log-norms ``x`` (kept tokens) split by ``labels``."""
    x_correct, x_incorrect = x[labels], x[~labels]
    if options.notebook:
        edges, counts_c, counts_i = notebook.histograms(x, labels, options.bins)
    else:
        edges = np.asarray(
            shared_edges(x_correct, x_incorrect, bins=options.bins_spec), dtype=np.float64
        )
        counts_c = histogram_counts(x_correct, edges)
        counts_i = histogram_counts(x_incorrect, edges)
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
    )


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
