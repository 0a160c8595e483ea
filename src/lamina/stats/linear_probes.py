"""Linear probes of correctness, cross-fitted, and the statistics of their held-out scores.

Part 8 asks whether a layer's vectors carry correctness in their *direction*, where the
norm alone may carry nothing. A linear probe learns a direction ``w`` from labelled vectors
and scores a vector ``x`` by its projection. Scored on the vectors it learned from, a probe
always finds something (with ``d`` dimensions and noise it fits the noise), so every score is
**cross-fitted**: the rows are cut into ``K`` folds (contiguous blocks of the text, never
shuffled, so that neighbouring dependent tokens rarely straddle a training and a test fold),
and a row of fold ``f`` is scored by the direction learned on the other folds only. The
held-out scores are then as honest as a held-out test set, for every row.

Per fold ``f`` (training rows: the other folds, finite rows only), with ``m1`` / ``m0`` the
means of the correct / incorrect training rows:

- ``diffmeans``: ``w_f = m1 - m0``;
- ``lda``: ``w_f = Sigma_f^-1 (m1 - m0)``, ``Sigma_f`` the pooled within-class covariance
  ``sum over both classes of (x - m_class)(x - m_class)' / (n - 2)`` shrunk toward
  ``(trace(Sigma_f) / d) I`` by the Ledoit-Wolf intensity (:func:`ledoit_wolf_shrinkage`)
  of the class-centred training rows;

and the score is ``(x - (m1 + m0) / 2) . w_f``: larger = more "correct"-like. A row with a
non-finite entry gets a NaN score and trains nothing. This is the reference the extraction
(which computes the scores on the model's vectors, ``docs/token-table.md``) is tested against.

Cross-fitted scores are not fixed. Every fold's probe was trained on the other folds' tokens,
so under no effect the held-out AUROCs of the ``K`` folds are correlated: fold ``f``'s AUROC
moves with ``d_f . w_f``, ``d_f`` the class difference of its own vectors and ``w_f`` the sum of
the other folds' ``d_g``, so the AUROCs of folds ``f`` and ``g`` share the term ``d_f . d_g`` and
correlate by ``1 / (K - 1)``; their mean then has ``1 + (K - 1) / (K - 1) = 2`` times the
variance of independent folds, whatever ``K`` and the dimension (simulated: 1.8-2.3 for 1 to 256
dimensions, with and without serial dependence; Bengio & Grandvalet 2004 on the variance of
K-fold estimates). A shift of the labels or a bootstrap of the tokens holds the scores, hence the
directions, fixed and sees only the independent part: their null is too narrow by sqrt(2) (a
one-sided 5% test rejected 13% of null layers). So every test of held-out scores widens its
null about its mean by ``sqrt(CROSSFIT_VARIANCE)`` (:func:`widened_permutation`,
:func:`widened_conditional`) and every interval its half-width (:func:`widened_interval`).
Under an effect the factor lies between 1 (a well-determined direction) and 2, so there the
intervals are conservative.

The statistics of held-out scores (``s`` one column per layer, in series order):
:func:`block_auroc` (AUROC with a block-bootstrap interval, as
:mod:`lamina.stats.discrimination` computes it), :func:`oriented_by_fold` (a value's sign
chosen out of fold, so that a one-dimensional score such as the log-norm is oriented toward
correct as honestly as a probe) and :func:`saturation_index` (where decodability saturates).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lamina.errors import InputError
from lamina.stats._result import PermutationResult
from lamina.stats.conditional import ConditionalTest
from lamina.stats.corrections import fdr_bh, holm, maxstat_pvalues, permutation_pvalues
from lamina.stats.discrimination import placements
from lamina.stats.resampling import Blocks, bootstrap_interval, resampled_sums

METHODS = ("diffmeans", "lda")
SHRINKAGES = ("ledoit-wolf", "none")
#: The variance of a statistic of cross-fitted scores, linear in the labels (an AUROC, a
#: correlation), under no effect, over what relabelling or resampling with the scores held
#: fixed gives (module docstring, "Cross-fitted scores are not fixed").
CROSSFIT_VARIANCE = 2.0


def ledoit_wolf_shrinkage(z) -> float:
    """The Ledoit-Wolf (2004) shrinkage intensity of the rows ``z`` (n, d), taken as centred.

    With ``S = z'z / n`` and ``mu = trace(S) / d``: ``beta = (sum_k |z_k|^4 / n - |S|_F^2)
    / (d n)``, ``delta = |S - mu I|_F^2 / d``, intensity ``min(beta, delta) / delta`` (0 when
    ``beta`` is 0), in [0, 1]; ``scikit-learn``'s ``ledoit_wolf_shrinkage(z,
    assume_centered=True)``.
    """
    x = np.asarray(z, dtype=np.float64)
    n, d = x.shape
    if n == 0 or d == 0:
        return 0.0
    if d == 1:
        return 0.0  # a 1-D covariance is its own target
    s = (x.T @ x) / n
    mu = float(np.trace(s)) / d
    squared_norms = np.einsum("ij,ij->i", x, x)
    frob = float(np.sum(s * s))
    beta = (float(np.sum(squared_norms**2)) / n - frob) / (d * n)
    delta = (frob - 2.0 * mu * float(np.trace(s)) + d * mu * mu) / d
    beta = min(beta, delta)
    return 0.0 if beta <= 0 or delta <= 0 else float(beta / delta)


@dataclasses.dataclass(frozen=True)
class Direction:
    """One probe: ``direction`` (d,), ``midpoint`` (d,) = (m1 + m0) / 2, the training
    class counts and the shrinkage intensity (``lda``; None for ``diffmeans``)."""

    direction: np.ndarray
    midpoint: np.ndarray
    n_correct: int
    n_incorrect: int
    shrinkage: float | None

    def score(self, x) -> np.ndarray:
        """``(x - midpoint) . direction`` of each row of ``x`` (n, d): (n,)."""
        return (np.asarray(x, dtype=np.float64) - self.midpoint) @ self.direction


def probe_direction(
    x, labels, method: str = "diffmeans", shrinkage: str | float = "ledoit-wolf"
) -> Direction:
    """The probe learned from rows ``x`` (n, d), finite, and bool ``labels`` (n,).

    ``method`` is ``diffmeans`` or ``lda``; ``shrinkage`` (``lda`` only) is
    ``"ledoit-wolf"``, ``"none"`` or a fixed intensity in [0, 1]. NaN direction when a
    class is empty (or, for ``lda``, when fewer than 3 rows leave no covariance).
    """
    _check_method(method, shrinkage)
    x = np.asarray(x, dtype=np.float64)
    lab = np.asarray(labels, dtype=bool)
    n1, n0 = int(lab.sum()), int((~lab).sum())
    d = x.shape[1]
    if n1 == 0 or n0 == 0 or (method == "lda" and n1 + n0 < 3):
        nan = np.full(d, np.nan)
        return Direction(nan, nan, n1, n0, None)
    m1, m0 = x[lab].mean(axis=0), x[~lab].mean(axis=0)
    mean_difference = m1 - m0
    if method == "diffmeans":
        return Direction(mean_difference, (m1 + m0) / 2.0, n1, n0, None)
    z = x - np.where(lab[:, None], m1, m0)
    sigma = (z.T @ z) / (n1 + n0 - 2)
    if shrinkage == "ledoit-wolf":
        intensity = ledoit_wolf_shrinkage(z)
    elif shrinkage == "none":
        intensity = 0.0
    else:
        intensity = float(shrinkage)
    target = float(np.trace(sigma)) / d
    shrunk = (1.0 - intensity) * sigma + intensity * target * np.eye(d)
    try:
        direction = np.linalg.solve(shrunk, mean_difference)
    except np.linalg.LinAlgError:  # singular without shrinkage: the least-squares solution
        direction = np.linalg.lstsq(shrunk, mean_difference, rcond=None)[0]
    return Direction(direction, (m1 + m0) / 2.0, n1, n0, intensity)


@dataclasses.dataclass(frozen=True)
class CrossFit:
    """Held-out ``scores`` (n,) (NaN for non-finite rows), and per fold (in ``fold_ids``
    order) its ``directions`` (K, d), ``midpoints`` (K, d), ``shrinkage`` (K,) (NaN for
    ``diffmeans``) and the training class counts ``n_train`` (K, 2) as [incorrect, correct]."""

    scores: np.ndarray
    fold_ids: np.ndarray
    directions: np.ndarray
    midpoints: np.ndarray
    shrinkage: np.ndarray
    n_train: np.ndarray


def crossfit(
    x, labels, folds, method: str = "diffmeans", shrinkage: str | float = "ledoit-wolf"
) -> CrossFit:
    """Every row of ``x`` (n, d) scored by the probe learned on the other folds (module
    docstring); ``labels`` (n,) bool, ``folds`` (n,) integer fold of each row."""
    _check_method(method, shrinkage)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"x must be (rows, dimensions), not of shape {x.shape}.")
    lab = np.asarray(labels, dtype=bool)
    fold = np.asarray(folds)
    if lab.shape != (x.shape[0],) or fold.shape != (x.shape[0],):
        raise InputError(
            f"labels {lab.shape} and folds {fold.shape} must have one entry per row of x "
            f"({x.shape[0]})."
        )
    finite = np.isfinite(x).all(axis=1)
    fold_ids = np.unique(fold)
    if fold_ids.size < 2:
        raise InputError("cross-fitting needs at least 2 folds; the folds hold one.")
    scores = np.full(x.shape[0], np.nan)
    directions, midpoints, intensities, counts = [], [], [], []
    for f in fold_ids:
        train = finite & (fold != f)
        probe = probe_direction(x[train], lab[train], method, shrinkage)
        test = finite & (fold == f)
        scores[test] = probe.score(x[test])
        directions.append(probe.direction)
        midpoints.append(probe.midpoint)
        intensities.append(np.nan if probe.shrinkage is None else probe.shrinkage)
        counts.append((probe.n_incorrect, probe.n_correct))
    return CrossFit(
        scores=scores,
        fold_ids=fold_ids,
        directions=np.array(directions),
        midpoints=np.array(midpoints),
        shrinkage=np.array(intensities),
        n_train=np.array(counts, dtype=np.int64),
    )


def crossfit_scores(
    x, labels, folds, method: str = "diffmeans", shrinkage: str | float = "ledoit-wolf"
) -> tuple[np.ndarray, np.ndarray]:
    """``(scores (n,), directions (K, d))`` of :func:`crossfit`."""
    fit = crossfit(x, labels, folds, method, shrinkage)
    return fit.scores, fit.directions


def span_folds(n_rows: int, k: int = 5) -> np.ndarray:
    """Folds of ``n_rows`` rows cut into ``k`` contiguous spans: ``floor(k i / n)``."""
    return (np.arange(n_rows) * k) // max(n_rows, 1)


def group_folds(codes, k: int = 5) -> np.ndarray:
    """Folds of rows in series order (``codes`` (n,): the window or document of each row, each
    one contiguous) that keep every series whole, in ``k`` contiguous groups of nearly equal
    row counts: with ``C_j`` the rows before series ``j`` and ``N`` in all, fold ``f``
    (``f = 1 .. k - 1``) starts at the series boundary nearest to ``f N / k`` (the first of two
    equally near), after fold ``f - 1``'s start and leaving a series for each later fold (the
    extraction's rule). With fewer than ``k`` series: :func:`span_folds`."""
    c = np.asarray(codes)
    n = c.size
    firsts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]]) if n else np.zeros(0, dtype=np.int64)
    if firsts.size < k:
        return span_folds(n, k)
    bounds = np.r_[firsts, n]
    starts = [0]
    for fold in range(1, k):
        low, high = starts[-1] + 1, firsts.size - (k - fold)
        candidates = bounds[low : high + 1]
        starts.append(low + int(np.argmin(np.abs(candidates - fold * n / k))))
    fold_of_series = np.searchsorted(np.asarray(starts), np.arange(firsts.size), side="right") - 1
    return np.repeat(fold_of_series, np.diff(bounds))


def _check_method(method: str, shrinkage) -> None:
    if method not in METHODS:
        raise InputError(f"probe method {method!r} is unknown: use one of {', '.join(METHODS)}.")
    if isinstance(shrinkage, str):
        if shrinkage not in SHRINKAGES:
            raise InputError(
                f"shrinkage {shrinkage!r} is unknown: use {', '.join(SHRINKAGES)} or a number "
                "in [0, 1]."
            )
    elif not 0.0 <= float(shrinkage) <= 1.0:
        raise InputError(f"shrinkage {shrinkage} must lie in [0, 1].")


# ----------------------------------------------------------------------------- held-out scores


def block_auroc(
    scores, labels, blocks: Blocks, *, n_bootstrap: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """AUROC of each column of ``scores`` (n, c) for bool ``labels`` (n,), arrays in the
    blocks' (series) order, with its 95% block-bootstrap interval: ``(auroc (c,), ci (c, 2))``.

    As :func:`lamina.stats.discrimination.out_of_fold`: DeLong's placement values (the
    AUROC's Hajek projection) summed per block, each resample's AUROC the class means of its
    placements minus the observed AUROC, and the interval ``point -/+ t(K - 1) SE``.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    lab = np.asarray(labels, dtype=bool)
    places = np.column_stack([placements(s[:, j], lab) for j in range(s.shape[1])])
    observed = places[lab].mean(axis=0)
    pos = lab[:, None].astype(np.float64)
    parts = np.hstack((places * pos, places * (1.0 - pos), pos, 1.0 - pos))
    boot = resampled_sums(blocks.sums(parts), n_bootstrap, seed)
    c = s.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        resampled = boot[:, :c] / boot[:, -2:-1] + boot[:, c : 2 * c] / boot[:, -1:] - observed
    return observed, bootstrap_interval(observed, resampled, blocks.n_blocks)


def held_out_auroc(
    scores, labels, blocks: Blocks, *, n_bootstrap: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`block_auroc` of held-out (cross-fitted) scores, the interval widened by
    ``sqrt(CROSSFIT_VARIANCE)`` (module docstring)."""
    auc, ci = block_auroc(scores, labels, blocks, n_bootstrap=n_bootstrap, seed=seed)
    return auc, widened_interval(auc, ci)


def oriented_by_fold(values, labels, folds) -> tuple[np.ndarray, np.ndarray]:
    """Each column of ``values`` (n, c) as a one-dimensional probe, scale-free: per fold,
    ``(v - (m1 + m0) / 2) * sign(m1 - m0)`` with ``m1`` / ``m0`` the column's class means
    (correct / incorrect) on the other folds, so that it is held out and oriented toward
    correct as the probe's score is. Returns ``(oriented (n, c), signs (K, c))`` (folds in
    ``np.unique`` order; a sign of 0, where the training difference is 0 or a class is
    missing, ties the fold's rows at 0)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    lab = np.asarray(labels, dtype=bool)
    fold = np.asarray(folds)
    out = np.empty_like(v)
    signs = []
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        a, b = lab & train, ~lab & train
        if a.any() and b.any():
            m1, m0 = v[a].mean(axis=0), v[b].mean(axis=0)
            sign = np.sign(m1 - m0)
            out[test] = (v[test] - (m1 + m0) / 2.0) * sign
        else:
            sign = np.zeros(v.shape[1])
            out[test] = 0.0
        signs.append(sign)
    return out, np.array(signs)


def saturation_index(auroc, ci_low) -> int | None:
    """Where decodability saturates: the first index whose ``auroc`` reaches the lower end
    of the 95% interval of the largest one (``ci_low`` of the argmax); None when no value
    is finite."""
    a = np.asarray(auroc, dtype=np.float64)
    if not np.isfinite(a).any():
        return None
    peak = int(np.nanargmax(a))
    floor = float(np.asarray(ci_low, dtype=np.float64)[peak])
    if not np.isfinite(floor):
        return peak
    return int(np.flatnonzero(a >= floor)[0])


def widened_interval(point, interval, factor: float = CROSSFIT_VARIANCE) -> np.ndarray:
    """``interval`` (c, 2) about ``point`` (c,) with its half-widths times ``sqrt(factor)``."""
    p = np.asarray(point, dtype=np.float64)[:, None]
    return p + np.sqrt(factor) * (np.asarray(interval, dtype=np.float64) - p)


def _widened_null(null, factor: float) -> np.ndarray:
    nul = np.asarray(null, dtype=np.float64)
    centre = nul.mean(axis=0)
    return centre + np.sqrt(factor) * (nul - centre)


def widened_permutation(
    result: PermutationResult, factor: float = CROSSFIT_VARIANCE
) -> PermutationResult:
    """A permutation test of held-out scores with its null widened about each column's mean
    by ``sqrt(factor)`` and its p-values (raw, max-statistic, Holm, BH) recomputed."""
    from lamina.stats.catalog import SIGNED_CENTERS

    null = _widened_null(result.null_distribution, factor)
    keywords = {
        "center": SIGNED_CENTERS.get(result.statistic_name, 0.0),
        "includes_observed": result.exact,
    }
    pvalue = permutation_pvalues(result.statistic, null, result.alternative, **keywords)
    return dataclasses.replace(
        result,
        null_distribution=null,
        pvalue=pvalue,
        pvalue_maxstat=maxstat_pvalues(result.statistic, null, result.alternative, **keywords),
        pvalue_holm=holm(pvalue),
        pvalue_fdr=fdr_bh(pvalue),
    )


def widened_conditional(
    test: ConditionalTest, factor: float = CROSSFIT_VARIANCE
) -> ConditionalTest:
    """Part 7's test of held-out scores with its null widened about each column's mean by
    ``sqrt(factor)`` and its p-values recomputed (two-sided about 0; the studentised
    max-statistic over the widened nulls' SDs)."""
    null = _widened_null(test.null_distribution, factor)
    sd = test.null_sd * np.sqrt(factor)
    keywords = {"center": 0.0, "includes_observed": test.exact}
    pvalue = permutation_pvalues(test.statistic, null, "two-sided", **keywords)
    return dataclasses.replace(
        test,
        null_distribution=null,
        null_sd=sd,
        pvalue=pvalue,
        pvalue_maxstat=maxstat_pvalues(test.statistic / sd, null / sd, "two-sided", **keywords),
        pvalue_holm=holm(pvalue),
        pvalue_fdr=fdr_bh(pvalue),
    )
