"""Part 7's figure: raw vs controlled effects per layer, the regression view, and balance."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.report._style import (
    CORRECT_COLOR,
    INCORRECT_COLOR,
    NULL_COLOR,
    OKABE_ITO,
)
from lamina.report.figures._common import new_figure, suptitle

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RAW_COLOR = NULL_COLOR
CONTROLLED_COLOR = OKABE_ITO["reddish_purple"]


def figure_part7(results: Mapping[str, Any]) -> Figure:
    """A: Hedges' g raw and within strata; B: odds ratio per SD; C: AUROC gain; D: balance."""
    from matplotlib.ticker import MaxNLocator

    p7 = results["part7"]
    rows = p7["layers"]
    layers = np.array([r["layer"] for r in rows], dtype=np.float64)
    fig = new_figure("part7_controls")
    (ax_a, ax_b), (ax_c, ax_d) = fig.subplots(2, 2)
    _panel_effects(ax_a, p7, rows, layers)
    _panel_odds(ax_b, p7, rows, layers)
    _panel_gain(ax_c, p7, rows, layers)
    _panel_balance(ax_d, p7)
    for ax in (ax_a, ax_b, ax_c):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("Layer")
    suptitle(fig, results)
    return fig


def _values(rows, key: str) -> np.ndarray:
    return np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=np.float64)


def _points(ax, x, y, low, high, significant, colour, marker, label) -> None:
    """Points with interval bars: filled where significant, open elsewhere."""
    ax.vlines(x, low, high, color=colour, linewidth=1.0, alpha=0.8)
    ax.plot(
        x[significant],
        y[significant],
        linestyle="none",
        marker=marker,
        color=colour,
        markersize=5.5,
        label=f"{label}, significant",
    )
    ax.plot(
        x[~significant],
        y[~significant],
        linestyle="none",
        marker=marker,
        markersize=5.5,
        markerfacecolor="white",
        markeredgecolor=colour,
        markeredgewidth=1.1,
        label=f"{label}, not significant",
    )


def _panel_effects(ax, p7, rows, layers) -> None:
    """A: Hedges' g before (grey) and within strata (purple), with the negligible band;
    purple filled: significant after the controls (both tests)."""
    band = p7["min_effect"]
    ax.axhspan(-band, band, color="0.92", zorder=0, label=f"|g| < {band:g} (negligible)")
    ax.axhline(0.0, color=OKABE_ITO["black"], linestyle="--", linewidth=0.6)
    raw_sig = np.array([r["significant_raw"] for r in rows], dtype=bool)
    sig = np.array([r["significant"] for r in rows], dtype=bool)
    _points(
        ax,
        layers - 0.15,
        _values(rows, "hedges_g_raw"),
        _values(rows, "hedges_g_raw_ci_low"),
        _values(rows, "hedges_g_raw_ci_high"),
        raw_sig,
        RAW_COLOR,
        "o",
        "raw",
    )
    _points(
        ax,
        layers + 0.15,
        _values(rows, "hedges_g"),
        _values(rows, "hedges_g_ci_low"),
        _values(rows, "hedges_g_ci_high"),
        sig,
        CONTROLLED_COLOR,
        "D",
        "within strata",
    )
    ax.set(
        ylabel="Hedges' g (correct − incorrect)",
        title="A  Effect before and after the controls (bars: 95% CI)",
    )
    ax.legend(loc="best", fontsize=7, ncol=2)


def _panel_odds(ax, p7, rows, layers) -> None:
    """B: the norm's odds ratio per SD given the controls, log scale."""
    sig = np.array([r["significant_regression"] for r in rows], dtype=bool)
    odds = _values(rows, "odds_ratio")
    ax.axhline(1.0, color=OKABE_ITO["black"], linestyle="--", linewidth=0.6)
    _points(
        ax,
        layers,
        odds,
        _values(rows, "odds_ratio_ci_low"),
        _values(rows, "odds_ratio_ci_high"),
        sig,
        CORRECT_COLOR,
        "o",
        "odds ratio",
    )
    if np.isfinite(odds).any() and (odds[np.isfinite(odds)] > 0).all():
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    ax.set(
        ylabel="Odds ratio of correct per SD of log-norm",
        title="B  Logistic regression given the controls",
    )
    ax.legend(
        loc="best", fontsize=7, title="filled: permutation score test, max-stat", title_fontsize=7
    )


def _panel_gain(ax, p7, rows, layers) -> None:
    """C: what the layer's log-norm adds to the controls' cross-validated AUROC."""
    gain = _values(rows, "auroc_gain")
    low, high = _values(rows, "auroc_gain_ci_low"), _values(rows, "auroc_gain_ci_high")
    ax.axhline(0.0, color=OKABE_ITO["black"], linestyle="--", linewidth=0.6)
    _points(ax, layers, gain, low, high, low > 0, OKABE_ITO["bluish_green"], "s", "AUROC gain")
    auroc = p7["regression"]["auroc_controls"]
    ax.set(
        ylabel="Δ cross-validated AUROC",
        title=f"C  Added to the controls' AUROC ({auroc:.3f}); filled: CI > 0",
    )
    ax.legend(loc="best", fontsize=7)


def _panel_balance(ax, p7) -> None:
    """D: standardised mean difference of each covariate, overall and within strata."""
    balance = p7["balance"]
    names = [b["covariate"] + (" *" if b["control"] else "") for b in balance]
    y = np.arange(len(balance))[::-1]
    smd = np.array([np.nan if b["smd"] is None else b["smd"] for b in balance])
    within = np.array(
        [np.nan if b["smd_within_strata"] is None else b["smd_within_strata"] for b in balance]
    )
    ax.axvspan(-0.1, 0.1, color="0.92", zorder=0)
    ax.axvline(0.0, color=OKABE_ITO["black"], linewidth=0.6)
    ax.plot(
        smd,
        y,
        linestyle="none",
        marker="o",
        markerfacecolor="white",
        markeredgecolor=INCORRECT_COLOR,
        markersize=6,
        label="all tokens",
    )
    ax.plot(
        within,
        y,
        linestyle="none",
        marker="o",
        color=CONTROLLED_COLOR,
        markersize=5,
        label="within strata",
    )
    ax.set_yticks(y, names)
    ax.set(
        xlabel="Standardised mean difference (correct − incorrect)",
        title="D  Balance of the covariates (* = control)",
    )
    ax.legend(loc="best", fontsize=7)
