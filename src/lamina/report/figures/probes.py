"""Part 8's figure: what the direction of each layer's vectors tells of correctness, beside the
norm, the controls and the model's own confidence."""

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

PROBE_COLOR = OKABE_ITO["blue"]
NORM_COLOR = NULL_COLOR
CONFIDENCE_COLOR = OKABE_ITO["orange"]
CONTROLS_COLOR = OKABE_ITO["reddish_purple"]
BASELINE_COLOR = OKABE_ITO["bluish_green"]
DIRECTION_ONLY_SHADE = "#e6f0f8"


def figure_part8(results: Mapping[str, Any]) -> Figure:
    """A: held-out AUROC per layer of the probe (direction) and of the log-norm, beside the
    controls', the confidence's and both together (bands: 95% CIs), the layers that carry
    correctness in direction but not in norm shaded, the saturation layer marked; B: the
    probe's held-out log-loss gain over the controls and the confidence."""
    from matplotlib.ticker import MaxNLocator

    p8 = results["part8"]
    rows = p8["layers"]
    layers = np.array([r["layer"] for r in rows], dtype=np.float64)
    fig = new_figure("part8_probes")
    ax_a, ax_b = fig.subplots(2, 1, sharex=True, height_ratios=(2.2, 1.0))
    _panel_auroc(ax_a, p8, rows, layers)
    _panel_gain(ax_b, rows, layers)
    for ax in (ax_a, ax_b):
        for layer in p8["direction_not_norm_layers"]:
            ax.axvspan(layer - 0.5, layer + 0.5, color=DIRECTION_ONLY_SHADE, zorder=0, lw=0)
        if p8.get("saturation_layer") is not None:
            ax.axvline(p8["saturation_layer"], color=OKABE_ITO["black"], linestyle=":", lw=1.0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_b.set_xlabel("Layer")
    fig.legend(
        handles=significance_handles(),
        loc="outside lower center",
        ncol=2,
        title=f"probe: its test ({CORRECTION_LABELS[p8['correction']]}, α = {p8['alpha']:g}); "
        "log-norm: Part 6's test; gain: 95% CI above 0",
        title_fontsize=8,
    )
    suptitle(fig, results)
    return fig


def _band(ax, x, value, low, high, colour, label) -> None:
    """A horizontal line at ``value`` with its interval as a band across the layers."""
    if value is None:
        return
    lo, hi = x.min() - 0.5, x.max() + 0.5
    ax.fill_between([lo, hi], low, high, color=colour, alpha=0.15, lw=0)
    ax.plot([lo, hi], [value, value], color=colour, linewidth=1.2, label=label)


def _panel_auroc(ax, p8, rows, layers) -> None:
    from matplotlib.patches import Patch

    b = p8["baselines"]
    ax.axhline(0.5, color=OKABE_ITO["black"], linestyle="--", linewidth=0.6)
    _band(
        ax,
        layers,
        b["auroc_confidence"],
        b["auroc_confidence_ci_low"],
        b["auroc_confidence_ci_high"],
        CONFIDENCE_COLOR,
        "confidence (−entropy)",
    )
    _band(
        ax,
        layers,
        b["auroc_controls"],
        b["auroc_controls_ci_low"],
        b["auroc_controls_ci_high"],
        CONTROLS_COLOR,
        "controls (out of fold)",
    )
    if b["auroc_confidence"] is not None and b["auroc_controls"] is not None:
        _band(
            ax,
            layers,
            b["auroc_baseline"],
            b["auroc_baseline_ci_low"],
            b["auroc_baseline_ci_high"],
            BASELINE_COLOR,
            "controls + confidence",
        )
    norm_sig = np.array([r["norm_significant"] for r in rows], dtype=bool)
    interval_points(
        ax,
        layers - 0.12,
        row_values(rows, "norm_auroc"),
        row_values(rows, "norm_auroc_ci_low"),
        row_values(rows, "norm_auroc_ci_high"),
        norm_sig,
        NORM_COLOR,
        "s",
        "log-norm (norm)",
    )
    sig = np.array([r["significant"] for r in rows], dtype=bool)
    interval_points(
        ax,
        layers + 0.12,
        row_values(rows, "auroc"),
        row_values(rows, "auroc_ci_low"),
        row_values(rows, "auroc_ci_high"),
        sig,
        PROBE_COLOR,
        "o",
        f"probe ({p8['method']}: direction)",
    )
    handles, _ = ax.get_legend_handles_labels()
    if p8["direction_not_norm_layers"]:
        handles.append(Patch(color=DIRECTION_ONLY_SHADE, label="in direction, not in norm"))
    if p8.get("saturation_layer") is not None:
        from matplotlib.lines import Line2D

        handles.append(
            Line2D([], [], color="black", linestyle=":", label="saturation (reaches the peak's CI)")
        )
    ax.legend(handles=handles, loc="best", fontsize=7, ncol=2)
    ax.set(
        ylabel="Held-out AUROC (correct vs incorrect)",
        title="A  What tells correct from incorrect, per layer (95% CI)",
    )


def _panel_gain(ax, rows, layers) -> None:
    milli = 1000.0
    gain = row_values(rows, "logloss_gain") * milli
    low = row_values(rows, "logloss_gain_ci_low") * milli
    high = row_values(rows, "logloss_gain_ci_high") * milli
    ax.axhline(0.0, color=OKABE_ITO["black"], linestyle="--", linewidth=0.6)
    interval_points(ax, layers, gain, low, high, low > 0, PROBE_COLOR, "o", None)
    ax.set(
        ylabel="Log-loss gain\n(millinats / token)",
        title="B  The probe's gain over the controls and the confidence, out of fold (95% CI)",
    )
