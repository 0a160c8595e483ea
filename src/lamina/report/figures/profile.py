"""Part 6's figure: the laminar profile, four panels over all layers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.report._style import (
    CORRECT_COLOR,
    INCORRECT_COLOR,
    NULL_COLOR,
    OKABE_ITO,
    SIGNIFICANT_COLOR,
)
from lamina.report.figures._common import (
    display,
    new_figure,
    norm_label,
    significance_handles,
    significance_points,
    statistic_axis_label,
    suptitle,
)
from lamina.stats.catalog import CORRECTION_LABELS, is_divergence

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figure_part6(results: Mapping[str, Any]) -> Figure:
    """Per-layer class means, statistic vs null, difference of means and effect size."""
    from matplotlib.ticker import MaxNLocator

    p6 = results["part6"]
    rows = p6["layers"]
    layers = np.array([r["layer"] for r in rows])
    sig = np.array([r["significant"] for r in rows], dtype=bool)
    fig = new_figure("part6_laminar_profile")
    (ax_a, ax_b), (ax_c, ax_d) = fig.subplots(2, 2, sharex=True)
    _panel_means(ax_a, p6, layers)
    _panel_null(ax_b, results, layers, sig)
    _panels_effects(ax_c, ax_d, rows, layers, sig)
    for ax in (ax_a, ax_b, ax_c, ax_d):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(fig, p6)
    suptitle(fig, results)
    return fig


def _panel_means(ax, p6: Mapping[str, Any], layers: np.ndarray) -> None:
    """A: the classes' mean log-norms per layer."""
    rows = p6["layers"]
    for key, colour, marker, label in (
        ("mean_log_norm_correct", CORRECT_COLOR, "o", "correct"),
        ("mean_log_norm_incorrect", INCORRECT_COLOR, "s", "incorrect"),
    ):
        ax.plot(
            layers,
            np.array([r[key] for r in rows]),
            color=colour,
            marker=marker,
            markersize=4,
            linewidth=1.2,
            label=label,
        )
    ax.set(ylabel=f"Mean {norm_label(p6['site'])}", title="A  Class means of the log-norms")
    ax.legend(loc="best")


def _panel_null(ax, results: Mapping[str, Any], layers: np.ndarray, sig: np.ndarray) -> None:
    """B: the observed statistic per layer over its null's range and mean."""
    from matplotlib.lines import Line2D

    p6 = results["part6"]
    rows = p6["layers"]
    statistic = p6["statistic_name"]
    stat = display([r["statistic"] for r in rows], statistic)
    null_min = display([r["null_min"] for r in rows], statistic)
    null_max = display([r["null_max"] for r in rows], statistic)
    null_mean = display([r["null_mean"] for r in rows], statistic)
    ax.vlines(layers, null_min, null_max, color=NULL_COLOR, linewidth=1.2)
    ax.plot(layers, null_mean, linestyle="none", marker="_", markersize=8, color=NULL_COLOR)
    filled = {"color": SIGNIFICANT_COLOR, "markeredgecolor": OKABE_ITO["black"]}
    open_ = {"markerfacecolor": "white", "markeredgecolor": OKABE_ITO["black"]}
    ax.plot(
        layers[sig],
        stat[sig],
        linestyle="none",
        marker="h",
        markersize=7,
        markeredgewidth=0.6,
        **filled,
    )
    ax.plot(
        layers[~sig],
        stat[~sig],
        linestyle="none",
        marker="h",
        markersize=6,
        markeredgewidth=0.8,
        **open_,
    )
    ax.set(ylabel=statistic_axis_label(results), title="B  Observed statistic and its null")
    if is_divergence(statistic) or statistic in ("ks", "wasserstein"):
        ax.set_ylim(bottom=0)
    ax.legend(
        handles=[
            Line2D([], [], color=NULL_COLOR, linewidth=1.2, label="null min–max"),
            Line2D(
                [],
                [],
                color=NULL_COLOR,
                marker="_",
                markersize=8,
                linestyle="none",
                label="null mean",
            ),
            Line2D(
                [],
                [],
                marker="h",
                linestyle="none",
                color=SIGNIFICANT_COLOR,
                markeredgecolor="black",
                markersize=7,
                label="observed, significant",
            ),
            Line2D(
                [],
                [],
                marker="h",
                linestyle="none",
                markerfacecolor="white",
                markeredgecolor="black",
                markersize=6,
                label="observed, not significant",
            ),
        ],
        loc="best",
    )


def _panels_effects(ax_c, ax_d, rows: list, layers: np.ndarray, sig: np.ndarray) -> None:
    """C: the difference of means; D: Hedges' g with its 95% interval."""
    diff = np.array([r["difference"] for r in rows])
    g = np.array([r["hedges_g"] for r in rows])
    g_lo = np.array([r["hedges_g_ci_low"] for r in rows], dtype=np.float64)
    g_hi = np.array([r["hedges_g_ci_high"] for r in rows], dtype=np.float64)
    ax_d.vlines(layers, g_lo, g_hi, color=NULL_COLOR, linewidth=1.0)
    for ax, values in ((ax_c, diff), (ax_d, g)):
        ax.axhline(0.0, color=OKABE_ITO["black"], linestyle="--", linewidth=0.6)
        higher = values > 0
        for mask, colour, marker in ((higher, CORRECT_COLOR, "o"), (~higher, INCORRECT_COLOR, "s")):
            significance_points(
                ax, layers[mask], values[mask], sig[mask], colour, marker, size=6, edge_width=1.1
            )
    ax_c.set(
        xlabel="Layer",
        ylabel="Δ mean log-norm (correct − incorrect)",
        title="C  Difference of means",
    )
    ax_d.set(
        xlabel="Layer",
        ylabel="Hedges' g (correct − incorrect)",
        title="D  Effect size (bars: 95% CI)",
    )


def _legend(fig: Figure, p6: Mapping[str, Any]) -> None:
    from matplotlib.lines import Line2D

    fig.legend(
        handles=[
            Line2D(
                [], [], marker="o", linestyle="none", color=CORRECT_COLOR, label="correct higher"
            ),
            Line2D(
                [], [], marker="s", linestyle="none", color=INCORRECT_COLOR, label="correct lower"
            ),
            *significance_handles(),
        ],
        loc="outside lower center",
        ncol=4,
        title=f"B, C, D: significance by {CORRECTION_LABELS[p6['correction']]}, "
        f"α = {p6['alpha']:g} ({p6['n_permutations']:,} permutations)",
        title_fontsize=8,
    )
