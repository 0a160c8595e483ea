"""Part 2's figure: accuracy by position, and the length of the target tokens."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.report._style import (
    CORRECT_COLOR,
    INCORRECT_COLOR,
    JITTER_STREAM,
    NULL_COLOR,
    OKABE_ITO,
)
from lamina.report.figures._common import (
    new_figure,
    suptitle,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def figure_part2(results: Mapping[str, Any], correct: np.ndarray, ctx_pos: np.ndarray) -> Figure:
    """Accuracy by position (jittered strip and running mean) and target-token lengths."""
    fig = new_figure("part2_accuracy")
    ax_pos, ax_len = fig.subplots(1, 2, width_ratios=[1.9, 1.0])
    _panel_positions(ax_pos, results, correct, ctx_pos)
    _panel_lengths(ax_len, results["part2"]["target_chars"])
    suptitle(fig, results)
    return fig


def _panel_positions(
    ax_pos, results: Mapping[str, Any], correct: np.ndarray, ctx_pos: np.ndarray
) -> None:
    """A: every token at its position, jittered, with the running mean of accuracy."""
    p2 = results["part2"]
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


def _panel_lengths(ax_len, tc: Mapping[str, Any]) -> None:
    """B: the targets' length in characters, as probabilities, per class."""
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
