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
    "probe_method",
    "probe_n_significant",
    "probe_peak_layer",
    "probe_peak_relative_depth",
    "probe_peak_auroc",
    "probe_saturation_layer",
    "direction_not_norm_layers",
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
    "probe_auroc",
    "probe_auroc_ci_low",
    "probe_auroc_ci_high",
    "probe_pvalue_corrected",
    "probe_significant",
    "norm_auroc",
    "norm_auroc_ci_low",
    "norm_auroc_ci_high",
    "direction_not_norm",
)
#: The points' Part 8 columns and the Part 8 layer field each is read from (empty for a run
#: or a site without Part 8).
PROBE_POINT_FIELDS = {
    "probe_auroc": "auroc",
    "probe_auroc_ci_low": "auroc_ci_low",
    "probe_auroc_ci_high": "auroc_ci_high",
    "probe_pvalue_corrected": "pvalue_corrected",
    "probe_significant": "significant",
    "norm_auroc": "norm_auroc",
    "norm_auroc_ci_low": "norm_auroc_ci_low",
    "norm_auroc_ci_high": "norm_auroc_ci_high",
    "direction_not_norm": "direction_not_norm",
}


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


def probe_chart(comparison: Mapping[str, Any]) -> dict[str, Any] | None:
    """Part 8's held-out probe AUROC per layer of every series that has it (None: none has)."""
    series = []
    for k, s in enumerate(comparison["series"]):
        points = [p for p in s["points"] if p.get("probe_auroc") is not None]
        if not points:
            continue
        colour, marker = series_style(k)
        series.append(
            {
                "name": s["label"],
                "color": colour,
                "marker": "square" if marker == "s" else "circle",
                "points": [
                    {
                        "x": p["x"],
                        "layer": p["layer"],
                        "y": p["probe_auroc"],
                        "lo": p["probe_auroc_ci_low"],
                        "hi": p["probe_auroc_ci_high"],
                        "sig": bool(p["probe_significant"]),
                        "name": f"{s['label']}: layer {p['layer']}",
                        "tip": _probe_tip(p, s),
                    }
                    for p in points
                ],
            }
        )
    if not series:
        return None
    return {
        **compare_chart(comparison),
        "label": "Held-out probe AUROC per layer of every run",
        "yLabel": "Probe AUROC (direction)",
        "series": series,
    }


def _probe_tip(point: Mapping[str, Any], series: Mapping[str, Any]) -> list:
    return [
        ["site", series["site"]],
        ["layer", f"{point['layer']} of 0–{series['n_layers'] - 1}"],
        ["relative depth", f"{point['relative_depth']:.3f}"],
        ["probe AUROC", number(point["probe_auroc"], 3)],
        [
            "95% CI",
            f"{number(point['probe_auroc_ci_low'], 3)} to {number(point['probe_auroc_ci_high'], 3)}",
        ],
        ["p corrected", format_p(point["probe_pvalue_corrected"])],
        ["norm AUROC", number(point["norm_auroc"], 3)],
        ["direction, not norm", "yes" if point["direction_not_norm"] else "no"],
    ]


def render_compare(comparison: Mapping[str, Any], figure_png: bytes) -> str:
    """The comparison's HTML page."""
    width, height = pixel_size("compare_profiles")
    statistic = comparison["settings"]["statistic_computed"]
    chart = compare_chart(comparison)
    charts = {"compare": chart}
    probes = probe_chart(comparison)
    if probes is not None:
        charts["compare_probes"] = probes
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
            probes=probes is not None,
            explore_data=embed_json({"charts": charts, "tokens": {"available": False}}),
            explore_js=static_text("explore.js"),
            explore_css=static_text("explore.css"),
        )
    )
