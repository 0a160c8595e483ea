"""The study's figures (Parts 2-7, and every site's), rendered with matplotlib's Agg backend.

Every figure is built from a ``results.json`` dict (plus the per-token arrays of
Part 2's strip plot, from :class:`lamina.study.result.StudyData`) and rendered
to PNG and SVG bytes in memory; the pipeline writes them. Part 1 (model and
capture) is a table in the report, not a figure. One module per figure;
:mod:`.render` draws them all; :func:`figure` (``lamina.figure``) returns one as a
matplotlib ``Figure``.

Significance is shown by filled (significant) vs open (not significant)
markers, so it survives greyscale printing.
"""

from lamina._lazy import lazy_exports

_EXPORTS = {
    "DPI": "lamina.report._style",
    "FIGURE_NAMES": "lamina.report._style",
    "FIGURE_SIZES": "lamina.report._style",
    "FIGURE_TITLES": "lamina.report._style",
    "figure_names": "lamina.report._style",
    "FIGURE_ALIASES": ".by_name",
    "figure": ".by_name",
    "figure_part2": ".accuracy",
    "figure_part3": ".layer",
    "figure_part4": ".divergences",
    "figure_part5": ".significance",
    "figure_part6": ".profile",
    "figure_compare": ".compare_profiles",
    "render_compare_figure": ".render",
    "figure_sites_heads": ".sites",
    "figure_sites_profiles": ".sites",
    "figure_part7": ".controls",
    "figure_part8": ".probes",
    "render_figures": ".render",
    "warm_up": ".render",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
