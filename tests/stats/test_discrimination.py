"""Out-of-fold AUROC and log-loss gain: folds and fits recomputed with statsmodels and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import scipy.stats
import statsmodels.api as sm

from lamina.stats.discrimination import RIDGE, contiguous_folds, out_of_fold, placements
from lamina.stats.regression import with_intercept
from lamina.stats.resampling import make_blocks
from lamina.stats.shifts import shift_layout


def _auroc(score, labels):
    u = scipy.stats.mannwhitneyu(score[labels], score[~labels]).statistic
    return u / (labels.sum() * (~labels).sum())


def _data(seed, n=600):
    rng = np.random.default_rng(seed)
    controls = rng.normal(size=(n, 2))
    x = rng.normal(size=(n, 2))
    logit = 0.8 * controls[:, 0] + 0.9 * x[:, 1]
    labels = rng.random(n) < 1 / (1 + np.exp(-logit))
    return controls, x, labels


def _ridge_logistic(design, y, ridge):
    """The controls' fit of a fold: penalised maximum likelihood by scipy's L-BFGS."""
    from scipy.optimize import minimize
    from scipy.special import log_expit

    def loss(beta):
        eta = design @ beta
        penalty = 0.5 * ridge * (beta[1:] ** 2).sum()
        value = -(y * log_expit(eta) + (1 - y) * log_expit(-eta)).sum() + penalty
        grad = design.T @ (scipy.special.expit(eta) - y)
        grad[1:] += ridge * beta[1:]
        return value, grad

    found = minimize(loss, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B",
                     options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000})  # fmt: skip
    return found.x


def test_out_of_fold_scores_equal_a_direct_recomputation_with_statsmodels():
    controls, x, labels = _data(0)
    n = labels.size
    design = with_intercept(controls)
    blocks = make_blocks(shift_layout(None, n), 20)
    result = out_of_fold(x, labels, design, blocks, n_bootstrap=200, seed=4)
    fold = contiguous_folds(n)
    assert np.array_equal(np.bincount(fold), [120] * 5)
    assert (np.diff(fold) >= 0).all()  # contiguous
    y = labels.astype(float)
    eta0 = np.empty(n)
    eta1 = np.empty((n, 2))
    for k in range(5):
        tr, te = fold != k, fold == k
        base = _ridge_logistic(design[tr], y[tr], RIDGE)
        eta0[te] = design[te] @ base
        offset = design[tr] @ base
        for j in range(2):
            fit = sm.GLM(
                y[tr],
                with_intercept(x[tr, j]),
                family=sm.families.Binomial(),
                offset=offset,
            ).fit(tol=1e-13)
            eta1[te, j] = eta0[te] + with_intercept(x[te, j]) @ fit.params
    assert result.auroc_controls == pytest.approx(_auroc(eta0, labels), abs=1e-6)
    loss = lambda eta: np.logaddexp(0, eta) - y * eta  # noqa: E731
    for j in range(2):
        assert result.auroc_full[j] == pytest.approx(_auroc(eta1[:, j], labels), abs=1e-6)
        gain = (loss(eta0) - loss(eta1[:, j])).mean()
        assert result.logloss_gain[j] == pytest.approx(gain, abs=1e-7)
    assert result.logloss_gain_ci[1, 0] > 0  # x[:, 1] adds information
    assert result.logloss_gain_ci[0, 0] < 0  # x[:, 0] does not


def test_log_loss_gain_interval_is_rarely_above_zero_for_a_useless_column():
    above = 0
    for seed in range(40):
        controls, x, labels = _data(100 + seed, n=800)
        blocks = make_blocks(shift_layout(None, labels.size), 20)
        result = out_of_fold(
            x[:, :1], labels, with_intercept(controls), blocks, n_bootstrap=200, seed=seed
        )
        above += result.logloss_gain_ci[0, 0] > 0
    assert above <= 2  # nominal 2.5% one-sided; out of fold the gain leans negative


def test_placements_average_to_the_auroc_with_ties():
    rng = np.random.default_rng(1)
    score = rng.integers(0, 6, 80).astype(float)
    labels = rng.random(80) < 0.5
    v = placements(score, labels)
    assert v[labels].mean() == pytest.approx(_auroc(score, labels))
    assert v[~labels].mean() == pytest.approx(_auroc(score, labels))


def test_a_control_that_runs_with_the_folds_does_not_wreck_the_held_out_fit():
    """ctx_pos of one window rises with the contiguous folds: its spline pieces under a
    held-out fold have no training token; the ridge keeps them at 0 instead of extrapolating."""
    from lamina.stats.adjustment import control_basis

    rng = np.random.default_rng(5)
    n = 1024
    signal = rng.normal(size=n)
    labels = rng.random(n) < 1 / (1 + np.exp(-1.6 * signal))
    blocks = make_blocks(shift_layout(None, n), 20)
    found = {}
    for name, controls in (
        ("signal", {"signal": signal}),
        ("signal+ctx", {"signal": signal, "ctx_pos": np.arange(n, dtype=float)}),
    ):
        basis = control_basis(controls, n)
        design = basis.q * np.sqrt(n)
        found[name] = out_of_fold(np.zeros((n, 1)), labels, design, blocks, n_bootstrap=20)
    alone, with_ctx = found["signal"].auroc_controls, found["signal+ctx"].auroc_controls
    assert alone > 0.75
    assert with_ctx > alone - 0.03, (alone, with_ctx)
