"""The figures of a run with several sites: every site's profile on shared axes; attn_head's heads.

Both read the ``sites`` section of ``results.json``. Significance is marked by
the run's ``correction_scope`` (over every test of the run, or over the site's
own tests), filled vs open markers or a dot in the cell, so it survives
greyscale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.report._style import NULL_COLOR, OKABE_ITO, SITE_SERIES
from lamina.report.figures._common import (
    display,
    new_figure,
    significance_handles,
    statistic_axis_label,
    suptitle,
)
from lamina.stats.catalog import CORRECTION_LABELS

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def layer_profiles(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The per-layer site profiles of the ``sites`` section (attn_head's is per head)."""
    sites = results.get("sites") or {}
    return [p for p in sites.get("profiles", []) if p["kind"] == "layers"]


def head_profile(results: Mapping[str, Any]) -> Mapping[str, Any] | None:
    sites = results.get("sites") or {}
    return next((p for p in sites.get("profiles", []) if p["kind"] == "heads"), None)


def marked(row: Mapping[str, Any], scope: str) -> bool:
    """Whether a site row is significant in the run's correction scope."""
    return bool(row["significant_run"] if scope == "run" else row["significant"])


def scope_words(sites: Mapping[str, Any]) -> str:
    where = (
        f"over all {sites['n_tests_run']:,} tests of the run"
        if sites["correction_scope"] == "run"
        else "over each site's own tests"
    )
    return f"{CORRECTION_LABELS[sites['correction']]} {where}, α = {sites['alpha']:g}"


def figure_sites_profiles(results: Mapping[str, Any]) -> Figure:
    """A: Hedges' g per layer for every per-layer site; B: the statistic and its null mean."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    sites = results["sites"]
    scope = sites["correction_scope"]
    statistic = results["parameters"]["statistic_computed"]
    fig = new_figure("sites_laminar_profiles")
    ax_g, ax_s = fig.subplots(2, 1, sharex=True)
    handles = []
    for k, profile in enumerate(layer_profiles(results)):
        colour, marker = SITE_SERIES[k % len(SITE_SERIES)]
        rows = profile["rows"]
        layers = np.array([r["layer"] for r in rows])
        sig = np.array([marked(r, scope) for r in rows], dtype=bool)
        g = np.array([r["hedges_g"] for r in rows], dtype=np.float64)
        stat = display([r["statistic"] for r in rows], statistic)
        null_mean = display([r["null_mean"] for r in rows], statistic)
        ax_s.plot(layers, null_mean, color=colour, linestyle=":", linewidth=1.0)
        for ax, values in ((ax_g, g), (ax_s, stat)):
            ax.plot(layers, values, color=colour, linewidth=1.0, alpha=0.7)
            ax.plot(layers[sig], values[sig], linestyle="none", marker=marker, color=colour)
            ax.plot(
                layers[~sig],
                values[~sig],
                linestyle="none",
                marker=marker,
                markerfacecolor="white",
                markeredgecolor=colour,
            )
        handles.append(
            Line2D([], [], color=colour, marker=marker, label=profile["site"], linewidth=1.0)
        )
    ax_g.axhline(0.0, color=OKABE_ITO["black"], linestyle="--", linewidth=0.6)
    ax_g.set(ylabel="Hedges' g (correct − incorrect)", title="A  Effect size per layer")
    ax_s.set(
        xlabel="Layer",
        ylabel=statistic_axis_label(results),
        title="B  Statistic per layer (dotted: its permutation null's mean)",
    )
    ax_s.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles += significance_handles()
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=min(len(handles), 6),
        title=f"significance: {scope_words(sites)}",
        title_fontsize=8,
    )
    suptitle(fig, results)
    return fig


def figure_sites_heads(results: Mapping[str, Any]) -> Figure:
    """Hedges' g of every head at every layer (layers across, heads up), significance dotted."""
    from matplotlib.colors import TwoSlopeNorm

    sites = results["sites"]
    profile = head_profile(results)
    assert profile is not None
    rows = profile["rows"]
    layers = sorted({r["layer"] for r in rows})
    n_heads = int(profile["n_heads"])
    g = np.full((n_heads, len(layers)), np.nan)
    sig = np.zeros_like(g, dtype=bool)
    column = {layer: j for j, layer in enumerate(layers)}
    for r in rows:
        g[r["head"], column[r["layer"]]] = r["hedges_g"]
        sig[r["head"], column[r["layer"]]] = marked(r, sites["correction_scope"])
    fig = new_figure("sites_attn_heads")
    ax = fig.subplots()
    limit = float(np.nanmax(np.abs(g))) if np.isfinite(g).any() else 1.0
    limit = limit or 1.0
    image = ax.imshow(
        g,
        cmap="RdBu",
        norm=TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit),
        aspect="auto",
        origin="lower",
        interpolation="nearest",
        extent=(-0.5, len(layers) - 0.5, -0.5, n_heads - 0.5),
    )
    heads, cols = np.nonzero(sig)
    ax.plot(
        cols,
        heads,
        linestyle="none",
        marker="o",
        markersize=4,
        color=OKABE_ITO["black"],
        markeredgecolor="white",
        markeredgewidth=0.8,
    )
    ax.set_xticks(range(len(layers)), [str(layer) for layer in layers])
    ax.set_yticks(range(n_heads))
    if len(layers) > 24:
        for label in ax.get_xticklabels()[1::2]:
            label.set_visible(False)
    ax.set(xlabel="Layer", ylabel="Head", title="attn_head: Hedges' g per layer and head")
    fig.supxlabel(f"dots: significant ({scope_words(sites)})", fontsize=8, color="0.3")
    ax.spines[["right", "top"]].set_visible(True)
    for spine in ax.spines.values():
        spine.set_color(NULL_COLOR)
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.01)
    bar.set_label("Hedges' g (correct − incorrect)")
    suptitle(fig, results)
    return fig
