"""The comparison figure's panels: their labels fit inside the figure and their panel."""

from __future__ import annotations

import pytest

from lamina.report.figures.compare_profiles import figure_compare
from lamina.stats.catalog import STATISTICS, axis_label, label, short


def _comparison(statistic: str) -> dict:
    points = [
        {
            "x": k / 5,
            "layer": k,
            "hedges_g": 0.1 * k,
            "hedges_g_ci_low": 0.1 * k - 0.05,
            "hedges_g_ci_high": 0.1 * k + 0.05,
            "statistic": 0.02 + 0.001 * k,
            "null_mean": 0.02,
            "significant": k % 2 == 0,
        }
        for k in range(6)
    ]
    return {
        "settings": {"statistic_computed": statistic},
        "series": [{"label": "run a", "points": points}],
        "axis_label": "relative depth (layer / (layers − 1))",
    }


@pytest.mark.parametrize("statistic", sorted(STATISTICS))
def test_panel_b_ylabel_is_short_and_fits_its_panel(statistic):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figure_compare(_comparison(statistic))
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # lays the figure out (constrained layout)
    renderer = canvas.get_renderer()
    ax_s = fig.axes[1]
    box = ax_s.yaxis.label.get_window_extent(renderer)
    panel = ax_s.get_window_extent(renderer)
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1
    assert panel.y0 - 1 <= box.y0 and box.y1 <= panel.y1 + 1, (box, panel)
    units = axis_label(statistic).removeprefix(label(statistic)).strip()
    assert label(statistic) in ax_s.get_title()  # the full name stays, in the title
    assert ax_s.get_ylabel() == f"{short(statistic)} − null mean" + (f"\n{units}" if units else "")
