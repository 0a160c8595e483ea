"""The comparison's report and tables, from a ``comparison.json`` dict.

:func:`render_compare` fills ``templates/compare.html.j2``: the comparison
table, the figure (embedded PNG), the same profiles as an interactive chart
(hover or focus a point for its run, absolute layer, relative depth and
numbers) and each run's provenance; one self-contained page like the study's
report. :func:`comparison_csv` and :func:`profiles_csv` are the CSV files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lamina._format import csv_cell, format_p
from lamina.report._style import FIGURE_TITLES, pixel_size
from lamina.report.explore import embed_json, number, static_text
from lamina.report.figures.compare_profiles import series_style
from lamina.report.html import _data_uri, _environment
from lamina.stats.catalog import display_value, label, short

TABLE_COLUMNS = (
    "label",
    "model",
    "n_layers",
    "text",
    "windows",
    "n_tokens",
    "accuracy",
    "site",
    "statistic",
    "n_tests",
    "n_significant",
    "significant_layers",
    "peak_layer",
    "peak_relative_depth",
    "peak_hedges_g",
    "reanalysed",
)
POINT_COLUMNS = (
    "label",
    "site",
    "n_layers",
    "layer",
    "relative_depth",
    "n_correct",
    "n_incorrect",
    "mean_log_norm_correct",
    "mean_log_norm_incorrect",
    "difference",
    "statistic",
    "statistic_bits",
    "null_mean",
    "pvalue",
    "pvalue_corrected",
    "significant",
    "auroc",
    "hedges_g",
    "hedges_g_ci_low",
    "hedges_g_ci_high",
)


def comparison_csv(comparison: Mapping[str, Any]) -> str:
    """``comparison.csv``: the comparison table, one row per run and site."""
    lines = [",".join(TABLE_COLUMNS)]
    lines += [",".join(csv_cell(row[c]) for c in TABLE_COLUMNS) for row in comparison["table"]]
    return "\n".join(lines) + "\n"


def profiles_csv(comparison: Mapping[str, Any]) -> str:
    """``profiles.csv``: one row per run, site and layer."""
    lines = [",".join(POINT_COLUMNS)]
    for series in comparison["series"]:
        for point in series["points"]:
            row = {
                **point,
                "label": series["label"],
                "site": series["site"],
                "n_layers": series["n_layers"],
            }
            lines.append(",".join(csv_cell(row[c]) for c in POINT_COLUMNS))
    return "\n".join(lines) + "\n"


def _point_tip(point: Mapping[str, Any], series: Mapping[str, Any], statistic: str) -> list:
    stat, null_mean = point["statistic"], point["null_mean"]
    return [
        ["site", series["site"]],
        ["layer", f"{point['layer']} of 0–{series['n_layers'] - 1}"],
        ["relative depth", f"{point['relative_depth']:.3f}"],
        ["Hedges' g", number(point["hedges_g"], 3)],
        [
            "95% CI of g",
            f"{number(point['hedges_g_ci_low'], 3)} to {number(point['hedges_g_ci_high'], 3)}",
        ],
        [short(statistic), number(None if stat is None else display_value(stat, statistic))],
        [
            "its null mean",
            number(None if null_mean is None else display_value(null_mean, statistic)),
        ],
        ["p raw", format_p(point["pvalue"])],
        ["p corrected", format_p(point["pvalue_corrected"])],
        ["significant", "yes" if point["significant"] else "no"],
        ["difference", number(point["difference"])],
        ["tokens C / I", f"{point['n_correct']:,} / {point['n_incorrect']:,}"],
    ]


def compare_chart(comparison: Mapping[str, Any]) -> dict[str, Any]:
    """The comparison as a chart: Hedges' g per layer of every series on the shared axis."""
    statistic = comparison["settings"]["statistic_computed"]
    series = []
    for k, s in enumerate(comparison["series"]):
        colour, marker = series_style(k)
        points = [
            {
                "x": p["x"],
                "layer": p["layer"],
                "y": p["hedges_g"],
                "lo": p["hedges_g_ci_low"],
                "hi": p["hedges_g_ci_high"],
                "sig": bool(p["significant"]),
                "name": f"{s['label']}: layer {p['layer']}",
                "tip": _point_tip(p, s, statistic),
            }
            for p in s["points"]
            if p["hedges_g"] is not None and math.isfinite(p["hedges_g"])
        ]
        series.append(
            {
                "name": s["label"],
                "color": colour,
                "marker": "square" if marker == "s" else "circle",
                "points": points,
            }
        )
    if comparison["axis"] == "relative_depth":
        ticks = [[t / 4, f"{t / 4:g}"] for t in range(5)]
    else:
        layers = sorted({p["layer"] for s in comparison["series"] for p in s["points"]})
        step = max(1, math.ceil(len(layers) / 15))
        ticks = [[layer, str(layer)] for layer in layers[::step]]
    return {
        "label": "Hedges' g per layer of every run",
        "xLabel": comparison["axis_label"],
        "yLabel": "Hedges' g (correct − incorrect)",
        "xTicks": ticks,
        "columns": False,
        "selects": False,
        "series": series,
    }


def render_compare(comparison: Mapping[str, Any], figure_png: bytes) -> str:
    """The comparison's HTML page."""
    width, height = pixel_size("compare_profiles")
    statistic = comparison["settings"]["statistic_computed"]
    chart = compare_chart(comparison)
    return (
        _environment()
        .get_template("compare.html.j2")
        .render(
            c=comparison,
            title=f"lamina: {len(comparison['runs'])} runs side by side",
            figure={
                "src": _data_uri(figure_png),
                "alt": FIGURE_TITLES["compare_profiles"],
                "width": width,
                "height": height,
            },
            statistic_label=label(statistic),
            legend=[{"name": s["name"], "color": s["color"]} for s in chart["series"]],
            explore_data=embed_json({"charts": {"compare": chart}, "tokens": {"available": False}}),
            explore_js=static_text("explore.js"),
            explore_css=static_text("explore.css"),
        )
    )
