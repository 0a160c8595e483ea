"""The notebook compatibility mode's versions of the parts (``--compat notebook``).

The reference notebook computes its histograms in float32 with
``torch.linspace(min, max, bins + 1)`` edges, its KL with ``F.kl_div(...,
reduction='batchmean')`` and its own symmetric KL; these helpers give the parts
exactly those numbers (see :mod:`lamina.stats._notebook` for the flaws they keep).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lamina.errors import InputError
from lamina.stats._notebook import (
    notebook_bin_indices,
    notebook_kl_div,
    notebook_linspace,
    notebook_symmetric_kl,
)
from lamina.stats.catalog import LN2
from lamina.study.options import NOTEBOOK_STATISTIC, notebook_windows
from lamina.study.records import BinSweep

KL_NOTE = (
    "the notebook's F.kl_div(log(q + 1e-15), p, reduction='batchmean'), i.e. KL(p || q) "
    "divided by the number of bins (its c2i is kl_incorrect_correct, its i2c "
    "kl_correct_incorrect); js is its symmetric_KL"
)


def check_table(meta: Mapping[str, Any]) -> None:
    """Refuse the notebook mode on a table not captured as the notebook did."""
    windows = meta.get("windows", {})
    context = meta.get("model", {}).get("context_length")
    expected = notebook_windows(context) if context else None
    if (
        expected is None
        or windows.get("mode") != expected.mode
        or windows.get("window") != expected.window
        or windows.get("bos")
    ):
        raise InputError(
            "--compat notebook needs a table captured with the notebook's window (the model's "
            f"context of {context} tokens from the middle of the text), but this one used "
            f"{windows.get('mode')!r} windows of {windows.get('window')} tokens; re-extract "
            "with `lamina run --compat notebook`."
        )
    if meta.get("text", {}).get("boilerplate") == "stripped":
        raise InputError(
            "--compat notebook needs the text with its Gutenberg boilerplate kept, as the "
            "notebook read it; re-extract with `lamina run --compat notebook`."
        )


def histograms(
    x: np.ndarray, labels: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(edges, counts of correct, counts of incorrect) as the notebook's float32 torch code."""
    x32 = x.astype(np.float32)
    edges32 = notebook_linspace(x32.min(), x32.max(), n_bins + 1)
    counts_c, counts_i = counts_on(x, labels, edges32)
    return edges32.astype(np.float64), counts_c, counts_i


def counts_on(
    x: np.ndarray, labels: np.ndarray, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The classes' counts on ``edges`` with ``torch.histogram``'s float32 binning."""
    index = notebook_bin_indices(x.astype(np.float32), edges.astype(np.float32))
    n_bins = edges.size - 1
    return (
        np.bincount(index[labels], minlength=n_bins),
        np.bincount(index[~labels], minlength=n_bins),
    )


def divergences_at_bins(
    x: np.ndarray, labels: np.ndarray, edges: np.ndarray
) -> tuple[float, float, float, str]:
    """(KL(C||I), KL(I||C), symmetric KL, note) as the notebook computes them at ``edges``."""
    counts_c, counts_i = counts_on(x, labels, edges)
    # The notebook's c2i is F.kl_div(log(yC), yI): KL(incorrect || correct) / n_bins.
    kl_ci = notebook_kl_div(counts_c, counts_i)
    kl_ic = notebook_kl_div(counts_i, counts_c)
    js = float(notebook_symmetric_kl(x[labels], x[~labels], nbins=edges.size))
    return kl_ci, kl_ic, js, KL_NOTE


def sweep(x_correct: np.ndarray, x_incorrect: np.ndarray, lo: int, hi: int) -> BinSweep:
    """The notebook's sweep: ``symmetric_KL(C, I, nbins)`` for nbins (EDGES) lo..hi; no null."""
    edges = list(range(lo, hi + 1))
    values = np.array([notebook_symmetric_kl(x_correct, x_incorrect, nbins=e) for e in edges])
    none = [None] * len(edges)
    return BinSweep(
        bins=[e - 1 for e in edges],
        edges=edges,
        statistic=NOTEBOOK_STATISTIC,
        js_nats=values,
        js_bits=values / LN2,
        null_mean_bits=none,
        null_q025_bits=none,
        null_q975_bits=none,
        standardised=none,
        pvalue=none,
        n_permutations=0,
    )
