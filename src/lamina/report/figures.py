"""The study's figures (Parts 2-6), rendered with matplotlib's Agg backend.

Every figure is built from a :class:`lamina.study.StudyResult` (its
``results.json`` dict, plus the per-token arrays of Part 2's strip plot) and
rendered to PNG and SVG bytes in memory; :func:`lamina.study.write_outputs`
writes them. Part 1 (model and capture) is a table in the report, not a
figure.

Colours are the Okabe-Ito palette (safe for the common colour-vision
deficiencies); correct predictions are blue, incorrect vermillion, the
permutation null grey. Significance is shown by filled (significant) vs open
(not significant) markers, so it survives greyscale printing. PNGs are
``FIGURE_SIZES[name] * DPI`` pixels; SVGs are deterministic (fixed hash salt,
no date).
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.study import is_divergence

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lamina.study import StudyResult

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
CORRECT_COLOR = OKABE_ITO["blue"]
INCORRECT_COLOR = OKABE_ITO["vermillion"]
NULL_COLOR = "#8C8C8C"
SIGNIFICANT_COLOR = OKABE_ITO["bluish_green"]

DPI = 150
JITTER_STREAM = 2
FIGURE_SIZES: dict[str, tuple[float, float]] = {
    "part2_accuracy": (10.0, 3.8),
    "part3_layer_histograms": (8.0, 4.2),
    "part4_divergences": (10.0, 4.6),
    "part5_significance": (8.0, 3.8),
    "part6_laminar_profile": (10.0, 7.0),
}
FIGURE_NAMES: tuple[str, ...] = tuple(FIGURE_SIZES)
FIGURE_TITLES = {
    "part2_accuracy": "Part 2: prediction accuracy",
    "part3_layer_histograms": "Part 3: log-norms at one layer",
    "part4_divergences": "Part 4: divergences and the number of bins",
    "part5_significance": "Part 5: permutation test at one layer",
    "part6_laminar_profile": "Part 6: laminar profile over all layers",
}

RC_PARAMS = {
    "axes.spines.right": False,
    "axes.spines.top": False,
    "axes.titleweight": "bold",
    "axes.titlesize": 10.5,
    "axes.titlelocation": "left",
    "axes.labelsize": 9.5,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "font.family": "DejaVu Sans",
    "svg.hashsalt": "lamina",
    "svg.fonttype": "path",
    "path.simplify": True,
}
SVG_METADATA = {"Date": None}
PNG_METADATA = {"Software": None}


def _pixel_size(name: str) -> tuple[int, int]:
    """(width, height) in pixels of a figure's PNG."""
    w, h = FIGURE_SIZES[name]
    return round(w * DPI), round(h * DPI)


# ----------------------------------------------------------------------------- helpers


def _statistic_axis_label(results: Mapping[str, Any]) -> str:
    from lamina.report.summary import statistic_label

    statistic = results["parameters"]["statistic_computed"]
    label = statistic_label(statistic)
    if is_divergence(statistic):
        return f"{label} (bits)"
    if statistic in ("wasserstein", "mean_difference"):
        return f"{label} (ln-norm units)"
    return label


def _display(values: Any, statistic: str) -> np.ndarray:
    """Statistic values in display units: bits for divergences, else unchanged."""
    arr = np.asarray(values, dtype=np.float64)
    return arr / math.log(2.0) if is_divergence(statistic) else arr


def _norm_label(site: str, layer: int | None = None) -> str:
    where = f" at layer {layer}" if layer is not None else ""
    return f"ln ‖{site}‖₂{where}"


def _suptitle(fig: Figure, results: Mapping[str, Any]) -> None:
    if results.get("compat") == "seed":
        fig.suptitle(
            "seed compatibility mode: the reference notebook's numbers, flaws included",
            fontsize=8.5,
            color=OKABE_ITO["vermillion"],
            x=0.99,
            ha="right",
        )


def _new_figure(name: str) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=FIGURE_SIZES[name], dpi=DPI, layout="constrained")


# ----------------------------------------------------------------------------- figures


def figure_part2(results: Mapping[str, Any], correct: np.ndarray, ctx_pos: np.ndarray) -> Figure:
    """Accuracy by position (jittered strip and running mean) and target-token lengths."""
    p2 = results["part2"]
    fig = _new_figure("part2_accuracy")
    ax_pos, ax_len = fig.subplots(1, 2, width_ratios=[1.9, 1.0])

    # A stream of its own (not the permutations'), so the jitter is independent of the labels.
    rng = np.random.default_rng([results["parameters"]["seed"], JITTER_STREAM])
    y = correct.astype(np.float64) + rng.uniform(-0.12, 0.12, correct.size)
    many = correct.size > 4000
    size = 2.0 if many else 5.0
    alpha = 0.25 if many else 0.45
    for mask, colour, label in (
        (correct, CORRECT_COLOR, "correct token"),
        (~correct, INCORRECT_COLOR, "incorrect token"),
    ):
        ax_pos.scatter(
            ctx_pos[mask],
            y[mask],
            s=size,
            color=colour,
            alpha=alpha,
            linewidths=0,
            rasterized=many,
            label=label,
        )
    running = p2["running_mean"]
    positions = np.arange(len(running["accuracy"]))
    ax_pos.plot(
        positions,
        running["accuracy"],
        color=OKABE_ITO["black"],
        linewidth=1.6,
        label=f"running mean ({running['width_tokens']} positions)",
    )
    ax_pos.axhline(
        p2["accuracy"],
        color=NULL_COLOR,
        linestyle="--",
        linewidth=1.0,
        label=f"overall {p2['accuracy']:.1%}",
    )
    ax_pos.set(
        ylim=(-0.3, 1.5),
        yticks=[0, 0.25, 0.5, 0.75, 1],
        xlabel="Position in window (tokens of left context)",
        ylabel="Top-1 accuracy",
        title=f"A  Accuracy by position ({p2['n_correct']:,} / {p2['n_tokens']:,} correct)",
    )
    last = max(int(positions[-1]), 1)
    ax_pos.set_xlim(-0.01 * last, last * 1.01 + 0.5)
    ax_pos.legend(loc="upper center", ncol=4, markerscale=2.5, handlelength=1.6, columnspacing=1.2)

    tc = p2["target_chars"]
    lengths = np.asarray(tc["lengths"])
    present = (np.asarray(tc["counts_correct"]) + np.asarray(tc["counts_incorrect"])) > 0
    lo, hi = int(lengths[present].min()), int(lengths[present].max())
    sel = slice(lo, hi + 1)
    for key, colour, marker, name in (
        ("correct", CORRECT_COLOR, "o", "correct"),
        ("incorrect", INCORRECT_COLOR, "s", "incorrect"),
    ):
        prob = np.asarray(tc[f"probability_{key}"])[sel]
        ax_len.plot(
            lengths[sel],
            prob,
            color=colour,
            marker=marker,
            markersize=4,
            linewidth=1.2,
            label=f"{name} (mean {tc[key]['mean']:.2f} chars)",
        )
    ax_len.set(
        xlabel="Target token length (characters)",
        ylabel="Probability",
        title="B  Target token length",
    )
    ax_len.set_ylim(bottom=0)
    ax_len.legend(loc="best")
    _suptitle(fig, results)
    return fig


def figure_part3(results: Mapping[str, Any]) -> Figure:
    """Log-norm histograms at one layer as probabilities on shared bins."""
    p3 = results["part3"]
    fig = _new_figure("part3_layer_histograms")
    ax = fig.subplots()
    edges = np.asarray(p3["edges"])
    for key, colour, name in (
        ("correct", CORRECT_COLOR, "correct"),
        ("incorrect", INCORRECT_COLOR, "incorrect"),
    ):
        prob = np.asarray(p3[f"probability_{key}"])
        summary = p3[key]
        ax.stairs(prob, edges, fill=True, color=colour, alpha=0.25, linewidth=0)
        ax.stairs(
            prob,
            edges,
            color=colour,
            linewidth=1.6,
            label=f"{name} (n = {summary['n']:,}, mean {summary['mean']:.3f})",
        )
        ax.axvline(summary["mean"], color=colour, linestyle="--", linewidth=1.0)
    ax.set(
        xlabel=f"{_norm_label(p3['site'], p3['layer'])} (natural log of the L2 norm)",
        ylabel="Probability per bin",
        title=f"Log-norms of {p3['site']} at layer {p3['layer']}: correct vs incorrect "
        f"({p3['n_bins']} shared bins)",
    )
    ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.15)
    ax.legend(loc="upper left", title="dashed: class mean", title_fontsize=8, alignment="left")
    _suptitle(fig, results)
    return fig


def figure_part4(results: Mapping[str, Any]) -> Figure:
    """JS bin-count sweep against its null, beside the binless estimators."""
    p4 = results["part4"]
    sweep = p4["js_sweep"]
    seed_mode = results.get("compat") == "seed"
    fig = _new_figure("part4_divergences")
    ax_js, ax_z = fig.subplots(1, 2)
    bins = np.asarray(sweep["bins"])
    js_bits = np.asarray(sweep["js_bits"], dtype=np.float64)
    has_null = sweep["n_permutations"] > 0
    if has_null:
        ax_js.fill_between(
            bins,
            np.asarray(sweep["null_q025_bits"], dtype=np.float64),
            np.asarray(sweep["null_q975_bits"], dtype=np.float64),
            color=NULL_COLOR,
            alpha=0.3,
            linewidth=0,
            label=f"null, central 95% ({sweep['n_permutations']:,} permutations)",
        )
        ax_js.plot(
            bins, sweep["null_mean_bits"], color=NULL_COLOR, linewidth=1.2, label="null mean"
        )
    ax_js.plot(
        bins,
        js_bits,
        color=OKABE_ITO["black"],
        marker="o",
        markersize=3,
        linewidth=1.2,
        label="observed",
    )
    chosen = p4["at_bins"]["n_bins"]
    ax_js.axvline(
        chosen,
        color=OKABE_ITO["orange"],
        linestyle=":",
        linewidth=1.4,
        label=f"{chosen} bins (Parts 3-6)",
    )
    ylabel = "symmetric KL, the notebook's (bits / bins)" if seed_mode else "JS divergence (bits)"
    ax_js.set(
        xlabel="Number of histogram bins",
        ylabel=ylabel,
        title=f"A  JS divergence vs bins (layer {p4['layer']})",
    )
    ax_js.set_ylim(bottom=0)
    ax_js.legend(loc="upper left")

    # Panel B: every estimator as its distance from its own permutation null, in null SDs.
    z = np.asarray([np.nan if v is None else v for v in sweep["standardised"]], dtype=np.float64)
    ax_z.plot(
        bins,
        z,
        color=OKABE_ITO["black"],
        marker="o",
        markersize=3,
        linewidth=1.2,
        label="JS (binned), by bin count" if has_null else "_nolegend_",
    )
    colours = [
        OKABE_ITO["sky_blue"],
        OKABE_ITO["reddish_purple"],
        OKABE_ITO["bluish_green"],
        OKABE_ITO["orange"],
    ]
    styles = ["-", "--", "-.", ":"]
    from lamina.report.summary import format_p

    for entry, colour, style in zip(p4["binless"], colours, styles, strict=False):
        if entry["standardised"] is None:
            continue
        ax_z.axhline(
            entry["standardised"],
            color=colour,
            linestyle=style,
            linewidth=1.6,
            label=f"{entry['label']} (p = {format_p(entry['pvalue'])})",
        )
    ax_z.axhline(0.0, color=NULL_COLOR, linewidth=0.8)
    ax_z.set(
        xlabel="Number of histogram bins (binned JS only)",
        ylabel="(observed − null mean) / null SD",
        title="B  Distance from the permutation null",
    )
    fig.legend(
        handles=ax_z.get_legend_handles_labels()[0],
        loc="outside lower center",
        ncol=3,
        title="B: the binned JS by bin count (black) and the binless estimators (lines)",
        title_fontsize=8,
    )
    _suptitle(fig, results)
    return fig


def figure_part5(results: Mapping[str, Any]) -> Figure:
    """The permutation null of the statistic at one layer, with the observed value."""
    from lamina.report.summary import format_p, statistic_short

    p5 = results["part5"]
    statistic = p5["statistic_name"]
    fig = _new_figure("part5_significance")
    ax = fig.subplots()
    null = _display(p5["null_distribution"], statistic)
    observed = float(_display([p5["statistic"]], statistic)[0])
    n_hist_bins = int(np.clip(np.sqrt(null.size) * 1.5, 10, 60))
    counts, edges = np.histogram(null, bins=n_hist_bins)
    ax.stairs(
        counts,
        edges,
        fill=True,
        color=NULL_COLOR,
        label=f"null: {p5['n_permutations']:,} label permutations",
    )
    q95 = float(np.quantile(null, 0.95))
    ax.axvline(
        q95,
        color=OKABE_ITO["black"],
        linestyle="--",
        linewidth=1.0,
        label="95th percentile of the null",
    )
    ax.axvline(observed, color=OKABE_ITO["vermillion"], linewidth=2.4, label="observed")
    lo = min(float(null.min()), observed)
    hi = max(float(null.max()), observed)
    pad = 0.05 * (hi - lo if hi > lo else 1.0)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set(
        xlabel=_statistic_axis_label(results),
        ylabel="Permutations (count)",
        title=f"{results['parameters']['site']} at layer {p5['layer']}: "
        f"{statistic_short(statistic)} = "
        f"{observed:.4g}{' bits' if is_divergence(statistic) else ''}, "
        f"p = {format_p(p5['pvalue'])}",
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _suptitle(fig, results)
    return fig


def figure_part6(results: Mapping[str, Any]) -> Figure:
    """Per-layer class means, statistic vs null, difference of means and effect size."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    from lamina.report.summary import CORRECTION_LABELS

    p6 = results["part6"]
    rows = p6["layers"]
    statistic = p6["statistic_name"]
    layers = np.array([r["layer"] for r in rows])
    sig = np.array([r["significant"] for r in rows], dtype=bool)
    fig = _new_figure("part6_laminar_profile")
    (ax_a, ax_b), (ax_c, ax_d) = fig.subplots(2, 2, sharex=True)

    mean_c = np.array([r["mean_log_norm_correct"] for r in rows])
    mean_i = np.array([r["mean_log_norm_incorrect"] for r in rows])
    ax_a.plot(
        layers,
        mean_c,
        color=CORRECT_COLOR,
        marker="o",
        markersize=4,
        linewidth=1.2,
        label="correct",
    )
    ax_a.plot(
        layers,
        mean_i,
        color=INCORRECT_COLOR,
        marker="s",
        markersize=4,
        linewidth=1.2,
        label="incorrect",
    )
    ax_a.set(ylabel=f"Mean {_norm_label(p6['site'])}", title="A  Class means of the log-norms")
    ax_a.legend(loc="best")

    stat = _display([r["statistic"] for r in rows], statistic)
    null_min = _display([r["null_min"] for r in rows], statistic)
    null_max = _display([r["null_max"] for r in rows], statistic)
    null_mean = _display([r["null_mean"] for r in rows], statistic)
    ax_b.vlines(layers, null_min, null_max, color=NULL_COLOR, linewidth=1.2)
    ax_b.plot(layers, null_mean, linestyle="none", marker="_", markersize=8, color=NULL_COLOR)
    ax_b.plot(
        layers[sig],
        stat[sig],
        linestyle="none",
        marker="h",
        markersize=7,
        color=SIGNIFICANT_COLOR,
        markeredgecolor=OKABE_ITO["black"],
        markeredgewidth=0.6,
    )
    ax_b.plot(
        layers[~sig],
        stat[~sig],
        linestyle="none",
        marker="h",
        markersize=6,
        markerfacecolor="white",
        markeredgecolor=OKABE_ITO["black"],
        markeredgewidth=0.8,
    )
    ax_b.set(ylabel=_statistic_axis_label(results), title="B  Observed statistic and its null")
    if is_divergence(statistic) or statistic in ("ks", "wasserstein"):
        ax_b.set_ylim(bottom=0)
    ax_b.legend(
        handles=[
            Line2D([], [], color=NULL_COLOR, linewidth=1.2, label="null min–max"),
            Line2D(
                [],
                [],
                color=NULL_COLOR,
                marker="_",
                markersize=8,
                linestyle="none",
                label="null mean",
            ),
            Line2D(
                [],
                [],
                marker="h",
                linestyle="none",
                color=SIGNIFICANT_COLOR,
                markeredgecolor="black",
                markersize=7,
                label="observed, significant",
            ),
            Line2D(
                [],
                [],
                marker="h",
                linestyle="none",
                markerfacecolor="white",
                markeredgecolor="black",
                markersize=6,
                label="observed, not significant",
            ),
        ],
        loc="best",
    )

    diff = np.array([r["difference"] for r in rows])
    g = np.array([r["hedges_g"] for r in rows])
    g_lo = np.array([r["hedges_g_ci_low"] for r in rows], dtype=np.float64)
    g_hi = np.array([r["hedges_g_ci_high"] for r in rows], dtype=np.float64)
    ax_d.vlines(layers, g_lo, g_hi, color=NULL_COLOR, linewidth=1.0)
    for ax, values in ((ax_c, diff), (ax_d, g)):
        ax.axhline(0.0, color=OKABE_ITO["black"], linestyle="--", linewidth=0.6)
        higher = values > 0
        for mask, colour, marker in (
            (higher, CORRECT_COLOR, "o"),
            (~higher, INCORRECT_COLOR, "s"),
        ):
            ax.plot(
                layers[mask & sig],
                values[mask & sig],
                linestyle="none",
                marker=marker,
                markersize=6,
                color=colour,
            )
            ax.plot(
                layers[mask & ~sig],
                values[mask & ~sig],
                linestyle="none",
                marker=marker,
                markersize=6,
                markerfacecolor="white",
                markeredgecolor=colour,
                markeredgewidth=1.1,
            )
    ax_c.set(
        xlabel="Layer",
        ylabel="Δ mean log-norm (correct − incorrect)",
        title="C  Difference of means",
    )
    ax_d.set(
        xlabel="Layer",
        ylabel="Hedges' g (correct − incorrect)",
        title="D  Effect size (bars: 95% CI)",
    )
    for ax in (ax_a, ax_b, ax_c, ax_d):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(
        handles=[
            Line2D(
                [], [], marker="o", linestyle="none", color=CORRECT_COLOR, label="correct higher"
            ),
            Line2D(
                [], [], marker="s", linestyle="none", color=INCORRECT_COLOR, label="correct lower"
            ),
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
        ],
        loc="outside lower center",
        ncol=4,
        title=f"B, C, D: significance by {CORRECTION_LABELS[p6['correction']]}, "
        f"α = {p6['alpha']:g} ({p6['n_permutations']:,} permutations)",
        title_fontsize=8,
    )
    _suptitle(fig, results)
    return fig


# ----------------------------------------------------------------------------- rendering


def _builders(result: StudyResult) -> dict[str, Callable[[], Figure]]:
    results = result.to_dict()
    data = result.data
    if data is None:
        raise ValueError("the StudyResult carries no per-token data; figures need analyze_table's")
    return {
        "part2_accuracy": lambda: figure_part2(results, data.correct, data.ctx_pos),
        "part3_layer_histograms": lambda: figure_part3(results),
        "part4_divergences": lambda: figure_part4(results),
        "part5_significance": lambda: figure_part5(results),
        "part6_laminar_profile": lambda: figure_part6(results),
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
    """Render Parts 2-6 to ``{name: {format: bytes}}``, in :data:`FIGURE_NAMES` order.

    With ``workers=2`` (the default where ``fork`` exists and two CPUs are
    usable) a forked child renders about half of the figures while this
    process renders the rest; the bytes are the same either way.
    """
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.figure  # imported here, before forking, so the child needs no import

    builders = _builders(result)
    if workers is None:
        workers = 2 if _can_fork() and _usable_cpus() > 1 else 1
    rendered: dict[str, dict[str, bytes]] = {}
    if workers > 1 and _can_fork():
        import multiprocessing

        # The child takes the costlier half: this process also builds the report.
        halves = _split(FIGURE_NAMES)
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
        for name in FIGURE_NAMES:
            rendered[name] = _render(builders[name], formats)
    return {name: rendered[name] for name in FIGURE_NAMES}


def warm_up() -> None:
    """Load the Agg and SVG backends and the fonts by drawing a small figure (not kept)."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
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
