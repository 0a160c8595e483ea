"""Part 3's figure: the classes' log-norm histograms at one layer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.report._style import (
    CORRECT_COLOR,
    INCORRECT_COLOR,
)
from lamina.report.figures._common import (
    new_figure,
    norm_label,
    suptitle,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figure_part3(results: Mapping[str, Any]) -> Figure:
    """Log-norm histograms at one layer as probabilities on shared bins."""
    p3 = results["part3"]
    fig = new_figure("part3_layer_histograms")
    ax = fig.subplots()
    edges = np.asarray(p3["edges"])
    for key, colour, name in (
        ("correct", CORRECT_COLOR, "correct"),
        ("incorrect", INCORRECT_COLOR, "incorrect"),
    ):
        prob = np.asarray(p3[f"probability_{key}"])
        summary = p3[key]
        ax.stairs(prob, edges, fill=True, color=colour, alpha=0.25, linewidth=0)
        ax.stairs(
            prob,
            edges,
            color=colour,
            linewidth=1.6,
            label=f"{name} (n = {summary['n']:,}, mean {summary['mean']:.3f})",
        )
        ax.axvline(summary["mean"], color=colour, linestyle="--", linewidth=1.0)
    ax.set(
        xlabel=f"{norm_label(p3['site'], p3['layer'])} (natural log of the L2 norm)",
        ylabel="Probability per bin",
        title=f"Log-norms of {p3['site']} at layer {p3['layer']}: correct vs incorrect "
        f"({p3['n_bins']} shared bins)",
    )
    ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.15)
    ax.legend(loc="upper left", title="dashed: class mean", title_fontsize=8, alignment="left")
    suptitle(fig, results)
    return fig
