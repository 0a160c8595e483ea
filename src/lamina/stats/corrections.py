"""Permutation p-values and corrections for testing many layers at once.

p-value convention (one place for it)
-------------------------------------
Randomized test with ``m`` random labellings, none of which is the observed
one: ``p = (b + 1) / (m + 1)`` where ``b`` counts the null statistics at least
as extreme as the observed one (Phipson & Smyth 2010; :func:`scipy.stats.permutation_test`
uses the same). ``p`` is never 0; its floor is ``1 / (m + 1)``.

Exact test, where the null holds every distinct labelling (the observed one
among them): ``p = b / M`` with ``M`` labellings, so ``p >= 1 / M``.

"At least as extreme": for ``alternative='greater'`` ``null >= observed``; for
``'less'`` ``null <= observed``; for ``'two-sided'`` ``|null - center| >=
|observed - center|`` where ``center`` is the statistic's value under no
effect (0 for a mean difference or Hedges' g, 1/2 for AUROC). Comparisons
allow a relative tolerance of ``100 * eps * |observed|`` so that labellings
whose statistic equals the observed one up to rounding count as ties, as
scipy does.
"""

from __future__ import annotations

import math

import numpy as np

from lamina.errors import InputError
from lamina.stats.catalog import ALTERNATIVES

_RELATIVE_TOLERANCE = 100 * np.finfo(np.float64).eps


def check_alternative(alternative: str) -> None:
    """Raise :class:`InputError` unless ``alternative`` is one of :data:`ALTERNATIVES`."""
    if alternative not in ALTERNATIVES:
        raise InputError(
            f"alternative={alternative!r} is unknown; pass 'greater', 'less' or 'two-sided'."
        )


def _as_pvalues(p) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1:
        raise InputError(f"p-values have shape {arr.shape}; pass a 1-D array.")
    finite = arr[~np.isnan(arr)]
    if ((finite < 0) | (finite > 1)).any():
        raise InputError("p-values must lie in [0, 1]; pass raw p-values.")
    return arr


def count_at_least_as_extreme(
    observed, null, alternative: str = "greater", *, center: float = 0.0
) -> np.ndarray:
    """``b``: for each column, how many null rows are at least as extreme as the observed value.

    ``observed``: (L,); ``null``: (m, L). Returns int64 (L,).
    """
    check_alternative(alternative)
    obs = np.asarray(observed, dtype=np.float64)
    nul = np.asarray(null, dtype=np.float64)
    if alternative == "two-sided":
        obs = np.abs(obs - center)
        nul = np.abs(nul - center)
    gamma = np.where(np.isfinite(obs), _RELATIVE_TOLERANCE * np.abs(obs), 0.0)
    with np.errstate(invalid="ignore"):
        hits = nul <= obs + gamma if alternative == "less" else nul >= obs - gamma
    return hits.sum(axis=0).astype(np.int64)


def permutation_pvalues(
    observed,
    null,
    alternative: str = "greater",
    *,
    center: float = 0.0,
    includes_observed: bool = False,
) -> np.ndarray:
    """Per-column permutation p-values: ``(b + 1) / (m + 1)``, or ``b / M`` for an exact null.

    ``observed``: (L,); ``null``: (m, L) statistics of the random labellings
    (``includes_observed=False``) or of every labelling, the observed one
    included (``includes_observed=True``, the exact test).
    """
    nul = np.atleast_2d(np.asarray(null, dtype=np.float64))
    b = count_at_least_as_extreme(observed, nul, alternative, center=center)
    m = nul.shape[0]
    if includes_observed:
        return b / m
    return (b + 1.0) / (m + 1.0)


def maxstat_pvalues(
    observed,
    null,
    alternative: str = "greater",
    *,
    center: float = 0.0,
    includes_observed: bool = False,
) -> np.ndarray:
    """Family-wise (max-statistic) p-values across columns, as MNE-Python does.

    Each labelling contributes the most extreme statistic over all columns
    (``max`` for ``'greater'``, ``min`` for ``'less'``, ``max |T - center|`` for
    ``'two-sided'``); column ``l``'s p-value is the fraction of that maximum
    distribution at least as extreme as its observed statistic, with the same
    ``(b + 1) / (m + 1)`` (or exact ``b / M``) convention. Needs the null rows to
    be shared labellings across columns. Controls the family-wise error rate in
    the strong sense. The raw statistic is maximised, so columns whose null is
    wider weigh more.
    """
    check_alternative(alternative)
    nul = np.atleast_2d(np.asarray(null, dtype=np.float64))
    if alternative == "greater":
        extreme = nul.max(axis=1)
    elif alternative == "less":
        extreme = nul.min(axis=1)
    else:
        extreme = np.abs(nul - center).max(axis=1) + center
    obs = np.asarray(observed, dtype=np.float64)
    b = count_at_least_as_extreme(
        obs, np.broadcast_to(extreme[:, None], (extreme.size, obs.size)), alternative, center=center
    )
    m = nul.shape[0]
    if includes_observed:
        return b / m
    return (b + 1.0) / (m + 1.0)


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), same order as ``p``.

    ``p_adj(i) = max_{j <= i} min(1, (L - j + 1) p_(j))`` over the sorted p-values.
    NaN p-values are left NaN and not counted in ``L``.
    """
    arr = _as_pvalues(p)
    out = np.full(arr.shape, np.nan)
    ok = ~np.isnan(arr)
    q = arr[ok]
    if q.size:
        order = np.argsort(q, kind="stable")
        factors = q.size - np.arange(q.size)
        adjusted = np.minimum(1.0, np.maximum.accumulate(factors * q[order]))
        res = np.empty(q.size)
        res[order] = adjusted
        out[ok] = res
    return out


def fdr_bh(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), same order as ``p``.

    ``p_adj(i) = min_{j >= i} min(1, L p_(j) / j)`` over the sorted p-values
    (as :func:`scipy.stats.false_discovery_control` with ``method='bh'``).
    NaN p-values are left NaN and not counted in ``L``.
    """
    arr = _as_pvalues(p)
    out = np.full(arr.shape, np.nan)
    ok = ~np.isnan(arr)
    q = arr[ok]
    if q.size:
        order = np.argsort(q, kind="stable")
        ranks = np.arange(1, q.size + 1)
        scaled = q[order] * q.size / ranks
        adjusted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
        res = np.empty(q.size)
        res[order] = adjusted
        out[ok] = res
    return out


def resolution_note(
    correction: str, n_tests: int, n_permutations: int, alpha: float, *, exact: bool = False
) -> str | None:
    """A sentence when ``n_permutations`` cannot reach ``alpha`` under ``correction``, else None.

    The smallest permutation p-value is ``1 / (m + 1)`` (``1 / M`` exact). Holm's first
    step needs it at most ``alpha / L``; every other correction (and none) at most ``alpha``.
    """
    floor = 1.0 / n_permutations if exact else 1.0 / (n_permutations + 1)
    needed = alpha / n_tests if correction == "holm" else alpha
    if floor <= needed or n_tests < 1:
        return None
    if correction == "holm":
        enough = math.ceil(n_tests / alpha)
        return (
            f"Holm's correction cannot reject any of the {n_tests} tests with "
            f"{n_permutations} permutations: the smallest p-value, {floor:.2g}, is above "
            f"alpha / {n_tests} = {needed:.2g}; use at least {enough} permutations."
        )
    enough = math.ceil(1.0 / alpha)
    return (
        f"No test can reach alpha = {alpha:g} with {n_permutations} permutations (the smallest "
        f"p-value is {floor:.2g}); use at least {enough} permutations."
    )
