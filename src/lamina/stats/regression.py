"""Logistic regression of the classes on a value and controls, and its permutation score test.

:func:`logistic_fit` is maximum likelihood by iteratively reweighted least
squares (Newton's method on the Bernoulli log-likelihood with the logit link),
batched over designs that share ``y``: a ``(L, n, p)`` stack of designs (one per
layer) is fitted at once with one ``einsum`` and one batched solve per
iteration. Standard errors are ``sqrt(diag((X' W X)^-1))`` at the estimate, as
``statsmodels``' GLM Binomial reports them (tested to 1e-6).

The norm's p-value, given the controls, is a **permutation test of the score
statistic of the null model fitted once** (:func:`score_test`). The null model
``y ~ controls`` is fitted once (``mu0``, weights ``w0 = mu0 (1 - mu0)``); for a
layer's standardised log-norm ``x`` the efficient score is
``U = x~' (y - mu0)`` with ``x~`` the ``w0``-weighted residual of ``x`` on the
controls, its variance ``V = x~' W0 x~``, and ``T = U / sqrt(V)`` is Rao's score
statistic (asymptotically N(0, 1): ``2 Phi(-|T|)`` is the asymptotic p-value,
``T^2`` statsmodels' ``score_test``). Its null distribution is taken over
labellings permuted within the strata of the controls (the conditional test's
labellings, the same seed): for a block of labellings ``Y`` (rows x tokens) the
statistic of every layer is one matrix product ``Y @ X~``. Why this scheme and
not Freedman-Lane: with a binary outcome the reduced model's residuals are
neither exchangeable (their variance is ``mu (1 - mu)``) nor outcomes a
logistic model can be refitted to, and refitting per permutation and layer
would cost ``m x L`` IRLS fits; the score of the null model needs one fit, and
within-strata labellings keep the association of the classes with the
controls, which is what makes the permutation null valid here (the linear
adjustment in ``x~`` adds power and removes residual confounding inside a
stratum).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.special import expit, ndtr

from lamina.errors import InputError
from lamina.stats._kernels import Kernel, evaluate
from lamina.stats._stratified import strata_layout, stratified_labellings
from lamina.stats.corrections import fdr_bh, holm, maxstat_pvalues, permutation_pvalues


@dataclasses.dataclass(frozen=True)
class LogisticFit:
    """A logistic fit per design: ``coef`` and ``se`` (L, p), ``converged`` and ``n_iter`` (L,),
    ``deviance`` (L,) (``-2`` log-likelihood); 1-D shapes for a single design."""

    coef: np.ndarray
    se: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    deviance: np.ndarray


def logistic_fit(X, y, *, max_iter: int = 100, tol: float = 1e-10, start=None) -> LogisticFit:
    """Maximum-likelihood logistic regression of 0/1 ``y`` on the design ``X``.

    ``X``: (n, p) or a stack (L, n, p) of designs sharing ``y`` (n,); include a
    column of ones for the intercept. Newton steps from 0 until the largest
    step is below ``tol`` (relative to ``1 + |coef|``) or ``max_iter``; a design
    that separates the classes does not converge (``converged`` False, huge
    coefficients). ``start``: initial coefficients, (p,) or (L, p) (default 0);
    a good start (a nested model's fit) saves iterations, not accuracy.
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
    for iteration in range(1, max_iter + 1):
        f = features[active] if active.size < n_designs else features
        mu = expit(_linear(f, coef[active]))
        grad = np.matmul(f, (target - mu)[:, :, None])[:, :, 0]
        step = _solve(_information(f, mu), grad)
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


@dataclasses.dataclass(frozen=True)
class ScoreTest:
    """The permutation score test of every column of ``x`` given the controls.

    Per column (L,): ``statistic`` (Rao's T), ``pvalue_asymptotic`` (2 Phi(-|T|)),
    ``pvalue`` (permutation, two-sided), ``pvalue_maxstat`` (max |T| over
    columns), ``pvalue_holm``, ``pvalue_fdr``; ``null_distribution`` (m, L);
    ``n_permutations``, ``seed``.
    """

    statistic: np.ndarray
    pvalue_asymptotic: np.ndarray
    pvalue: np.ndarray
    pvalue_maxstat: np.ndarray
    pvalue_holm: np.ndarray
    pvalue_fdr: np.ndarray
    null_distribution: np.ndarray
    n_permutations: int
    seed: int


class ScoreKernel(Kernel):
    """Rao's score statistic of every column for a block of labellings: one matrix product.

    The product runs in float32 (labels are exact; the sums' rounding, about
    1e-5 of the statistic, is far below its spread), the rest in float64.
    """

    def __init__(self, residualised: np.ndarray, mu0: np.ndarray, variance: np.ndarray) -> None:
        self.design = residualised.astype(np.float32)  # (n, L): x~, in the labellings' order
        self.offset = mu0 @ residualised  # (L,)
        self.scale = 1.0 / np.sqrt(variance)
        self.bytes_per_row = residualised.shape[0] * 5 + residualised.shape[1] * 8 * 3

    def __call__(self, block: np.ndarray) -> np.ndarray:
        sums = (block.astype(np.float32) @ self.design).astype(np.float64)
        return (sums - self.offset) * self.scale


class ScoreStatistic:
    """The null model ``labels ~ controls`` fitted once, and the score statistic of each column.

    ``statistic`` (L,): Rao's T in float64; :meth:`kernel` gives the engine's
    kernel for tokens in a given order; :meth:`result` the test from a null.
    """

    def __init__(self, x, labels, controls) -> None:
        values = np.asarray(x, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        lab = np.asarray(labels, dtype=bool)
        design = with_intercept(np.asarray(controls, dtype=np.float64).reshape(lab.size, -1))
        self.null_fit = logistic_fit(design, lab)
        mu0 = expit(design @ self.null_fit.coef)
        w0 = mu0 * (1.0 - mu0)
        # x~ = x - C (C' W C)^-1 C' W x
        weighted = design * w0[:, None]
        projection = np.linalg.lstsq(design.T @ weighted, weighted.T @ values, rcond=None)[0]
        self.residualised = values - design @ projection
        self.variance = np.einsum("nl,n,nl->l", self.residualised, w0, self.residualised)
        if (self.variance <= 0).any():
            raise InputError(
                "a column is fully explained by the controls, so its score test is undefined; "
                "drop that control."
            )
        self.mu0 = mu0
        self.statistic = self.residualised.T @ (lab - mu0) / np.sqrt(self.variance)

    def kernel(self, order: np.ndarray) -> ScoreKernel:
        return ScoreKernel(self.residualised[order], self.mu0[order], self.variance)

    def result(
        self, observed: np.ndarray, null: np.ndarray, seed: int, includes_observed: bool = False
    ) -> ScoreTest:
        """The test from the kernel's observed values and null (the same precision);
        ``includes_observed`` for a null of every labelling (an exact test)."""
        exact = {"includes_observed": includes_observed}
        pvalue = permutation_pvalues(observed, null, "two-sided", **exact)
        return ScoreTest(
            statistic=self.statistic,
            pvalue_asymptotic=2.0 * ndtr(-np.abs(self.statistic)),
            pvalue=pvalue,
            pvalue_maxstat=maxstat_pvalues(observed, null, "two-sided", **exact),
            pvalue_holm=holm(pvalue),
            pvalue_fdr=fdr_bh(pvalue),
            null_distribution=null,
            n_permutations=int(null.shape[0]),
            seed=int(seed),
        )


def score_test(
    x, labels, controls, strata, *, n_permutations: int = 1000, seed: int = 0, progress=False
) -> ScoreTest:
    """Permutation test of ``labels ~ controls + x[:, l]`` vs ``labels ~ controls``, every ``l``.

    ``x``: (n, L) values (standardise them for interpretable scores; the test
    does not depend on it); ``controls``: (n, q) without intercept (one is
    added); ``strata``: (n,) integer codes within which labels are permuted
    (one stratum: every relabelling). The labellings are those of
    ``permutation_test(..., strata=strata, seed=seed)``, which can also evaluate
    this statistic on its own labellings: ``companion=ScoreStatistic(...).kernel``.
    """
    lab = np.asarray(labels, dtype=bool)
    statistic = ScoreStatistic(x, lab, controls)
    layout = strata_layout(np.asarray(strata), lab)
    kernel = statistic.kernel(layout.order)
    observed = kernel(lab[layout.order][None, :])[0]
    blocks = stratified_labellings(layout, n_permutations, seed)
    return statistic.result(observed, evaluate(kernel, blocks, n_permutations, progress), seed)
