"""Helpers every figure uses: axis labels from the statistic catalogue, display units."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.report._style import DPI, FIGURE_SIZES, OKABE_ITO
from lamina.stats.catalog import LN2, axis_label, is_divergence

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def statistic_axis_label(results: Mapping[str, Any]) -> str:
    """The axis label of the study's statistic, in display units."""
    return axis_label(results["parameters"]["statistic_computed"])


def display(values: Any, statistic: str) -> np.ndarray:
    """Statistic values in display units: bits for divergences, else unchanged."""
    arr = np.asarray(values, dtype=np.float64)
    return arr / LN2 if is_divergence(statistic) else arr


def norm_label(site: str, layer: int | None = None) -> str:
    where = f" at layer {layer}" if layer is not None else ""
    return f"ln ‖{site}‖₂{where}"


def suptitle(fig: Figure, results: Mapping[str, Any]) -> None:
    if results.get("compat") == "notebook":
        fig.suptitle(
            "notebook compatibility mode: the reference notebook's numbers, flaws included",
            fontsize=8.5,
            color=OKABE_ITO["vermillion"],
            x=0.99,
            ha="right",
        )


def new_figure(name: str) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=FIGURE_SIZES[name], dpi=DPI, layout="constrained")


def significance_handles() -> list:
    """Legend entries of the profiles' markers: filled when significant, open when not."""
    from matplotlib.lines import Line2D

    return [
        Line2D([], [], marker="o", linestyle="none", color="0.3", label="filled: significant"),
        Line2D(
            [],
            [],
            marker="o",
            linestyle="none",
            markerfacecolor="white",
            markeredgecolor="0.3",
            label="open: not significant",
        ),
    ]


def row_values(rows: list[Mapping[str, Any]], key: str) -> np.ndarray:
    """``key`` of every row as float64, a null as NaN."""
    return np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=np.float64)


def significance_points(ax, x, y, filled, colour, marker, size, edge_width=None) -> None:
    """Markers filled where ``filled`` (significant), open (white face) elsewhere;
    ``edge_width`` is the open markers' edge (None: matplotlib's)."""
    ax.plot(x[filled], y[filled], linestyle="none", marker=marker, markersize=size, color=colour)
    edge = {} if edge_width is None else {"markeredgewidth": edge_width}
    ax.plot(
        x[~filled],
        y[~filled],
        linestyle="none",
        marker=marker,
        markersize=size,
        markerfacecolor="white",
        markeredgecolor=colour,
        **edge,
    )


def interval_points(ax, x, y, low, high, filled, colour, marker, label=None) -> None:
    """Points with interval bars: filled where ``filled`` (significant), open elsewhere;
    ``label`` adds one filled legend entry for the series."""
    ax.vlines(x, low, high, color=colour, linewidth=1.0, alpha=0.8)
    significance_points(ax, x, y, filled, colour, marker, size=5.5, edge_width=1.1)
    if label is not None:
        ax.plot([], [], linestyle="none", marker=marker, color=colour, ms=5.5, label=label)
