"""The study's report: one self-contained HTML page.

:func:`render_report` fills ``templates/report.html.j2`` from a results dict
(``results.json``) and the figures' PNG bytes, which are embedded as
``data:`` URIs: the page needs no network and no other file, has no
JavaScript, and can be mailed as is.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Mapping
from typing import Any

from lamina._format import format_p
from lamina.report._style import FIGURE_TITLES, figure_names, pixel_size
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


def _fmt_fixed(value: Any, decimals: int = 4, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{decimals}f}" if signed else f"{value:.{decimals}f}"


def _fmt_p(value: Any) -> str:
    return format_p(value)


def _display(value: Any, statistic: str) -> Any:
    """A statistic's value in display units (bits for divergences); None stays None."""
    return None if value is None else display_value(value, statistic)


def _fmt_pct(value: Any) -> str:
    return "–" if value is None else f"{value:.2%}"


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
    env.filters.update(fmt=_fmt, fixed=_fmt_fixed, p=_fmt_p, pct=_fmt_pct, display=_display)
    return env


def template():
    """The compiled report template (compiled once per process by jinja2's cache)."""
    return _environment().get_template(TEMPLATE)


def render_report(results: Mapping[str, Any], figures_png: Mapping[str, bytes]) -> str:
    """The report's HTML text.

    ``results`` is a ``results.json`` dict; ``figures_png`` maps each of its
    figures (:func:`lamina.report._style.figure_names`) to its PNG bytes.
    """
    names = figure_names(results)
    missing = [name for name in names if name not in figures_png]
    if missing:
        raise ValueError(f"figures missing for the report: {', '.join(missing)}")
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
    return template().render(
        r=results,
        title=title,
        figures=figures,
        statistic=statistic,
        statistic_label=label(statistic),
        statistic_short=short(statistic),
        statistic_in_bits=is_divergence(statistic),
        correction_label=CORRECTION_LABELS[results["part6"]["correction"]],
        correction_labels=CORRECTION_LABELS,
    )
