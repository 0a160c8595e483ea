"""Part 5's figure: the permutation null at one layer, with the observed value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina._format import format_p
from lamina.report._style import (
    NULL_COLOR,
    OKABE_ITO,
)
from lamina.report.figures._common import (
    display,
    new_figure,
    statistic_axis_label,
    suptitle,
)
from lamina.stats.catalog import is_divergence, short

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figure_part5(results: Mapping[str, Any]) -> Figure:
    """The permutation null of the statistic at one layer, with the observed value."""
    p5 = results["part5"]
    statistic = p5["statistic_name"]
    fig = new_figure("part5_significance")
    ax = fig.subplots()
    null = display(p5["null_distribution"], statistic)
    observed = float(display([p5["statistic"]], statistic)[0])
    n_hist_bins = int(np.clip(np.sqrt(null.size) * 1.5, 10, 60))
    counts, edges = np.histogram(null, bins=n_hist_bins)
    ax.stairs(
        counts,
        edges,
        fill=True,
        color=NULL_COLOR,
        label=f"null: {p5['n_permutations']:,} label permutations",
    )
    q95 = float(np.quantile(null, 0.95))
    ax.axvline(
        q95,
        color=OKABE_ITO["black"],
        linestyle="--",
        linewidth=1.0,
        label="95th percentile of the null",
    )
    ax.axvline(observed, color=OKABE_ITO["vermillion"], linewidth=2.4, label="observed")
    lo = min(float(null.min()), observed)
    hi = max(float(null.max()), observed)
    pad = 0.05 * (hi - lo if hi > lo else 1.0)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set(
        xlabel=statistic_axis_label(results),
        ylabel="Permutations (count)",
        title=f"{results['parameters']['site']} at layer {p5['layer']}: "
        f"{short(statistic)} = "
        f"{observed:.4g}{' bits' if is_divergence(statistic) else ''}, "
        f"p = {format_p(p5['pvalue'])}",
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    suptitle(fig, results)
    return fig
