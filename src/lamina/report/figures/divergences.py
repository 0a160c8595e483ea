"""Part 4's figure: the JS bin-count sweep against its null, and the binless estimators."""

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
    new_figure,
    suptitle,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figure_part4(results: Mapping[str, Any]) -> Figure:
    """JS bin-count sweep against its null, beside the binless estimators."""
    fig = new_figure("part4_divergences")
    ax_js, ax_z = fig.subplots(1, 2)
    _panel_sweep(ax_js, results)
    _panel_distances(ax_z, results["part4"])
    fig.legend(
        handles=ax_z.get_legend_handles_labels()[0],
        loc="outside lower center",
        ncol=3,
        title="B: the binned JS by bin count (black) and the binless estimators (lines)",
        title_fontsize=8,
    )
    suptitle(fig, results)
    return fig


def _panel_sweep(ax_js, results: Mapping[str, Any]) -> None:
    """A: JS against the number of bins, over its permutation null's central 95%."""
    p4 = results["part4"]
    sweep = p4["js_sweep"]
    notebook_mode = results.get("compat") == "notebook"
    bins = np.asarray(sweep["bins"])
    js_bits = np.asarray(sweep["js_bits"], dtype=np.float64)
    has_null = sweep["n_permutations"] > 0
    if has_null:
        ax_js.fill_between(
            bins,
            np.asarray(sweep["null_q025_bits"], dtype=np.float64),
            np.asarray(sweep["null_q975_bits"], dtype=np.float64),
            color=NULL_COLOR,
            alpha=0.3,
            linewidth=0,
            label=f"null, central 95% ({sweep['n_permutations']:,} permutations)",
        )
        ax_js.plot(
            bins, sweep["null_mean_bits"], color=NULL_COLOR, linewidth=1.2, label="null mean"
        )
    ax_js.plot(
        bins,
        js_bits,
        color=OKABE_ITO["black"],
        marker="o",
        markersize=3,
        linewidth=1.2,
        label="observed",
    )
    chosen = p4["at_bins"]["n_bins"]
    ax_js.axvline(
        chosen,
        color=OKABE_ITO["orange"],
        linestyle=":",
        linewidth=1.4,
        label=f"{chosen} bins (Parts 3-6)",
    )
    ylabel = (
        "symmetric KL, the notebook's (bits / bins)" if notebook_mode else "JS divergence (bits)"
    )
    ax_js.set(
        xlabel="Number of histogram bins",
        ylabel=ylabel,
        title=f"A  JS divergence vs bins (layer {p4['layer']})",
    )
    ax_js.set_ylim(bottom=0)
    ax_js.legend(loc="upper left")


def _panel_distances(ax_z, p4: Mapping[str, Any]) -> None:
    """B: every estimator as its distance from its own permutation null, in null SDs."""
    sweep = p4["js_sweep"]
    bins = np.asarray(sweep["bins"])
    has_null = sweep["n_permutations"] > 0
    z = np.asarray([np.nan if v is None else v for v in sweep["standardised"]], dtype=np.float64)
    ax_z.plot(
        bins,
        z,
        color=OKABE_ITO["black"],
        marker="o",
        markersize=3,
        linewidth=1.2,
        label="JS (binned), by bin count" if has_null else "_nolegend_",
    )
    colours = [
        OKABE_ITO["sky_blue"],
        OKABE_ITO["reddish_purple"],
        OKABE_ITO["bluish_green"],
        OKABE_ITO["orange"],
    ]
    styles = ["-", "--", "-.", ":"]
    for entry, colour, style in zip(p4["binless"], colours, styles, strict=False):
        if entry["standardised"] is None:
            continue
        ax_z.axhline(
            entry["standardised"],
            color=colour,
            linestyle=style,
            linewidth=1.6,
            label=f"{entry['label']} (p = {format_p(entry['pvalue'])})",
        )
    ax_z.axhline(0.0, color=NULL_COLOR, linewidth=0.8)
    ax_z.set(
        xlabel="Number of histogram bins (binned JS only)",
        ylabel="(observed − null mean) / null SD",
        title="B  Distance from the permutation null",
    )
