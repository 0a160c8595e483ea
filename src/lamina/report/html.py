"""The study's report: one self-contained HTML page.

:func:`render_report` fills ``templates/report.html.j2`` from a results dict
(``results.json``), the figures' PNG bytes, which are embedded as ``data:``
URIs, and the token view's data: the page needs no network and no other file
(its one small script and style sheet, ``static/explore.*``, are inlined) and
can be mailed as is.
"""

from __future__ import annotations

import base64
import functools
import math
import statistics
from collections.abc import Mapping
from typing import Any

from lamina._format import format_p, layer_list
from lamina.report._style import FIGURE_TITLES, SITE_FIGURES, figure_names, pixel_size
from lamina.report.explore import report_data, static_text
from lamina.report.figures.sites import scope_words
from lamina.stats.catalog import CORRECTION_LABELS, display_value, is_divergence, label, short

TEMPLATE = "report.html.j2"


def _fmt(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; '–' for missing."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.{digits}g}"
    return str(value)


#: from this magnitude on a fixed-decimals cell is written in scientific notation
LARGE = 1e5


def _fmt_fixed(value: Any, decimals: int = 4, signed: bool = False) -> str:
    """A number with ``decimals`` decimals (a table column's cells line up); '–' for missing;
    a magnitude of 100,000 or more in three significant digits, so no cell widens the page."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    spec = f".{decimals}f" if abs(value) < LARGE else ".3g"
    return format(value, ("+" if signed else "") + spec)


def _decimals(values: Any, digits: int = 4) -> int:
    """The decimals a table column needs to show its largest value with ``digits``
    significant digits (``fmt``'s precision): one count for every cell of the column."""
    finite = [abs(v) for v in values if isinstance(v, int | float) and math.isfinite(v) and v]
    if not finite:
        return digits
    return min(8, max(0, digits - 1 - math.floor(math.log10(max(finite)))))


def _fmt_p(value: Any) -> str:
    return format_p(value)


def _display(value: Any, statistic: str) -> Any:
    """A statistic's value in display units (bits for divergences); None stays None."""
    return None if value is None else display_value(value, statistic)


def _fmt_pct(value: Any) -> str:
    return "–" if value is None else f"{value:.2%}"


def _milli(value: Any) -> Any:
    """A value in thousandths (nats to millinats); None stays None."""
    return None if value is None else 1000.0 * value


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@functools.cache
def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lamina.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        fmt=_fmt,
        fixed=_fmt_fixed,
        decimals=_decimals,
        p=_fmt_p,
        pct=_fmt_pct,
        display=_display,
        milli=_milli,
    )
    return env


def template():
    """The compiled report template (compiled once per process by jinja2's cache)."""
    return _environment().get_template(TEMPLATE)


def render_report(
    results: Mapping[str, Any],
    figures_png: Mapping[str, bytes],
    token_view: Mapping[str, Any] | None = None,
) -> str:
    """The report's HTML text.

    ``results`` is a ``results.json`` dict; ``figures_png`` maps each of its
    figures (:func:`lamina.report._style.figure_names`) to its PNG bytes;
    ``token_view`` is the token view's data (:func:`lamina.study.token_view.token_view`),
    or None to say it is absent.
    """
    names = figure_names(results)
    missing = [name for name in names if name not in figures_png]
    if missing:
        raise ValueError(f"figures missing for the report: {', '.join(missing)}")
    site_figures = [name for name in SITE_FIGURES if name in names]
    figures = {}
    for name in names:
        width, height = pixel_size(name)
        figures[name] = {
            "src": _data_uri(figures_png[name]),
            "alt": FIGURE_TITLES[name],
            "width": width,
            "height": height,
            "file": f"figures/{name}.svg",
        }
    params = results["parameters"]
    statistic = params["statistic_computed"]
    p1 = results["part1"]
    model_name = p1["model"].get("name") or p1["model"].get("spec") or "model"
    title = f"lamina: {model_name} on {p1['text'].get('spec')}"
    sites = results.get("sites")
    return template().render(
        r=results,
        title=title,
        figures=figures,
        statistic=statistic,
        statistic_label=label(statistic),
        statistic_short=short(statistic),
        statistic_in_bits=is_divergence(statistic),
        correction_label=CORRECTION_LABELS[results["part6"]["correction"]],
        sites=sites,
        sites_rows=_sites_rows(sites),
        sites_scope=scope_words(sites) if sites else "",
        site_figures=site_figures,
        tokens=token_view or {"available": False, "reason": "it was built without the table"},
        explore_data=report_data(results, token_view),
        explore_js=static_text("explore.js"),
        explore_css=static_text("explore.css"),
        correction_labels=CORRECTION_LABELS,
        serial=_serial(results["part6"]),
        part6_pvalues={r["layer"]: r["pvalue_corrected"] for r in results["part6"]["layers"]},
    )


def _serial(p6: Mapping[str, Any]) -> dict[str, Any]:
    """What Part 6's text says of serial dependence: tokens, the median over layers of the
    effective tokens (None when not known) and the labels' autocorrelation at lag 1."""
    rows = p6["layers"]
    effective = [r["effective_tokens"] for r in rows if r.get("effective_tokens") is not None]
    label_acf = p6.get("label_autocorrelation") or [None]
    return {
        "n_tokens": rows[0]["n_correct"] + rows[0]["n_incorrect"] if rows else 0,
        "median_effective": statistics.median(effective) if effective else None,
        "label_acf1": label_acf[0],
    }


def _sites_rows(sites: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One summary row per site, when the run analysed more than its primary site."""
    profiles = (sites or {}).get("profiles", [])
    if len(profiles) < 2 and not any(p["kind"] == "heads" for p in profiles):
        return []
    rows = []
    for p in profiles:
        if p["kind"] == "heads":
            shown = [f"{layer}.{head}" for layer, head in p["significant"][:24]]
            more = len(p["significant"]) - len(shown)
            marked = (", ".join(shown) + (f" and {more} more" if more > 0 else "")) or "none"
            marked = f"{marked} (layer.head)" if shown else marked
        else:
            marked = layer_list(p["significant"])
        peak = max(p["rows"], key=lambda r: abs(r["hedges_g"]))
        where = f"{peak['layer']}.{peak['head']}" if p["kind"] == "heads" else str(peak["layer"])
        rows.append(
            {
                **p,
                "marked": marked,
                "peak": f"g = {peak['hedges_g']:+.3f} at {where}",
            }
        )
    return rows
