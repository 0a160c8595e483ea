"""One of the study's figures by name, as a matplotlib ``Figure`` (``lamina.figure``).

The figure is built as the report builds it (same style), on no pyplot backend: a
notebook shows it when it is a cell's value (inline PNG, with or without
``%matplotlib inline``), ``fig.savefig(...)`` writes it, and nothing is left in
pyplot's list of open figures.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from lamina.errors import InputError
from lamina.report._style import DPI, PNG_METADATA, RC_PARAMS, figure_names

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lamina.study.result import StudyResult

#: Short names accepted besides the full ones (``part6`` for ``part6_laminar_profile``).
FIGURE_ALIASES = {
    "part2": "part2_accuracy",
    "part3": "part3_layer_histograms",
    "part4": "part4_divergences",
    "part5": "part5_significance",
    "part6": "part6_laminar_profile",
    "part7": "part7_controls",
    "part8": "part8_probes",
    "sites": "sites_laminar_profiles",
    "heads": "sites_attn_heads",
}


def figure(result: StudyResult | Mapping[str, Any], name: str = "part6") -> Figure:
    """The figure ``name`` of a study (default: Part 6's laminar profile).

    ``result`` is a :class:`~lamina.study.result.StudyResult` or a ``results.json``
    dict (``lamina.study.load_results``), which serves every figure but Part 2's: that
    one needs the per-token data of the StudyResult that ``analyze_table`` returned.
    ``name`` is a figure name (``part6_laminar_profile``) or its short form
    (``part2`` ... ``part8``, ``sites``, ``heads``). Raises :class:`InputError` for an
    unknown name or a figure this study has not (Part 7 without controls, Part 8 without
    probe scores, ``sites`` with one site, ``heads`` without ``attn_head``).
    """
    import matplotlib

    results = result.to_dict() if hasattr(result, "to_dict") else result
    full = FIGURE_ALIASES.get(name, name)
    known = (*FIGURE_ALIASES, *FIGURE_ALIASES.values())
    if full not in known:
        raise InputError(f"unknown figure {name!r}: use one of {', '.join(known)}.")
    available = figure_names(results)
    if full not in available:
        raise InputError(f"this study has no {full} figure; it has {', '.join(available)}.")
    with matplotlib.rc_context(RC_PARAMS):
        fig = _builders(result, results)[full]()
    # IPython shows an object by its _repr_png_: the figure shows as a notebook cell's
    # value whether or not matplotlib's inline backend is on.
    fig._repr_png_ = functools.partial(_png, fig)
    return fig


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes (at the report's DPI)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata=PNG_METADATA)
    return buffer.getvalue()


def _builders(result: Any, results: Mapping[str, Any]) -> dict[str, Callable[[], Figure]]:
    from lamina.report.figures.accuracy import figure_part2
    from lamina.report.figures.controls import figure_part7
    from lamina.report.figures.divergences import figure_part4
    from lamina.report.figures.layer import figure_part3
    from lamina.report.figures.probes import figure_part8
    from lamina.report.figures.profile import figure_part6
    from lamina.report.figures.significance import figure_part5
    from lamina.report.figures.sites import figure_sites_heads, figure_sites_profiles

    def part2() -> Figure:
        data = getattr(result, "data", None)
        if data is None:
            raise InputError(
                "Part 2's figure needs the per-token data of the StudyResult that "
                "analyze_table returned; a results.json has none: pick another figure."
            )
        return figure_part2(results, data.correct, data.ctx_pos)

    return {
        "part2_accuracy": part2,
        "part3_layer_histograms": lambda: figure_part3(results),
        "part4_divergences": lambda: figure_part4(results),
        "part5_significance": lambda: figure_part5(results),
        "part6_laminar_profile": lambda: figure_part6(results),
        "part7_controls": lambda: figure_part7(results),
        "part8_probes": lambda: figure_part8(results),
        "sites_laminar_profiles": lambda: figure_sites_profiles(results),
        "sites_attn_heads": lambda: figure_sites_heads(results),
    }
