"""Logistic regression of the classes on a value and controls: the fit and the odds ratio.

:func:`logistic_fit` is maximum likelihood by iteratively reweighted least
squares (Newton's method on the Bernoulli log-likelihood with the logit link),
batched over designs that share ``y``: a ``(L, n, p)`` stack of designs (one per
layer) is fitted at once with one ``einsum`` and one batched solve per
iteration. Standard errors are ``sqrt(diag((X' W X)^-1))`` at the estimate, as
``statsmodels``' GLM Binomial reports them (tested to 1e-6).

:func:`one_step_log_odds` gives Part 7's odds ratio of a log-norm given the
controls for every layer from one fit of the controls' model (its docstring),
with standard errors that respect the dependence of neighbouring tokens. The
test of Part 7 is not a regression test: :mod:`lamina.stats.conditional`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import expit

from lamina.errors import InputError


@dataclasses.dataclass(frozen=True)
class LogisticFit:
    """A logistic fit per design: ``coef`` and ``se`` (L, p), ``converged`` and ``n_iter`` (L,),
    ``deviance`` (L,) (``-2`` log-likelihood); 1-D shapes for a single design."""

    coef: np.ndarray
    se: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    deviance: np.ndarray


def logistic_fit(
    X, y, *, max_iter: int = 100, tol: float = 1e-10, start=None, ridge: float = 0.0
) -> LogisticFit:
    """Maximum-likelihood logistic regression of 0/1 ``y`` on the design ``X``.

    ``X``: (n, p) or a stack (L, n, p) of designs sharing ``y`` (n,); include a
    column of ones for the intercept. Newton steps from 0 until the largest
    step is below ``tol`` (relative to ``1 + |coef|``) or ``max_iter``; a design
    that separates the classes does not converge (``converged`` False, huge
    coefficients). ``start``: initial coefficients, (p,) or (L, p) (default 0);
    a good start (a nested model's fit) saves iterations, not accuracy. ``ridge``: a
    penalty ``ridge / 2 * |coef[1:]|^2`` on every coefficient but the first (the
    intercept), so that a direction of the design the rows do not determine (a spline
    piece with no training token under it) gets 0, not an arbitrary value.
    """
    design = np.asarray(X, dtype=np.float64)
    single = design.ndim == 2
    if single:
        design = design[None]
    if design.ndim != 3:
        raise InputError(f"the design has shape {np.shape(X)}; pass (n, p) or (L, n, p).")
    target = np.asarray(y, dtype=np.float64)
    n_designs, n, p = design.shape
    if target.shape != (n,):
        raise InputError(f"y has shape {target.shape} but the design has {n} rows.")
    # features by tokens, contiguous: every product below is a batched BLAS call
    features = np.ascontiguousarray(design.transpose(0, 2, 1))  # (L, p, n)
    coef = np.zeros((n_designs, p))
    if start is not None:
        coef[:] = np.asarray(start, dtype=np.float64)
    converged = np.zeros(n_designs, dtype=bool)
    n_iter = np.zeros(n_designs, dtype=np.int64)
    active = np.arange(n_designs)
    penalty = np.full(p, float(ridge))
    penalty[0] = 0.0
    for iteration in range(1, max_iter + 1):
        f = features[active] if active.size < n_designs else features
        mu = expit(_linear(f, coef[active]))
        grad = np.matmul(f, (target - mu)[:, :, None])[:, :, 0] - penalty * coef[active]
        step = _solve(_information(f, mu) + np.diag(penalty), grad)
        coef[active] += step
        n_iter[active] = iteration
        done = np.abs(step).max(axis=1) < tol * (1.0 + np.abs(coef[active]).max(axis=1))
        converged[active[done]] = True
        active = active[~done]
        if not active.size:
            break
    mu = expit(_linear(features, coef))
    cov = _inverse(_information(features, mu))
    se = np.sqrt(np.maximum(np.diagonal(cov, axis1=1, axis2=2), 0.0))
    eps = np.finfo(np.float64).tiny
    loglik = target * np.log(np.maximum(mu, eps)) + (1 - target) * np.log(np.maximum(1 - mu, eps))
    deviance = -2.0 * loglik.sum(axis=1)
    if single:
        return LogisticFit(coef[0], se[0], converged[:1], n_iter[:1], deviance[:1])
    return LogisticFit(coef, se, converged, n_iter, deviance)


def _linear(features: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """The linear predictor per design: (L, p, n) features, (L, p) coef -> (L, n)."""
    return np.matmul(coef[:, None, :], features)[:, 0, :]


def _information(features: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Fisher information ``X' W X`` per design, ``W = mu (1 - mu)``: (L, p, p)."""
    weighted = features * (mu * (1.0 - mu))[:, None, :]
    return np.matmul(weighted, features.transpose(0, 2, 1))


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(a, b[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return np.einsum("lpq,lq->lp", np.linalg.pinv(a), b)


def _inverse(a: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.inv(a)
    except np.linalg.LinAlgError:
        return np.linalg.pinv(a)


def predict_logit(X, coef) -> np.ndarray:
    """The linear predictor ``X @ coef`` (batched like :func:`logistic_fit`)."""
    design = np.asarray(X, dtype=np.float64)
    if design.ndim == 2:
        return design @ np.asarray(coef)
    return np.matmul(design, np.asarray(coef, dtype=np.float64)[:, :, None])[:, :, 0]


def with_intercept(columns) -> np.ndarray:
    """A design ``[1, columns...]`` from (n,) or (n, k) columns (k may be 0)."""
    arr = np.asarray(columns, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    return np.hstack((np.ones((arr.shape[0], 1)), arr))


#: below this total Bernoulli information (``sum mu0 (1 - mu0)``, 0.25 per token at
#: ``mu0 = 1/2``) the controls separate the classes and an odds ratio given them is undefined
SEPARATION_INFORMATION = 2.0


@dataclasses.dataclass(frozen=True)
class OneStep:
    """The one-step log odds ratio of every column given the controls: ``coef`` and ``se``
    (L,), block-robust; ``null_converged``: whether the controls' model converged;
    ``separated``: the controls alone predict the labels (almost) perfectly, so no
    column's odds ratio is defined (``coef`` and ``se`` are NaN)."""

    coef: np.ndarray
    se: np.ndarray
    null_converged: bool
    separated: bool = False


def one_step_log_odds(x, labels, design, block_ids) -> OneStep:
    """``labels ~ design + x[:, l]``: the log odds ratio per unit of each column, one Newton
    step from the controls' model, with standard errors robust to dependence within blocks.

    The controls' model ``labels ~ design`` (``design`` (n, p) spans the intercept) is
    fitted once: ``mu0``, ``W0 = mu0 (1 - mu0)``. For a column ``x`` with ``x~`` its
    ``W0``-weighted residual on the design, the efficient score is
    ``U = x~' (y - mu0)`` and the information ``V = x~' W0 x~``; the one-step estimate
    is ``b = U / V`` (the maximum-likelihood coefficient to first order, exact as
    ``b -> 0``; the effects of a norm are small). Its variance is
    ``sum_k S_k^2 / V^2`` with ``S_k`` the block sums of the estimating function
    ``x~ (y - mu0 - W0 b x~)`` over the blocks ``block_ids`` (n,): a batch-means
    (Newey-West-type) estimator that holds when tokens within a block are
    dependent and blocks are nearly independent.
    """
    values = np.asarray(x, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    y = np.asarray(labels, dtype=np.float64)
    d = np.asarray(design, dtype=np.float64)
    fit = logistic_fit(d, y)
    mu0 = expit(d @ fit.coef)
    w0 = mu0 * (1.0 - mu0)
    if w0.sum() < SEPARATION_INFORMATION:
        nan = np.full(values.shape[1], np.nan)
        return OneStep(coef=nan, se=nan.copy(), null_converged=False, separated=True)
    weighted = d * w0[:, None]
    projection = np.linalg.lstsq(d.T @ weighted, weighted.T @ values, rcond=None)[0]
    resid = values - d @ projection
    score = resid.T @ (y - mu0)
    info = np.einsum("nl,n,nl->l", resid, w0, resid)
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = score / info
        psi = resid * ((y - mu0)[:, None] - w0[:, None] * coef[None, :] * resid)
        ids = np.asarray(block_ids)
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        sums = np.add.reduceat(psi, starts, axis=0)
        se = np.sqrt((sums**2).sum(axis=0)) / info
    return OneStep(coef=coef, se=se, null_converged=bool(fit.converged[0]))
