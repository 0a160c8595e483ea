"""Effect sizes a reader can interpret, and bootstrap confidence intervals for them.

Every function takes two 1-D samples ``a`` (the first group: with lamina's
labels, the correct tokens) and ``b`` (the second group) and measures ``a``
relative to ``b``: positive when ``a`` is larger.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np
import scipy.stats
from scipy.special import gammaln, ndtr, ndtri

from lamina.errors import InputError
from lamina.stats._validation import check_group, check_positive_int, check_seed


def mean_difference(a, b) -> float:
    """``mean(a) - mean(b)``, in the units of the data (the reference study's panel C)."""
    a = check_group(a, "a", min_size=1)
    b = check_group(b, "b", min_size=1)
    return float(a.mean() - b.mean())


def hedges_correction(df: float) -> float:
    """Hedges' exact small-sample factor ``J(df) = Gamma(df/2) / (sqrt(df/2) Gamma((df-1)/2))``.

    ``J`` is about ``1 - 3 / (4 df - 1)``; it tends to 1 as ``df`` grows.
    """
    if df <= 1:
        raise InputError(f"Hedges' correction needs more than 1 degree of freedom, not {df}.")
    return math.exp(gammaln(df / 2.0) - gammaln((df - 1.0) / 2.0)) / math.sqrt(df / 2.0)


def hedges_g(a, b) -> float:
    """Hedges' g: the standardised mean difference with the small-sample correction.

    ``g = J(n_a + n_b - 2) * (mean(a) - mean(b)) / s_pooled`` with
    ``s_pooled**2 = ((n_a - 1) var(a) + (n_b - 1) var(b)) / (n_a + n_b - 2)``
    (sample variances, ``ddof=1``) and ``J`` from :func:`hedges_correction`
    (Hedges 1981). Dimensionless. Needs at least 2 values per group and some
    spread in the pooled data.
    """
    a = check_group(a, "a", min_size=2)
    b = check_group(b, "b", min_size=2)
    df = a.size + b.size - 2
    pooled = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / df
    if pooled <= 0:
        raise InputError(
            "Hedges' g is undefined when both groups are constant (zero pooled variance); "
            "use mean_difference instead."
        )
    return float(hedges_correction(df) * (a.mean() - b.mean()) / math.sqrt(pooled))


#: Standard normal 97.5th percentile, for 95% intervals.
Z_975 = 1.959963984540054


def hedges_g_se(g: float, n1: int, n2: int) -> float:
    """Large-sample standard error of Hedges' g (Hedges & Olkin 1985, eq. 5.8.13)."""
    return math.sqrt((n1 + n2) / (n1 * n2) + g * g / (2.0 * (n1 + n2)))


def hedges_g_ci(g: float, n1: int, n2: int) -> tuple[float, float]:
    """The 95% normal-approximation interval ``g -/+ 1.96 SE(g)``."""
    se = hedges_g_se(g, n1, n2)
    return g - Z_975 * se, g + Z_975 * se


def auroc(a, b) -> float:
    """Area under the ROC curve: ``P(A > B) + P(A = B) / 2`` for random ``A`` from a, ``B`` from b.

    Equals the Mann-Whitney ``U`` of ``a`` divided by ``n_a n_b`` (ties count
    1/2), computed from midranks of the pooled data. 0.5 means no separation;
    1 means every value of ``a`` exceeds every value of ``b``.
    """
    a = check_group(a, "a", min_size=1)
    b = check_group(b, "b", min_size=1)
    ranks = scipy.stats.rankdata(np.concatenate((a, b)))
    u = ranks[: a.size].sum() - a.size * (a.size + 1) / 2.0
    return float(u / (a.size * b.size))


EFFECTS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "mean_difference": mean_difference,
    "hedges_g": hedges_g,
    "auroc": auroc,
}


def _resolve_statistic(statistic) -> Callable[[np.ndarray, np.ndarray], float]:
    if callable(statistic):
        return statistic
    if isinstance(statistic, str):
        from lamina.stats import two_sample

        named = {
            **EFFECTS,
            "ks": two_sample.ks_statistic,
            "wasserstein": two_sample.wasserstein,
            "knn_kl": two_sample.knn_kl_divergence,
        }
        if statistic in named:
            return named[statistic]
    raise InputError(
        f"statistic={statistic!r} is not a callable f(a, b) -> float nor one of "
        "mean_difference, hedges_g, auroc, ks, wasserstein, knn_kl; pass one of those."
    )


def bootstrap_ci(
    statistic,
    a,
    b,
    *,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
) -> tuple[float, float]:
    """Two-sided bootstrap confidence interval of a two-sample statistic.

    ``statistic``: a callable ``f(a, b) -> float`` or a name (``'mean_difference'``,
    ``'hedges_g'``, ``'auroc'``, ``'ks'``, ``'wasserstein'``, ``'knn_kl'``).
    Each resample draws ``len(a)`` values from ``a`` and ``len(b)`` from ``b``
    with replacement, independently (a stratified two-sample bootstrap), from
    ``numpy.random.default_rng(seed)``.

    ``method='percentile'``: the ``(1 - level)/2`` and ``(1 + level)/2``
    quantiles of the bootstrap distribution. ``method='bca'``: Efron's
    bias-corrected and accelerated interval (Efron & Tibshirani 1993, 14.3),
    with the acceleration from a jackknife over each sample in turn, as
    :func:`scipy.stats.bootstrap` does; the jackknife costs ``len(a) + len(b)``
    extra evaluations of the statistic.
    """
    func = _resolve_statistic(statistic)
    a = check_group(a, "a", min_size=2)
    b = check_group(b, "b", min_size=2)
    n_resamples = check_positive_int(n_resamples, "n_resamples", minimum=2)
    seed = check_seed(seed)
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise InputError(
            f"level={level!r} is invalid; pass a confidence level in (0, 1), e.g. 0.95."
        )
    if method not in ("percentile", "bca"):
        raise InputError(f"method={method!r} is unknown; pass 'percentile' or 'bca'.")

    rng = np.random.default_rng(seed)
    boot = np.empty(n_resamples)
    for i in range(n_resamples):
        ia = rng.integers(0, a.size, a.size)
        ib = rng.integers(0, b.size, b.size)
        boot[i] = func(a[ia], b[ib])
    alpha = (1.0 - float(level)) / 2.0
    if method == "percentile":
        lo, hi = np.percentile(boot, [100 * alpha, 100 * (1 - alpha)])
        return float(lo), float(hi)

    observed = func(a, b)
    below = ((boot < observed).sum() + (boot <= observed).sum()) / (2.0 * n_resamples)
    z0 = ndtri(below)
    nums, dens = 0.0, 0.0
    for j, sample in enumerate((a, b)):
        jack = np.empty(sample.size)
        for i in range(sample.size):
            left_out = np.delete(sample, i)
            jack[i] = func(left_out, b) if j == 0 else func(a, left_out)
        u = (sample.size - 1) * (jack.mean() - jack)
        nums += (u**3).sum() / sample.size**3
        dens += (u**2).sum() / sample.size**2
    accel = nums / (6.0 * dens**1.5) if dens > 0 else 0.0
    bounds = []
    for z in (ndtri(alpha), -ndtri(alpha)):
        shift = z0 + z
        bounds.append(float(ndtr(z0 + shift / (1.0 - accel * shift))))
    if not all(np.isfinite(bounds)):
        raise InputError(
            "the BCa interval is undefined here (the bootstrap distribution is degenerate); "
            "use method='percentile'."
        )
    lo, hi = np.percentile(boot, [100 * bounds[0], 100 * bounds[1]])
    return float(lo), float(hi)


def standardised_mean_difference(x, labels) -> float:
    """Balance of a covariate: ``(mean_True - mean_False) / sqrt((var_True + var_False) / 2)``.

    The standardised mean difference of the propensity-score literature (Austin 2009;
    sample variances, ddof 1). NaN when the covariate is constant in both classes.
    """
    arr = np.asarray(x, dtype=np.float64)
    lab = np.asarray(labels, dtype=bool)
    spread = math.sqrt((arr[lab].var(ddof=1) + arr[~lab].var(ddof=1)) / 2.0)
    diff = arr[lab].mean() - arr[~lab].mean()
    return float(diff / spread) if spread > 0 else math.nan
