"""Histograms: bin edges from a count or a rule, and shared edges for two groups.

Conventions (one place for them):

* ``bins`` is always a number of BINS; a histogram with ``bins`` bins has
  ``bins + 1`` edges.
* Bins are half-open ``[e_i, e_{i+1})`` except the last, which also holds its
  right edge: numpy's convention (:func:`numpy.histogram`).
* Two groups are compared on edges computed from their pooled data, so both
  histograms have the same support and every value falls in a bin.
* Range edges (``robust=False``, the default): ``bins`` equal-width bins over
  ``[min, max]``, as numpy and the reference notebook do.
* Robust edges (``robust=True``; an integer count only, a rule keeps its own
  edges): ``bins - 2`` equal-width inner bins over the central quantile range
  ``[q(tail), q(1 - tail)]`` (:data:`ROBUST_TAIL`, quantiles by numpy's default
  linear interpolation), plus two open end bins ``[min, q(tail))`` and
  ``[q(1 - tail), max]`` that hold whatever lies beyond it, so one extreme
  value (a massive activation) cannot squeeze every other value into a few
  bins. An end bin of zero width (``min == q(tail)`` or ``max == q(1 - tail)``)
  is dropped, so edges are strictly increasing and there may be ``bins - 1``
  or ``bins - 2`` bins. Where that would leave fewer than 2 bins, the central
  range is empty (``q(tail) == q(1 - tail)``) or ``bins < 3`` (no inner bin),
  the edges are the range edges. Every value still falls in a bin.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln

from lamina.errors import InputError
from lamina.stats._validation import as_finite_1d, check_bin_count, check_positive_int
from lamina.stats.catalog import BIN_RULES, MAX_BINS, NUMPY_BIN_RULES

#: Knuth's rule searches bin counts 2..KNUTH_MAX_BINS by default.
KNUTH_MAX_BINS = 1000

#: Robust edges: the fraction of the pooled values at each end beyond the central range.
ROBUST_TAIL = 0.005


def knuth_log_posterior(values, n_bins) -> np.ndarray:
    """Knuth's log posterior of equal-width bin counts, up to an additive constant.

    For ``M`` equal-width bins over ``[min, max]`` with counts ``n_k``,
    ``log p(M | data) = n log M + lgamma(M/2) - M lgamma(1/2) - lgamma(n + M/2)
    + sum_k lgamma(n_k + 1/2)`` (K. H. Knuth, "Optimal data-based binning for
    histograms and histogram-based probability density models", Digital Signal
    Processing 95, 2019; a Jeffreys prior on the bin probabilities).

    ``values``: 1-D finite data; ``n_bins``: an int or a 1-D array of bin
    counts. Returns the log posterior (float64): a float for an int, else an
    array shaped like ``n_bins``.
    """
    x = np.sort(as_finite_1d(values, "values", min_size=1))
    counts_m = np.atleast_1d(np.asarray(n_bins, dtype=np.int64))
    if (counts_m < 1).any():
        raise InputError("Knuth's rule needs bin counts >= 1; pass positive bin counts.")
    lo, hi = _range(x)
    n = x.size
    out = np.empty(counts_m.shape, dtype=np.float64)
    for i, m in enumerate(counts_m):
        inner = np.linspace(lo, hi, int(m) + 1)[1:-1]
        # counts of [e_i, e_{i+1}) with the last bin closed: positions of the inner edges
        cuts = np.searchsorted(x, inner, side="left")
        counts = np.diff(np.concatenate(([0], cuts, [n])))
        out[i] = (
            n * np.log(m)
            + gammaln(m / 2.0)
            - m * gammaln(0.5)
            - gammaln(n + m / 2.0)
            + gammaln(counts + 0.5).sum()
        )
    return out if np.ndim(n_bins) else out[0]


def knuth_bin_count(values, *, max_bins: int = KNUTH_MAX_BINS) -> int:
    """The bin count that maximises Knuth's posterior (:func:`knuth_log_posterior`).

    Searches every count from 2 to ``min(max_bins, n)`` (one bin is excluded: it
    makes every divergence zero) and returns the smallest maximiser.
    """
    x = as_finite_1d(values, "values", min_size=2)
    max_bins = check_positive_int(max_bins, "max_bins", minimum=2)
    candidates = np.arange(2, max(2, min(max_bins, x.size)) + 1)
    logp = knuth_log_posterior(x, candidates)
    return int(candidates[int(np.argmax(logp))])


def bin_edges(values, bins: int | str = 30, robust: bool = False) -> np.ndarray:
    """Bin edges for 1-D ``values``.

    ``bins``: a number of BINS (>= 2; the result has ``bins + 1`` edges), one of
    numpy's rules (``'auto'``, ``'fd'``, ``'doane'``, ``'scott'``, ``'stone'``,
    ``'rice'``, ``'sturges'``, ``'sqrt'``) or ``'knuth'``
    (:func:`knuth_bin_count`). The edges span ``[min, max]`` of the values; if
    all values are equal the range is widened to ``[v - 0.5, v + 0.5]`` as numpy
    does. ``robust``: for a bin count, equal-width inner bins over the central
    quantile range and two open end bins (module docstring; up to 2 bins fewer);
    a rule ignores it. Returns float64 edges, shape ``(n_bins + 1,)``.
    """
    return edges_of(as_finite_1d(values, "values", min_size=1), bins, robust)


def edges_of(x: np.ndarray, bins: int | str, robust: bool = False) -> np.ndarray:
    """:func:`bin_edges` of 1-D float64 values already known to be finite.

    No copy for a count with ``robust=False``; robust edges read a copy (the quantiles).
    """
    if isinstance(bins, str):
        rule = bins.lower()
        if rule == "knuth":
            n_bins = knuth_bin_count(x) if x.size >= 2 else 2
        elif rule in NUMPY_BIN_RULES:
            edges = np.histogram_bin_edges(x, bins=rule)
            if edges.size - 1 > MAX_BINS:
                raise InputError(
                    f"bin rule {bins!r} gives {edges.size - 1} bins here (more than {MAX_BINS}); "
                    "pass an integer bin count instead."
                )
            return edges.astype(np.float64)
        else:
            raise InputError(
                f"unknown bin rule {bins!r}; pass a bin count or one of {', '.join(BIN_RULES)}."
            )
    else:
        n_bins = check_bin_count(bins)
        if n_bins > MAX_BINS:
            raise InputError(f"bins={n_bins} is more than {MAX_BINS}; pass a smaller bin count.")
        if robust:
            edges = _robust_edges(x, n_bins, ROBUST_TAIL)
            if edges is not None:
                return edges
    lo, hi = _range(x)
    return np.linspace(lo, hi, n_bins + 1)


def shared_edges(a, b, bins: int | str = 30, robust: bool = False) -> np.ndarray:
    """Bin edges computed from the pooled data of two groups (see :func:`bin_edges`)."""
    a = as_finite_1d(a, "a", min_size=1)
    b = as_finite_1d(b, "b", min_size=1)
    return bin_edges(np.concatenate((a, b)), bins, robust)


def outlier_spread(x, tail: float = ROBUST_TAIL) -> float:
    """The fraction of the range ``[min, max]`` of 1-D ``x`` outside ``[q(tail), q(1 - tail)]``.

    ``1 - (q(1 - tail) - q(tail)) / (max - min)``: 0 when nothing lies beyond the
    central quantile range (or all values are equal), near 1 when a few values
    (a share ``2 tail`` of them at most) span most of the range, which is when
    equal-width bins over ``[min, max]`` put nearly every value in a few bins.
    """
    x = as_finite_1d(x, "x", min_size=1)
    tail = _check_tail(tail)
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        return 0.0
    q_lo, q_hi = np.quantile(x, [tail, 1.0 - tail])
    return float(min(1.0, max(0.0, 1.0 - (float(q_hi) - float(q_lo)) / (hi - lo))))


def bin_indices(values, edges) -> np.ndarray:
    """The bin of each value: ``i`` with ``edges[i] <= v < edges[i+1]``, the last bin closed.

    Values outside ``[edges[0], edges[-1]]`` get -1 (below) or ``n_bins`` (above).
    Returns int64, shape of ``values``.
    """
    e = np.asarray(edges, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    idx = np.searchsorted(e, v, side="right") - 1
    n_bins = e.size - 1
    idx[v == e[-1]] = n_bins - 1
    idx[v > e[-1]] = n_bins
    return idx


def histogram_counts(values, edges) -> np.ndarray:
    """Counts per bin (int64, shape ``(len(edges) - 1,)``); values outside the edges are dropped.

    Identical to ``numpy.histogram(values, edges)[0]``.
    """
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 3 or not (np.diff(e) >= 0).all():
        raise InputError("edges must be a 1-D increasing array of at least 3 edges (2 bins).")
    idx = bin_indices(values, e)
    n_bins = e.size - 1
    inside = (idx >= 0) & (idx < n_bins)
    return np.bincount(idx[inside], minlength=n_bins).astype(np.int64)


def _range(x: np.ndarray) -> tuple[float, float]:
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def _robust_edges(x: np.ndarray, n_bins: int, tail: float) -> np.ndarray | None:
    """Robust edges (module docstring), or None where the range edges apply instead."""
    if n_bins < 3:
        return None
    q_lo, q_hi = (float(q) for q in np.quantile(x, [tail, 1.0 - tail]))
    if not q_lo < q_hi:
        return None
    lo, hi = float(x.min()), float(x.max())
    inner = np.linspace(q_lo, q_hi, n_bins - 1)
    edges = np.concatenate(([lo] if lo < q_lo else [], inner, [hi] if hi > q_hi else []))
    if edges.size < 3 or not (np.diff(edges) > 0).all():
        return None
    return edges


def _check_tail(tail) -> float:
    try:
        tail = float(tail)
    except (TypeError, ValueError) as exc:
        raise InputError(f"tail={tail!r} is not a number; pass a fraction in [0, 0.5).") from exc
    if not 0.0 <= tail < 0.5:
        raise InputError(f"tail={tail} is outside [0, 0.5); pass a fraction such as 0.005.")
    return tail
