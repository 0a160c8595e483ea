"""The 1-D k-nearest-neighbour KL estimator's core, shared by :mod:`divergence` and the engine.

Inputs are validated by the callers; see :func:`lamina.stats.knn_kl_divergence` for the
estimator and its handling of ties.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import digamma

from lamina.errors import InputError


def kth_other_value_distance(
    sorted_ref: np.ndarray, query: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each query value to its k-th nearest reference value *of a different value*.

    ``sorted_ref``: 1-D sorted reference sample; ``query``: 1-D values. Returns
    ``(distance, multiplicity)``: the k-th smallest ``|r - v|`` over the
    reference values ``r != v`` (``inf`` if fewer than k exist), and how many
    reference values equal ``v``. In 1-D the k nearest neighbours are ``t``
    values to the left and ``k - t`` to the right for some ``t``, so the k-th
    distance is ``min_t max(left_t, right_{k-t})``.
    """
    n_ref = sorted_ref.size
    lo = np.searchsorted(sorted_ref, query, side="left")
    hi = np.searchsorted(sorted_ref, query, side="right")
    best = np.full(query.shape, np.inf)
    for t in range(k + 1):
        u = k - t
        if t == 0:
            left = np.zeros(query.shape)
        else:
            j = lo - t
            left = np.where(j >= 0, query - sorted_ref[np.maximum(j, 0)], np.inf)
        if u == 0:
            right = np.zeros(query.shape)
        else:
            j = hi + u - 1
            right = np.where(j < n_ref, sorted_ref[np.minimum(j, n_ref - 1)] - query, np.inf)
        np.minimum(best, np.maximum(left, right), out=best)
    return best, hi - lo


def knn_kl_estimate(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """The Wang-Kulkarni-Verdu estimate of KL(P_x || P_y) in nats (inputs validated).

    The x values are queried in sorted order: a binary search whose keys ascend starts from
    the previous key's place, 3-4x faster than in the sample's order. Each x value's term
    goes back to its place in the sample before the mean, so the sum runs in the sample's
    order and the estimate is the same to the last bit as one computed in that order.
    """
    n, m = x.size, y.size
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    sorted_y = np.sort(y)
    rho, mult_x = kth_other_value_distance(sorted_x, sorted_x, k)
    nu, mult_y = kth_other_value_distance(sorted_y, sorted_x, k)
    if not (np.isfinite(rho).all() and np.isfinite(nu).all()):
        raise InputError(
            f"the kNN KL estimator with k={k} needs, for every x value, at least {k} other "
            "distinct x value(s) and y value(s) of a different value; use a smaller k or "
            "more (less discrete) data."
        )
    terms = np.empty(n)
    terms[order] = np.log(nu) - np.log(rho)
    # Ties: a neighbour at distance 0 is skipped and the neighbour order raised
    # by the number skipped (k_i, l_i), with WKV's digamma correction for
    # per-point orders (their adaptive estimator).
    k_i = mult_x - 1 + k
    l_i = mult_y + k
    correction = 0.0
    if not (k_i == l_i).all():
        corrections = np.empty(n)
        corrections[order] = digamma(k_i) - digamma(l_i)
        correction = np.mean(corrections)
    return float(np.mean(terms) + correction + math.log(m / (n - 1)))
