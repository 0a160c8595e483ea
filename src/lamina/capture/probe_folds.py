"""Cross-fitting folds: contiguous blocks of the text, never tokens shuffled across a passage.

Neighbouring tokens are dependent, so a probe's folds are whole units of the plan
in plan order (documents one after the other, text order inside):

* ``document``: with at least ``K`` documents that have scored tokens, whole
  documents in ``K`` contiguous groups;
* ``window``: else, with at least ``K`` windows, whole windows (forward passes)
  in ``K`` contiguous groups;
* ``span``: else (one ``middle`` window), row ``i`` of ``n`` is in fold
  ``floor(K * i / n)``.

Groups of units are nearly equal in scored tokens: with ``C_j`` the scored
tokens before unit ``j`` and ``N`` in all, fold ``k`` (``k = 1 .. K-1``) starts at
the unit boundary ``j`` nearest to ``k N / K`` (the first of two equally near),
after fold ``k - 1``'s start and leaving a unit for each later fold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from lamina.capture.plan import ExtractionPlan
from lamina.errors import InputError

FOLD_UNITS = ("document", "window", "span")


@dataclasses.dataclass(frozen=True)
class Folds:
    """The fold of every row of a plan (plan order), how folds were cut, and their count."""

    labels: np.ndarray  # int16, one per scored row
    unit: str
    k: int

    def of_shards(self, plan: ExtractionPlan) -> dict[str, np.ndarray]:
        """The folds of each shard's rows, by shard key."""
        out, start = {}, 0
        for shard in plan.shards:
            out[shard.key] = self.labels[start : start + shard.n_scored]
            start += shard.n_scored
        return out

    def span(self, plan: ExtractionPlan) -> int:
        """The most folds one shard's rows cover (at least 1)."""
        return max([len(np.unique(f)) for f in self.of_shards(plan).values()] or [1])


def group_units(sizes: Sequence[int], k: int) -> np.ndarray:
    """The fold of each of ``len(sizes) >= k`` units of ``sizes`` scored tokens (module docstring)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    n_units = len(sizes)
    if n_units < k:
        raise ValueError(f"{n_units} units cannot make {k} folds")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    total = float(bounds[-1])
    starts = [0]
    for fold in range(1, k):
        low, high = starts[-1] + 1, n_units - (k - fold)
        candidates = bounds[low : high + 1]
        starts.append(low + int(np.argmin(np.abs(candidates - fold * total / k))))
    return (np.searchsorted(np.asarray(starts), np.arange(n_units), side="right") - 1).astype(
        np.int16
    )


def assign_folds(plan: ExtractionPlan, k: int) -> Folds:
    """The folds of a plan's rows: by documents, else windows, else equal spans of rows."""
    n_rows = plan.n_scored
    if n_rows < k:
        raise InputError(
            f"a probe with {k} folds needs at least {k} scored tokens, and the plan scores "
            f"{n_rows}; give a longer text or fewer --probe-folds."
        )
    per_doc: dict[int, int] = {}
    for shard in plan.shards:
        per_doc[shard.doc] = per_doc.get(shard.doc, 0) + shard.n_scored
    docs = [(doc, n) for doc, n in per_doc.items() if n > 0]
    windows = [w for w in plan.windows if w.n_scored > 0]
    if len(docs) >= k:
        unit = "document"
        fold_of_doc = dict(
            zip([d for d, _ in docs], group_units([n for _, n in docs], k), strict=True)
        )
        labels = np.concatenate(
            [np.full(s.n_scored, fold_of_doc.get(s.doc, 0), dtype=np.int16) for s in plan.shards]
        )
    elif len(windows) >= k:
        unit = "window"
        folds = group_units([w.n_scored for w in windows], k)
        labels = np.repeat(folds, [w.n_scored for w in windows]).astype(np.int16)
    else:
        unit = "span"
        labels = (k * np.arange(n_rows, dtype=np.int64) // n_rows).astype(np.int16)
    return Folds(labels, unit, k)
