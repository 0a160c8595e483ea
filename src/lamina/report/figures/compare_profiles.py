"""The comparison's figure: every run's (and site's) profile on one depth axis.

A: Hedges' g per layer with its 95% interval (unit-free, so runs of different
sizes compare); B: the statistic minus the mean of its permutation null (the
plug-in bias of a divergence grows as tokens shrink, so the raw statistic
would not compare); C, when a run has Part 8: the held-out AUROC of its probe per
layer. Filled markers: significant as the run marked it. Each series' largest
|g| is labelled with its absolute layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.report._style import OKABE_ITO, SITE_SERIES
from lamina.report.figures._common import (
    display,
    new_figure,
    row_values,
    significance_handles,
    significance_points,
)
from lamina.stats.catalog import axis_label, label, short

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def series_style(k: int) -> tuple[str, str]:
    """(colour, matplotlib marker) of the ``k``-th series."""
    return SITE_SERIES[k % len(SITE_SERIES)]


def _excess_label(statistic: str) -> str:
    """Panel B's y-label: the statistic's short name minus the null mean, its units below
    (the full name of a divergence runs past the panel)."""
    units = axis_label(statistic).removeprefix(label(statistic)).strip()
    return f"{short(statistic)} − null mean" + (f"\n{units}" if units else "")


def figure_compare(comparison: Mapping[str, Any]) -> Figure:
    """Hedges' g and the statistic's excess over its null, per run and site, on one axis."""
    from matplotlib.lines import Line2D

    statistic = comparison["settings"]["statistic_computed"]
    fig = new_figure("compare_profiles")
    probes = any(
        p.get("probe_auroc") is not None for s in comparison["series"] for p in s["points"]
    )
    axes = fig.subplots(3 if probes else 2, 1, sharex=True)
    ax_g, ax_s = axes[0], axes[1]
    handles = []
    for k, series in enumerate(comparison["series"]):
        colour, marker = series_style(k)
        points = series["points"]
        x = row_values(points, "x")
        g = row_values(points, "hedges_g")
        excess = display(
            row_values(points, "statistic") - row_values(points, "null_mean"), statistic
        )
        sig = np.array([p["significant"] for p in points], dtype=bool)
        ax_g.vlines(
            x,
            row_values(points, "hedges_g_ci_low"),
            row_values(points, "hedges_g_ci_high"),
            color=colour,
            linewidth=0.7,
            alpha=0.5,
        )
        for ax, y in ((ax_g, g), (ax_s, excess)):
            ax.plot(x, y, color=colour, linewidth=1.0, alpha=0.75)
            significance_points(ax, x, y, sig, colour, marker, size=5)
        if np.isfinite(g).any():
            j = int(np.nanargmax(np.abs(g)))
            ax_g.annotate(
                f"L{points[j]['layer']}",
                (x[j], g[j]),
                textcoords="offset points",
                xytext=(4, 5),
                fontsize=7.5,
                color=colour,
            )
        handles.append(Line2D([], [], color=colour, marker=marker, label=series["label"]))
    for ax in (ax_g, ax_s):
        ax.axhline(0.0, color=OKABE_ITO["black"], linestyle="--", linewidth=0.6)
    ax_g.set(
        ylabel="Hedges' g (correct − incorrect)",
        title="A  Effect size per layer (bars: 95% CI; labels: layer of the largest |g|)",
    )
    ax_s.set(
        ylabel=_excess_label(statistic),
        title=f"B  {label(statistic)} minus its permutation null's mean",
    )
    if probes:
        _panel_probes(axes[2], comparison)
    axes[-1].set_xlabel(comparison["axis_label"])
    handles += significance_handles()
    fig.legend(handles=handles, loc="outside lower center", ncol=min(3, len(handles)), fontsize=7.5)
    return fig


def _panel_probes(ax, comparison: Mapping[str, Any]) -> None:
    """C: Part 8's held-out probe AUROC per layer (the runs that have it), the log-norm's dotted."""
    for k, series in enumerate(comparison["series"]):
        points = [p for p in series["points"] if p.get("probe_auroc") is not None]
        if not points:
            continue
        colour, marker = series_style(k)
        x = row_values(points, "x")
        auc = row_values(points, "probe_auroc")
        sig = np.array([bool(p["probe_significant"]) for p in points], dtype=bool)
        ax.vlines(
            x,
            row_values(points, "probe_auroc_ci_low"),
            row_values(points, "probe_auroc_ci_high"),
            color=colour,
            linewidth=0.7,
            alpha=0.5,
        )
        ax.plot(x, auc, color=colour, linewidth=1.0, alpha=0.75)
        ax.plot(x, row_values(points, "norm_auroc"), color=colour, linewidth=0.8, linestyle=":")
        ax.plot(x[sig], auc[sig], linestyle="none", marker=marker, markersize=5, color=colour)
        ax.plot(
            x[~sig],
            auc[~sig],
            linestyle="none",
            marker=marker,
            markersize=5,
            markerfacecolor="white",
            markeredgecolor=colour,
        )
    ax.axhline(0.5, color=OKABE_ITO["black"], linestyle="--", linewidth=0.6)
    ax.set(
        ylabel="Held-out AUROC",
        title="C  Part 8: the probe of the direction (dotted: the log-norm), 95% CI",
    )
