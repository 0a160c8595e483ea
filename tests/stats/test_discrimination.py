"""Out-of-fold AUROC and log-loss gain: folds and penalised fits recomputed with scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import scipy.stats

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


def _ridge_logistic(design, y, ridge, offset=0.0):
    """A fold's penalised logistic fit by scipy's L-BFGS: ``ridge`` (a number, or one per
    column) times half the squared coefficient on every column but the intercept."""
    from scipy.optimize import minimize
    from scipy.special import log_expit

    penalty = np.zeros(design.shape[1])
    penalty[1:] = ridge

    def loss(beta):
        eta = offset + design @ beta
        value = -(y * log_expit(eta) + (1 - y) * log_expit(-eta)).sum()
        grad = design.T @ (scipy.special.expit(eta) - y) + penalty * beta
        return value + 0.5 * (penalty * beta**2).sum(), grad

    found = minimize(loss, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B",
                     options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000})  # fmt: skip
    return found.x


def test_out_of_fold_scores_equal_a_direct_recomputation_with_scipy():
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
            # the layer's slope carries the controls' ridge, scaled to r's mean square
            penalty = RIDGE * np.mean(x[tr, j] ** 2)
            params = _ridge_logistic(with_intercept(x[tr, j]), y[tr], penalty, offset)
            eta1[te, j] = eta0[te] + with_intercept(x[te, j]) @ params
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


def test_a_slope_that_would_run_off_stays_finite_out_of_fold():
    """The controls separate the training tokens but for a few, and the layer's column
    separates those few: unpenalised, b ran off and the held-out log-loss with it."""
    from lamina.stats.discrimination import _offset_fits

    rng = np.random.default_rng(2)
    n = 300
    labels = rng.random(n) < 0.5
    offset = np.where(labels, 8.0, -8.0)
    wrong = rng.choice(n, 6, replace=False)
    offset[wrong] *= -1  # six tokens the controls get wrong ...
    r = rng.normal(size=(n, 1))
    r[wrong, 0] = np.where(labels[wrong], 5.0, -5.0)  # ... and the column separates them
    a, b = _offset_fits(r, labels.astype(float), offset)
    assert np.isfinite(b).all() and 0 < b[0] < 10, b
    y = labels.astype(float)

    # the same optimum by scipy
    expected = _ridge_logistic(with_intercept(r[:, 0]), y, RIDGE * np.mean(r[:, 0] ** 2), offset)
    assert [a[0], b[0]] == pytest.approx(expected, abs=1e-5)
    folds = np.repeat(np.arange(5), n // 5)
    blocks = make_blocks(shift_layout(None, n), 20)
    result = out_of_fold(r, labels, with_intercept(offset / 8), blocks, n_bootstrap=20,
                         folds=folds)  # fmt: skip
    assert np.isfinite(result.logloss_gain).all() and abs(result.logloss_gain[0]) < 1
