"""Rendering the figures to PNG and SVG bytes, split over two processes where that pays."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from lamina.report._style import (
    DPI,
    PNG_METADATA,
    RC_PARAMS,
    SVG_METADATA,
    figure_names,
    writable_matplotlib_dir,
)
from lamina.report.figures.accuracy import figure_part2
from lamina.report.figures.compare_profiles import figure_compare
from lamina.report.figures.controls import figure_part7
from lamina.report.figures.divergences import figure_part4
from lamina.report.figures.layer import figure_part3
from lamina.report.figures.probes import figure_part8
from lamina.report.figures.profile import figure_part6
from lamina.report.figures.significance import figure_part5
from lamina.report.figures.sites import figure_sites_heads, figure_sites_profiles

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lamina.study.result import StudyResult

# Before any figure imports matplotlib: no warnings about an unwritable cache directory.
writable_matplotlib_dir()


def _builders(result: StudyResult, results) -> dict[str, Callable[[], Figure]]:
    data = result.data
    if data is None:
        raise ValueError("the StudyResult carries no per-token data; figures need analyze_table's")
    return {
        "part2_accuracy": lambda: figure_part2(results, data.correct, data.ctx_pos),
        "part3_layer_histograms": lambda: figure_part3(results),
        "part4_divergences": lambda: figure_part4(results),
        "part5_significance": lambda: figure_part5(results),
        "part6_laminar_profile": lambda: figure_part6(results),
        "sites_laminar_profiles": lambda: figure_sites_profiles(results),
        "sites_attn_heads": lambda: figure_sites_heads(results),
        "part7_controls": lambda: figure_part7(results),
        "part8_probes": lambda: figure_part8(results),
    }


def _render(build: Callable[[], Figure], formats: tuple[str, ...]) -> dict[str, bytes]:
    """Build one figure and save it in every format, laying it out only once."""
    import matplotlib

    out: dict[str, bytes] = {}
    with matplotlib.rc_context(RC_PARAMS):
        fig = build()
        for k, fmt in enumerate(formats):
            buffer = io.BytesIO()
            metadata = SVG_METADATA if fmt == "svg" else PNG_METADATA
            fig.savefig(buffer, format=fmt, dpi=DPI, metadata=metadata)
            out[fmt] = buffer.getvalue()
            if k == 0:
                # The first save ran the constrained layout; keep its positions.
                fig.set_layout_engine("none")
    return out


# Relative rendering cost of each figure (CPU seconds, measured), to split the work evenly.
RENDER_COST = {
    "part2_accuracy": 0.34,
    "part3_layer_histograms": 0.20,
    "part4_divergences": 0.39,
    "part5_significance": 0.18,
    "part6_laminar_profile": 0.60,
    "sites_laminar_profiles": 0.45,
    "sites_attn_heads": 0.35,
    "part7_controls": 0.60,
    "part8_probes": 0.45,
}


def _split(names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Two lists of figures with about equal total cost (greedy, heaviest first)."""
    first: list[str] = []
    second: list[str] = []
    cost = [0.0, 0.0]
    for name in sorted(names, key=lambda n: -RENDER_COST.get(n, 0.3)):
        k = 0 if cost[0] <= cost[1] else 1
        (first, second)[k].append(name)
        cost[k] += RENDER_COST.get(name, 0.3)
    return first, second


def _render_in_child(connection, builders, names, formats) -> None:  # pragma: no cover - child
    try:
        connection.send({name: _render(builders[name], formats) for name in names})
    except BaseException as exc:  # the parent re-renders; the child only reports
        connection.send(exc.__class__.__name__ + ": " + str(exc))
    finally:
        connection.close()


def render_figures(
    result: StudyResult,
    *,
    formats: tuple[str, ...] = ("png", "svg"),
    workers: int | None = None,
) -> dict[str, dict[str, bytes]]:
    """Render the result's figures to ``{name: {format: bytes}}``, in
    :func:`~lamina.report._style.figure_names` order.

    With ``workers=2`` (the default where ``fork`` exists and two CPUs are
    usable) a forked child renders about half of the figures while this
    process renders the rest; the bytes are the same either way.
    """
    # No matplotlib.use(): figures are Figure objects saved by their own canvas, so the
    # backend (a notebook's inline one) is left as the user has it.

    results = result.to_dict()
    builders = _builders(result, results)
    names = figure_names(results)
    if workers is None:
        workers = 2 if _can_fork() and _usable_cpus() > 1 else 1
    rendered: dict[str, dict[str, bytes]] = {}
    if workers > 1 and _can_fork():
        import multiprocessing

        # The child takes the costlier half: this process also builds the report.
        halves = _split(names)
        cost = [sum(RENDER_COST.get(n, 0.3) for n in half) for half in halves]
        child_names, own_names = halves if cost[0] >= cost[1] else halves[::-1]
        context = multiprocessing.get_context("fork")
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(
            target=_render_in_child, args=(sender, builders, child_names, formats), daemon=True
        )
        child.start()
        sender.close()
        try:
            for name in own_names:
                rendered[name] = _render(builders[name], formats)
            try:
                from_child = receiver.recv()
            except EOFError:
                from_child = "the rendering process exited without a result"
        except BaseException:
            # The child may be blocked sending its figures (it holds the pipe's other end
            # too, so closing ours does not wake it): stop it, or join() waits forever.
            child.terminate()
            raise
        finally:
            receiver.close()
            child.join()
        if isinstance(from_child, dict):
            rendered.update(from_child)
        else:
            # Something in the child failed: render those figures here, raising the real error.
            for name in child_names:
                rendered[name] = _render(builders[name], formats)
    else:
        for name in names:
            rendered[name] = _render(builders[name], formats)
    return {name: rendered[name] for name in names}


def render_compare_figure(
    comparison, formats: tuple[str, ...] = ("png", "svg")
) -> dict[str, bytes]:
    """The comparison's figure (``compare_profiles``) as ``{format: bytes}``."""
    return _render(lambda: figure_compare(comparison), formats)


def warm_up() -> None:
    """Load the Agg and SVG backends and the fonts by drawing a small figure (not kept)."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC_PARAMS):
        fig = Figure(figsize=(2, 1), dpi=DPI, layout="constrained")
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], marker="o", label="ln ‖x‖₂ − Δ")
        ax.set(title="warm-up", xlabel="x", ylabel="y")
        ax.legend()
        for fmt in ("png", "svg"):
            fig.savefig(io.BytesIO(), format=fmt, metadata=SVG_METADATA if fmt == "svg" else None)


def _can_fork() -> bool:
    return sys.platform.startswith("linux")


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
