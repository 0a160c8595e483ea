"""Robust bin edges computed here, independently of lamina, from numpy's quantiles.

The convention of :mod:`lamina.stats.histograms`: ``bins - 2`` equal-width inner
bins over ``[q(tail), q(1 - tail)]`` of the pooled values, and an end bin on
each side that reaches the minimum / maximum (dropped where it would be empty
of width).
"""

from __future__ import annotations

import numpy as np

TAIL = 0.005


def robust_edges(values, bins: int, tail: float = TAIL) -> np.ndarray:
    """The robust edges of ``values`` for ``bins`` bins (bins >= 3, a central range > 0)."""
    v = np.asarray(values, dtype=np.float64)
    q_lo, q_hi = np.quantile(v, [tail, 1.0 - tail])
    inner = list(np.linspace(q_lo, q_hi, bins - 1))
    low = [v.min()] if v.min() < q_lo else []
    high = [v.max()] if v.max() > q_hi else []
    return np.array(low + inner + high, dtype=np.float64)
