"""The data of the report's interactive views, as compact JSON for the page.

The page carries one ``<script type="application/json" id="lamina-data">``
and the script ``static/explore.js`` (hand-written, no library: the views are a
chart of a few dozen points and a few thousand spans, which a plotting
library's standalone bundle, hundreds of kilobytes to megabytes, would not
improve). ``charts`` holds chart specifications (series of points with the
numbers shown on hover, pre-formatted here so the page shows what the tables
show); ``tokens`` the token view of :func:`lamina.study.token_view.token_view`.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import math
from collections.abc import Mapping
from typing import Any

from lamina._format import format_p
from lamina.report._style import CORRECT_COLOR
from lamina.stats.catalog import display_value, short


@functools.cache
def static_text(name: str) -> str:
    """A file of ``lamina/report/static`` (the view's script and style sheet)."""
    return importlib.resources.files("lamina.report").joinpath("static", name).read_text("utf-8")


def embed_json(obj: Any) -> str:
    """Compact JSON that is safe inside a ``<script>`` element (no ``<``, ``>`` or ``&``)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def number(value: Any, digits: int = 4) -> str:
    """A number for a hover panel: ``digits`` significant digits; '–' for missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}"


def layer_tip(row: Mapping[str, Any], statistic: str) -> list[list[str]]:
    """The hover rows of one layer of a profile (a Part 6 or site row)."""
    stat = row["statistic"]
    null_mean = row["null_mean"]
    return [
        ["mean ln-norm, correct", f"{row['mean_log_norm_correct']:.4f}"],
        ["mean ln-norm, incorrect", f"{row['mean_log_norm_incorrect']:.4f}"],
        ["difference", f"{row['difference']:+.4f}"],
        [short(statistic), number(None if stat is None else display_value(stat, statistic))],
        [
            "its null mean",
            number(None if null_mean is None else display_value(null_mean, statistic)),
        ],
        ["p raw", format_p(row["pvalue"])],
        ["p corrected", format_p(row["pvalue_corrected"])],
        ["significant", "yes" if row["significant"] else "no"],
        ["AUROC", f"{row['auroc']:.3f}"],
        ["Hedges' g", f"{row['hedges_g']:+.3f}"],
        ["95% CI of g", f"{row['hedges_g_ci_low']:+.3f} to {row['hedges_g_ci_high']:+.3f}"],
        ["tokens C / I", f"{row['n_correct']:,} / {row['n_incorrect']:,}"],
    ]


def profile_chart(results: Mapping[str, Any]) -> dict[str, Any]:
    """Part 6 as a chart: Hedges' g with its 95% interval per layer, filled when significant."""
    p6 = results["part6"]
    statistic = p6["statistic_name"]
    points = [
        {
            "x": row["layer"],
            "layer": row["layer"],
            "y": row["hedges_g"],
            "lo": row["hedges_g_ci_low"],
            "hi": row["hedges_g_ci_high"],
            "sig": bool(row["significant"]),
            "name": f"layer {row['layer']} ({p6['site']})",
            "tip": layer_tip(row, statistic),
        }
        for row in p6["layers"]
    ]
    layers = [row["layer"] for row in p6["layers"]]
    step = max(1, math.ceil(len(layers) / 15))
    return {
        "label": f"laminar profile of {p6['site']}: Hedges' g per layer",
        "xLabel": "Layer",
        "yLabel": "Hedges' g (correct − incorrect)",
        "xTicks": [[layer, str(layer)] for layer in layers[::step]],
        "columns": True,
        "selects": True,
        "series": [
            {"name": p6["site"], "color": CORRECT_COLOR, "marker": "circle", "points": points}
        ],
    }


def report_data(results: Mapping[str, Any], token_view: Mapping[str, Any] | None) -> str:
    """The page's JSON: the profile chart and the token view (or why it is absent)."""
    tokens = token_view or {
        "available": False,
        "reason": "the report was built without the token table",
    }
    return embed_json({"charts": {"profile": profile_chart(results)}, "tokens": tokens})
