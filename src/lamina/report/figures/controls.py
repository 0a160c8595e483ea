"""Part 7's figure: raw vs controlled effects per layer, the odds ratio, the held-out gain over
the controls, and the balance of the covariates."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.report._style import NULL_COLOR, OKABE_ITO
from lamina.report.figures._common import (
    interval_points,
    new_figure,
    row_values,
    significance_handles,
    suptitle,
)
from lamina.stats.catalog import CORRECTION_LABELS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RAW_COLOR = NULL_COLOR
CONTROLLED_COLOR = OKABE_ITO["reddish_purple"]
ODDS_COLOR = OKABE_ITO["blue"]
GAIN_COLOR = OKABE_ITO["bluish_green"]
#: |SMD| under which a covariate is conventionally called balanced (Austin 2009).
BALANCED_SMD = 0.1


def figure_part7(results: Mapping[str, Any]) -> Figure:
    """A: Hedges' g before and after the controls; B: odds ratio per SD; C: held-out log-loss
    gain over the controls; D: balance of the covariates."""
    from matplotlib.ticker import MaxNLocator

    p7 = results["part7"]
    rows = p7["layers"]
    layers = np.array([r["layer"] for r in rows], dtype=np.float64)
    sig = np.array([r["significant"] for r in rows], dtype=bool)
    fig = new_figure("part7_controls")
    (ax_a, ax_b), (ax_c, ax_d) = fig.subplots(2, 2)
    _panel_effects(ax_a, p7, rows, layers, sig)
    _panel_odds(ax_b, rows, layers, sig)
    _panel_gain(ax_c, p7, rows, layers, sig)
    _panel_balance(ax_d, p7)
    for ax in (ax_a, ax_b, ax_c):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("Layer")
    fig.legend(
        handles=significance_handles(),
        loc="outside lower center",
        ncol=2,
        title="A (grey): Part 6's test; A (purple), B, C: the test after the controls "
        f"({CORRECTION_LABELS[p7['correction']]}, α = {p7['alpha']:g})",
        title_fontsize=8,
    )
    suptitle(fig, results)
    return fig


def _panel_effects(ax, p7, rows, layers, sig) -> None:
    """A: Hedges' g before (grey) and after the controls (purple), with the negligible band."""
    band = p7["min_effect"]
    ax.axhspan(-band, band, color="0.92", zorder=0, label=f"|g| < {band:g} (negligible)")
    ax.axhline(0.0, color=OKABE_ITO["black"], linestyle="--", linewidth=0.6)
    raw_sig = np.array([r["significant_raw"] for r in rows], dtype=bool)
    interval_points(
        ax,
        layers - 0.15,
        row_values(rows, "hedges_g_raw"),
        row_values(rows, "hedges_g_raw_ci_low"),
        row_values(rows, "hedges_g_raw_ci_high"),
        raw_sig,
        RAW_COLOR,
        "o",
        "before the controls",
    )
    interval_points(
        ax,
        layers + 0.15,
        row_values(rows, "hedges_g"),
        row_values(rows, "hedges_g_ci_low"),
        row_values(rows, "hedges_g_ci_high"),
        sig,
        CONTROLLED_COLOR,
        "D",
        "at equal controls",
    )
    ax.set(
        ylabel="Hedges' g (correct − incorrect)",
        title="A  Effect before and after the controls (95% CI)",
    )
    ax.legend(loc="best", fontsize=7)


def _panel_odds(ax, rows, layers, sig) -> None:
    """B: the log-norm's odds ratio of a correct prediction per SD, given the controls (log
    scale, ticks over the whole range of the points and intervals, on both sides of 1)."""
    odds = row_values(rows, "odds_ratio")
    low, high = row_values(rows, "odds_ratio_ci_low"), row_values(rows, "odds_ratio_ci_high")
    ax.axhline(1.0, color=OKABE_ITO["black"], linestyle="--", linewidth=0.6)
    interval_points(ax, layers, odds, low, high, sig, ODDS_COLOR, "o")
    shown = np.concatenate([odds, low, high])
    shown = shown[np.isfinite(shown) & (shown > 0)]
    if shown.size:
        _log_ticks(ax, float(min(shown.min(), 1.0)), float(max(shown.max(), 1.0)))
    ax.set(
        ylabel="Odds ratio of correct per SD of log-norm",
        title="B  Odds ratio given the controls (95% CI)",
    )


def _log_ticks(ax, low: float, high: float) -> None:
    """A log y axis from ``low`` to ``high`` (padded) with labelled ticks across all of it."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullLocator

    decades = np.log10(high) - np.log10(low)  # in logs: a huge range must not overflow
    bottom, top = low / 10 ** (0.05 * decades), high * 10 ** (0.05 * decades)
    ax.set_yscale("log")
    ax.set_ylim(bottom, top)
    if 1.1 * decades <= np.log10(5):  # top / bottom <= 5
        # A narrow range: evenly spaced round values (a log locator would give 1 alone).
        ticks = MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10]).tick_values(bottom, top)
        ax.yaxis.set_major_locator(FixedLocator(ticks[(ticks >= bottom) & (ticks <= top)]))
    else:
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _panel_gain(ax, p7, rows, layers, sig) -> None:
    """C: the out-of-fold log-loss gain of adding the layer's log-norm to the controls."""
    milli = 1000.0
    gain = row_values(rows, "logloss_gain") * milli
    low = row_values(rows, "logloss_gain_ci_low") * milli
    high = row_values(rows, "logloss_gain_ci_high") * milli
    ax.axhline(0.0, color=OKABE_ITO["black"], linestyle="--", linewidth=0.6)
    interval_points(ax, layers, gain, low, high, sig, GAIN_COLOR, "s")
    reg = p7["regression"]
    ax.set(
        ylabel="Held-out log-loss gain (millinats / token)",
        title="C  Gain over the controls alone, out of fold (95% CI)",
    )
    ax.text(
        0.01,
        0.98,
        f"controls alone: AUROC {reg['auroc_controls']:.3f} "
        f"[{reg['auroc_controls_ci_low']:.3f}, {reg['auroc_controls_ci_high']:.3f}]; "
        "> 0: the layer improves the prediction",
        transform=ax.transAxes,
        ha="left",
        va="top",
        fontsize=7,
        color="0.3",
    )


def _panel_balance(ax, p7) -> None:
    """D: the standardised mean difference of each covariate, correct − incorrect."""
    from matplotlib.patches import Patch

    balance = p7["balance"]
    names = [b["covariate"] for b in balance]
    y = np.arange(len(balance))[::-1]
    smd = np.array([np.nan if b["smd"] is None else b["smd"] for b in balance])
    control = np.array([b["control"] for b in balance], dtype=bool)
    ax.axvspan(-BALANCED_SMD, BALANCED_SMD, color="0.92", zorder=0)
    ax.axvline(0.0, color=OKABE_ITO["black"], linewidth=0.6)
    colours = np.where(control, CONTROLLED_COLOR, NULL_COLOR)
    ax.barh(y, np.nan_to_num(smd), height=0.6, color=colours)
    ax.set_yticks(y, names)
    ax.set(
        xlabel="Standardised mean difference (correct − incorrect)",
        title="D  Balance of the covariates",
    )
    ax.legend(
        handles=[
            Patch(color=CONTROLLED_COLOR, label="a control"),
            Patch(color=NULL_COLOR, label="not a control"),
            Patch(color="0.92", label=f"|SMD| < {BALANCED_SMD:g}"),
        ],
        loc="best",
        fontsize=7,
    )
