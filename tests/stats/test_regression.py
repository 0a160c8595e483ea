"""Logistic regression and the one-step odds ratio against statsmodels and direct formulas."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from lamina.stats.regression import logistic_fit, one_step_log_odds, with_intercept


def _data(seed, n=400, p=4):
    rng = np.random.default_rng(seed)
    X = with_intercept(rng.normal(size=(n, p)) * rng.uniform(0.5, 3, p))
    beta = rng.normal(0, 0.6, p + 1)
    y = rng.random(n) < 1 / (1 + np.exp(-(X @ beta)))
    return X, y


@pytest.mark.parametrize("seed", range(5))
def test_coefficients_and_standard_errors_equal_statsmodels(seed):
    X, y = _data(seed)
    fit = logistic_fit(X, y)
    glm = sm.GLM(y.astype(float), X, family=sm.families.Binomial()).fit(tol=1e-13)
    np.testing.assert_allclose(fit.coef, glm.params, atol=1e-6, rtol=0)
    np.testing.assert_allclose(fit.se, glm.bse, atol=1e-6, rtol=0)
    assert fit.deviance[0] == pytest.approx(glm.deviance, abs=1e-6)
    assert fit.converged.all()


def test_a_stack_of_designs_is_fitted_as_each_alone():
    rng = np.random.default_rng(7)
    X, y = _data(7, n=300, p=2)
    extra = rng.normal(size=(300, 3))
    stack = np.stack([np.column_stack((X, extra[:, j])) for j in range(3)])
    fits = logistic_fit(stack, y)
    for j in range(3):
        glm = sm.GLM(y.astype(float), stack[j], family=sm.families.Binomial()).fit(tol=1e-13)
        np.testing.assert_allclose(fits.coef[j], glm.params, atol=1e-6, rtol=0)
        np.testing.assert_allclose(fits.se[j], glm.bse, atol=1e-6, rtol=0)


def test_separated_classes_are_flagged_not_converged():
    x = np.arange(20.0)
    y = x >= 10
    fit = logistic_fit(with_intercept(x), y, max_iter=30)
    assert not fit.converged[0]


def test_one_step_log_odds_is_the_newton_step_and_near_the_full_fit():
    """One Newton step from the controls' fit equals statsmodels' GLM one-step estimate:
    refit with the column added, started at (controls' coefficients, 0), one iteration."""
    rng = np.random.default_rng(3)
    n = 3000
    controls = rng.normal(size=(n, 2))
    x = rng.normal(size=(n, 2)) + 0.5 * controls[:, :1]
    logit = -0.3 + 0.8 * controls[:, 0] - 0.5 * controls[:, 1] + 0.2 * x[:, 1]
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    design = with_intercept(controls)
    blocks = np.arange(n) // 50
    result = one_step_log_odds(x, y, design, blocks)
    for j in range(2):
        full = np.column_stack((design, x[:, j]))
        null = sm.GLM(y.astype(float), design, family=sm.families.Binomial()).fit(tol=1e-13)
        mu = 1 / (1 + np.exp(-(design @ null.params)))
        w = mu * (1 - mu)
        # one Newton step of the full model from (null coefficients, 0)
        info = full.T @ (full * w[:, None])
        step = np.linalg.solve(info, full.T @ (y - mu))
        assert result.coef[j] == pytest.approx(step[-1], rel=1e-6, abs=1e-9)
        glm = sm.GLM(y.astype(float), full, family=sm.families.Binomial()).fit(tol=1e-13)
        assert result.coef[j] == pytest.approx(glm.params[-1], abs=0.01)
    assert result.coef[1] > 0.1 and abs(result.coef[0]) < 0.1


def test_one_step_standard_errors_equal_block_sums_of_the_estimating_function():
    rng = np.random.default_rng(5)
    n = 2000
    controls = rng.normal(size=(n, 1))
    x = rng.normal(size=(n, 1))
    y = rng.random(n) < 1 / (1 + np.exp(-0.7 * controls[:, 0]))
    design = with_intercept(controls)
    blocks = np.arange(n) // 40
    result = one_step_log_odds(x, y, design, blocks)
    null = sm.GLM(y.astype(float), design, family=sm.families.Binomial()).fit(tol=1e-13)
    mu = 1 / (1 + np.exp(-(design @ null.params)))
    w = mu * (1 - mu)
    beta = np.linalg.lstsq(design * np.sqrt(w)[:, None], x[:, 0] * np.sqrt(w), rcond=None)[0]
    resid = x[:, 0] - design @ beta
    info = (resid**2 * w).sum()
    b = resid @ (y - mu) / info
    psi = resid * (y - mu - w * b * resid)
    sums = np.array([psi[blocks == k].sum() for k in range(blocks.max() + 1)])
    assert result.se[0] == pytest.approx(np.sqrt((sums**2).sum()) / info, rel=1e-9)
    # with independent tokens the robust SE is close to the model-based one
    assert result.se[0] == pytest.approx(1 / np.sqrt(info), rel=0.15)


def test_controls_that_separate_the_classes_leave_the_odds_ratio_undefined():
    """Quasi-complete separation by the controls: NaN and ``separated``, not 1e47."""
    rng = np.random.default_rng(3)
    n = 1800
    z = rng.normal(size=n)
    y = (z > 0.8).astype(float)  # the control decides the label
    design = with_intercept(z)
    x = rng.normal(size=(n, 2))
    found = one_step_log_odds(x, y, design, np.arange(n) // 50)
    assert found.separated and not found.null_converged
    assert np.isnan(found.coef).all() and np.isnan(found.se).all()
    # the same column with a label the control does not decide: finite and near statsmodels
    y2 = (rng.random(n) < 0.3 + 0.2 * (z > 0)).astype(float)
    kept = one_step_log_odds(x, y2, design, np.arange(n) // 50)
    assert not kept.separated and np.isfinite(kept.coef).all()
    exact = sm.GLM(y2, np.column_stack((design, x[:, 0])), family=sm.families.Binomial()).fit()
    assert kept.coef[0] == pytest.approx(exact.params[-1], abs=0.02)
