"""Divergences between two distributions: histogram KL and JS, the kNN KL estimator, KS, W1.

Units: every divergence is in nats (``base=None``), or in units of
``log(base)`` (``base=2``: bits). Direction: ``kl_divergence(p, q)`` is
``KL(p || q) = sum_i p_i log(p_i / q_i)``; with lamina's labels (True =
correct = P) the histogram statistic ``"kl"`` is KL(correct || incorrect).

Empty bins are never smoothed silently: KL is ``inf`` where ``q`` has an empty
bin that ``p`` has not, unless a ``pseudocount`` is asked for; JS is always
finite (``<= ln 2`` nats, ``<= 1`` bit).
"""

from __future__ import annotations

import numpy as np
import scipy.stats
from scipy.special import rel_entr

from lamina.errors import InputError
from lamina.stats._knn import knn_kl_estimate
from lamina.stats._validation import (
    check_group,
    check_positive_int,
    check_pseudocount,
    log_base_divisor,
)


def _distribution(values, name: str) -> np.ndarray:
    """A 1-D array of non-negative finite weights (counts or probabilities)."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be an array of counts or probabilities ({exc}).") from exc
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"{name} has shape {arr.shape}; pass a 1-D histogram (one value per bin).")
    if not np.isfinite(arr).all():
        raise InputError(f"{name} holds NaN or inf; pass finite counts or probabilities.")
    if (arr < 0).any():
        raise InputError(f"{name} holds negative values; pass counts or probabilities (>= 0).")
    return arr


def _pair(p, q) -> tuple[np.ndarray, np.ndarray]:
    p = _distribution(p, "p")
    q = _distribution(q, "q")
    if p.shape != q.shape:
        raise InputError(
            f"p has {p.size} bins and q has {q.size}; histograms to compare need the same edges."
        )
    return p, q


def _normalise(weights: np.ndarray, name: str) -> np.ndarray:
    total = weights.sum()
    if total <= 0:
        raise InputError(f"{name} sums to 0; a histogram needs at least one count.")
    return weights / total


def kl_divergence(p, q, *, base=None, pseudocount: float = 0.0) -> float:
    """KL(p || q) between two histograms on the same bins.

    ``p``, ``q``: 1-D counts or probabilities (each is normalised to sum 1).
    ``pseudocount``: added to every bin of both histograms before normalising,
    in the units given (counts for counts); 0 (the default) means no smoothing,
    so the result is ``inf`` wherever ``q`` is empty and ``p`` is not.
    ``base``: None for nats, 2 for bits. Returns a float >= 0 or ``inf``.
    """
    p, q = _pair(p, q)
    c = check_pseudocount(pseudocount)
    p = _normalise(p + c, "p")
    q = _normalise(q + c, "q")
    return float(rel_entr(p, q).sum() / log_base_divisor(base))


def js_divergence(p, q, *, base=None) -> float:
    """Jensen-Shannon divergence between two histograms on the same bins.

    ``JS = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``, after
    normalising each of ``p``, ``q`` (counts or probabilities) to sum 1. Always
    finite: ``0 <= JS <= ln 2`` nats (``<= 1`` bit with ``base=2``), zero iff
    the normalised histograms are equal. This is the square of
    ``scipy.spatial.distance.jensenshannon``.
    """
    p, q = _pair(p, q)
    p = _normalise(p, "p")
    q = _normalise(q, "q")
    m = 0.5 * (p + q)
    js = 0.5 * rel_entr(p, m).sum() + 0.5 * rel_entr(q, m).sum()
    return float(max(js, 0.0) / log_base_divisor(base))


# ----------------------------------------------------------------------------- kNN


def knn_kl_divergence(x, y, *, k: int = 1, base=None) -> float:
    """k-nearest-neighbour estimate of KL(P || Q) from 1-D samples ``x ~ P`` and ``y ~ Q``.

    Wang, Kulkarni & Verdu (2009), "Divergence estimation for multidimensional
    densities via k-nearest-neighbor distances", IEEE Trans. Inf. Theory 55(5),
    in one dimension::

        D = mean_i log(nu_k(i) / rho_k(i)) + log(m / (n - 1))

    where ``rho_k(i)`` is the distance from ``x_i`` to its k-th nearest neighbour
    among the other ``x`` and ``nu_k(i)`` to its k-th nearest neighbour in ``y``
    (``n = len(x)``, ``m = len(y)``). Asymptotically unbiased and consistent;
    it can be slightly negative when P = Q.

    Ties (repeated values, e.g. rounded data) would give zero distances: a
    neighbour with the same value as ``x_i`` is skipped and the neighbour order
    is raised by the number skipped, ``k_i = k + #(other x equal to x_i)`` and
    ``l_i = k + #(y equal to x_i)``, with the estimator's bias correction
    ``mean_i [psi(k_i) - psi(l_i)]`` (WKV's estimator with per-point orders).
    On continuous data this is exactly the estimator above.

    ``base``: None for nats, 2 for bits. Needs ``len(x) >= k + 1``, ``len(y) >= k``.
    """
    k = check_positive_int(k, "k")
    x = check_group(x, "x", min_size=k + 1)
    y = check_group(y, "y", min_size=k)
    return knn_kl_estimate(x, y, k) / log_base_divisor(base)


# ----------------------------------------------------------------------------- binless


def ks_statistic(x, y) -> float:
    """Two-sample Kolmogorov-Smirnov statistic ``D = max |F_x - F_y|`` (scipy's ks_2samp)."""
    x = check_group(x, "x", min_size=1)
    y = check_group(y, "y", min_size=1)
    return float(scipy.stats.ks_2samp(x, y, method="asymp").statistic)


def wasserstein(x, y) -> float:
    """Wasserstein-1 (earth mover's) distance between two 1-D samples, in the units of the data."""
    x = check_group(x, "x", min_size=1)
    y = check_group(y, "y", min_size=1)
    return float(scipy.stats.wasserstein_distance(x, y))
