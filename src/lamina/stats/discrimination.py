"""What a value adds to the controls in predicting the classes, out of fold.

:func:`out_of_fold` cuts the tokens (in series order: windows or documents
one after the other, text order inside) into ``k`` contiguous folds, never
shuffling tokens across a passage, so that neighbouring (dependent) tokens
rarely straddle a training and a test fold. In each fold:

- the controls' model ``labels ~ design`` is fitted on the other folds
  (:func:`lamina.stats.regression.logistic_fit`), and its linear predictor
  ``eta`` scores the held-out tokens;
- for every column ``r`` (a log-norm's residual on the controls' basis, which
  uses no label), ``labels ~ offset(eta) + a + b r`` is fitted on the other
  folds (two parameters per column, all columns at once) and scores the
  held-out tokens.

Reported: the out-of-fold AUROC of the controls and of the controls plus each
column, and the **log-loss gain**, the mean over tokens of
``logloss(controls) - logloss(controls + column)`` in nats per token
(positive: the column improves the held-out prediction). Unlike the difference
of two nested AUROCs, whose interval misbehaves (above 0 in 7-11% of null
tables with useless controls), the gain is a mean of per-token terms, and out of
fold an added column that carries nothing makes it slightly negative, so its
interval is conservative under the null.

Intervals: block bootstrap (:mod:`lamina.stats.resampling`) of the per-token
terms: the gain's terms, and for the AUROC DeLong's placement values (its
Hajek projection), summed per block; the bootstrap SE with Student's quantile.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.stats
from scipy.special import expit, log_expit

from lamina.stats.regression import logistic_fit
from lamina.stats.resampling import Blocks, bootstrap_interval, resampled_sums

#: Newton steps stop below this relative step: the fits only score held-out tokens.
CV_TOLERANCE = 1e-7
#: the ridge of the controls' fit in each fold (design columns have unit mean square, so a
#: few tokens' information per column, against hundreds from the data): a spline piece with no
#: training token under it (``ctx_pos`` of one window in contiguous folds) gets 0, not a wild guess
RIDGE = 3.0
#: Folds of the cross-fitting.
FOLDS = 5
FOLD_RULE = (
    "5 contiguous folds of the tokens in series order (windows or documents one after "
    "another, text order inside), so neighbouring tokens share a fold"
)


@dataclasses.dataclass(frozen=True)
class OutOfFold:
    """Out-of-fold AUROC of the controls (scalar, CI (2,)) and with each column (L,), (L, 2);
    log-loss gain per column (L,) in nats per token, CI (L, 2)."""

    auroc_controls: float
    auroc_controls_ci: np.ndarray
    auroc_full: np.ndarray
    auroc_full_ci: np.ndarray
    logloss_gain: np.ndarray
    logloss_gain_ci: np.ndarray
    folds: int
    n_bootstrap: int


def contiguous_folds(n_tokens: int, folds: int = FOLDS) -> np.ndarray:
    """Fold of each token in series order: ``floor(folds * i / n)``."""
    return (np.arange(n_tokens) * folds) // max(n_tokens, 1)


def out_of_fold(
    residuals,
    labels,
    design,
    blocks: Blocks,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    folds=None,
) -> OutOfFold:
    """The module's out-of-fold comparison. Arrays in series order: ``residuals`` (n, L),
    ``labels`` (n,), ``design`` (n, p) spanning the intercept; ``folds`` (n,) the fold of
    each token (None: :func:`contiguous_folds`' ``FOLDS`` folds)."""
    r = np.asarray(residuals, dtype=np.float64)
    if r.ndim == 1:
        r = r[:, None]
    y = np.asarray(labels, dtype=np.float64)
    d = np.asarray(design, dtype=np.float64)
    if folds is None:
        fold, n_folds = contiguous_folds(y.size), FOLDS
    else:
        fold = np.unique(np.asarray(folds), return_inverse=True)[1].ravel()
        n_folds = int(fold.max()) + 1
    eta0 = np.empty(y.size)
    eta1 = np.empty_like(r)
    for k in range(n_folds):
        train, test = fold != k, fold == k
        coef = logistic_fit(d[train], y[train], tol=CV_TOLERANCE, ridge=RIDGE).coef
        offset_train = d[train] @ coef
        eta0[test] = d[test] @ coef
        a, b = _offset_fits(r[train], y[train], offset_train)
        eta1[test] = eta0[test, None] + a + b * r[test]
    loss0 = -(y * log_expit(eta0) + (1 - y) * log_expit(-eta0))
    loss1 = -(y[:, None] * log_expit(eta1) + (1 - y[:, None]) * log_expit(-eta1))
    gain_terms = loss0[:, None] - loss1
    lab = y.astype(bool)
    scores = np.column_stack((eta0, eta1))
    places = np.column_stack([placements(scores[:, j], lab) for j in range(scores.shape[1])])
    observed_auc = places[lab].mean(axis=0)
    pos = lab[:, None].astype(np.float64)
    parts = np.hstack((gain_terms, places * pos, places * (1 - pos), pos, 1 - pos))
    boot = resampled_sums(blocks.sums(parts), n_bootstrap, seed)
    n_cols = r.shape[1]
    k = n_cols + 1
    count = boot[:, -2] + boot[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        gain_b = boot[:, :n_cols] / count[:, None]
        auc_b = (
            boot[:, n_cols : n_cols + k] / boot[:, -2:-1]
            + boot[:, n_cols + k : n_cols + 2 * k] / boot[:, -1:]
            - observed_auc
        )
    auc_ci = bootstrap_interval(observed_auc, auc_b, blocks.n_blocks)
    return OutOfFold(
        auroc_controls=float(observed_auc[0]),
        auroc_controls_ci=auc_ci[0],
        auroc_full=observed_auc[1:],
        auroc_full_ci=auc_ci[1:],
        logloss_gain=gain_terms.mean(axis=0),
        logloss_gain_ci=bootstrap_interval(gain_terms.mean(axis=0), gain_b, blocks.n_blocks),
        folds=n_folds,
        n_bootstrap=int(n_bootstrap),
    )


def _offset_fits(r: np.ndarray, y: np.ndarray, offset: np.ndarray, iterations: int = 50):
    """Per column the ``(a, b)`` of ``y ~ offset + a + b r`` by maximum likelihood with the
    controls' ridge on ``b`` (``RIDGE / 2 * b^2 * mean(r^2)``: ``r`` at unit mean square, as
    the design's columns): (L,), (L,). Where the offset nearly separates the training
    tokens, an unpenalised ``b`` runs off to infinity and the held-out loss with it."""
    n_cols = r.shape[1]
    a = np.zeros(n_cols)
    b = np.zeros(n_cols)
    penalty = RIDGE * (r * r).mean(axis=0)

    def objective(a, b):
        eta = offset[:, None] + a + b * r
        return (np.logaddexp(0, eta) - y[:, None] * eta).sum(axis=0) + 0.5 * penalty * b * b

    current = objective(a, b)
    for _ in range(iterations):
        mu = expit(offset[:, None] + a + b * r)
        w = mu * (1 - mu)
        resid = y[:, None] - mu
        g0, g1 = resid.sum(axis=0), (resid * r).sum(axis=0) - penalty * b
        h00, h01 = w.sum(axis=0), (w * r).sum(axis=0)
        h11 = (w * r * r).sum(axis=0) + penalty
        det = h00 * h11 - h01 * h01
        with np.errstate(divide="ignore", invalid="ignore"):
            da = np.where(det > 0, (h11 * g0 - h01 * g1) / det, 0.0)
            db = np.where(det > 0, (h00 * g1 - h01 * g0) / det, 0.0)
        # Newton's step, halved where it would raise the (convex) objective
        step = np.ones(n_cols)
        for _halving in range(40):
            trial = objective(a + step * da, b + step * db)
            worse = trial > current + 1e-12 * np.abs(current)
            if not worse.any():
                break
            step = np.where(worse, step / 2, step)
        a, b, current = a + step * da, b + step * db, trial
        if max(np.abs(step * da).max(), np.abs(step * db).max()) < CV_TOLERANCE:
            break
    return a, b


def auroc_of(score: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of ``score`` for bool ``labels`` from midranks (ties 1/2)."""
    ranks = scipy.stats.rankdata(score)
    n1 = int(labels.sum())
    n0 = labels.size - n1
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def placements(score: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """DeLong's placement values: for a positive token the fraction of negatives below it,
    for a negative the fraction of positives above it (ties 1/2). Each class's mean is the AUROC.
    """
    ranks = scipy.stats.rankdata(score)
    within = np.empty_like(ranks)
    within[labels] = scipy.stats.rankdata(score[labels])
    within[~labels] = scipy.stats.rankdata(score[~labels])
    n1 = int(labels.sum())
    n0 = labels.size - n1
    below = ranks - within  # tokens of the other class below, ties 1/2
    return np.where(labels, below / n0, 1.0 - below / n1)
