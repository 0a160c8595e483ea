"""Part 2: prediction accuracy, overall and by position, and the length of the targets."""

from __future__ import annotations

import itertools

import numpy as np

from lamina.study.records import (
    Accuracy,
    PositionGroup,
    RunningMean,
    SampleSummary,
    TargetChars,
)

#: The by-position table has at most this many equal-width groups of positions.
MAX_POSITION_GROUPS = 16


def accuracy(
    correct: np.ndarray, ctx_pos: np.ndarray, target_chars: np.ndarray, running_width: int
) -> Accuracy:
    """Top-1 accuracy of every scored token; ``running_width`` positions of running mean."""
    n = int(correct.size)
    n_correct = int(correct.sum())
    n_pos = int(ctx_pos.max()) + 1
    tokens_at = np.bincount(ctx_pos, minlength=n_pos)
    correct_at = np.bincount(ctx_pos, weights=correct, minlength=n_pos)
    # Running mean over positions, weighted by the tokens at each position.
    width = min(running_width, n_pos)
    kernel = np.ones(width)
    running = np.convolve(correct_at, kernel, "same") / np.maximum(
        np.convolve(tokens_at, kernel, "same"), 1
    )
    return Accuracy(
        n_tokens=n,
        n_correct=n_correct,
        n_incorrect=n - n_correct,
        accuracy=n_correct / n,
        by_position=_by_position(tokens_at, correct_at),
        running_mean=RunningMean(width_tokens=width, accuracy=running),
        target_chars=_target_chars(correct, target_chars),
    )


def _by_position(tokens_at: np.ndarray, correct_at: np.ndarray) -> list[PositionGroup]:
    """Accuracy in equal-width groups of positions (at most 16) for the table."""
    n_pos = tokens_at.size
    n_groups = min(MAX_POSITION_GROUPS, n_pos)
    group_edges = np.linspace(0, n_pos, n_groups + 1).round().astype(int)
    groups = []
    for lo, hi in itertools.pairwise(group_edges):
        t = int(tokens_at[lo:hi].sum())
        c = int(correct_at[lo:hi].sum())
        groups.append(
            PositionGroup(
                ctx_pos_from=int(lo),
                ctx_pos_to=int(hi - 1),
                n_tokens=t,
                n_correct=c,
                accuracy=c / t if t else None,
            )
        )
    return groups


def _sample_summary(x: np.ndarray) -> SampleSummary:
    return SampleSummary(
        n=int(x.size),
        mean=float(x.mean()) if x.size else None,
        median=float(np.median(x)) if x.size else None,
        sd=float(x.std(ddof=1)) if x.size > 1 else None,
    )


def _target_chars(correct: np.ndarray, target_chars: np.ndarray) -> TargetChars:
    max_len = int(target_chars.max()) if correct.size else 0
    counts_c = np.bincount(target_chars[correct], minlength=max_len + 1)
    counts_i = np.bincount(target_chars[~correct], minlength=max_len + 1)
    return TargetChars(
        correct=_sample_summary(target_chars[correct]),
        incorrect=_sample_summary(target_chars[~correct]),
        lengths=np.arange(max_len + 1),
        counts_correct=counts_c,
        counts_incorrect=counts_i,
        probability_correct=counts_c / max(counts_c.sum(), 1),
        probability_incorrect=counts_i / max(counts_i.sum(), 1),
    )
