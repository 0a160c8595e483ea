"""Logistic regression against statsmodels; the permutation score test against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from lamina.stats.regression import logistic_fit, score_test, with_intercept


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


def test_score_statistic_equals_statsmodels_score_test():
    X, y = _data(3, n=500, p=4)
    controls, extra = X[:, 1:3], X[:, 3:]
    result = score_test(extra, y, controls, np.zeros(500, int), n_permutations=99)
    null = sm.GLM(y.astype(float), X[:, :3], family=sm.families.Binomial()).fit(tol=1e-13)
    for j in range(extra.shape[1]):
        chi2 = null.score_test(exog_extra=extra[:, j : j + 1])[0]
        assert result.statistic[j] ** 2 == pytest.approx(float(np.ravel(chi2)[0]), rel=1e-6)


def test_permutation_score_test_equals_a_direct_recomputation_over_stratified_labellings():
    from lamina.stats._stratified import strata_layout, stratified_labellings

    rng = np.random.default_rng(5)
    n = 60
    controls = rng.normal(size=(n, 1))
    strata = (controls[:, 0] > 0).astype(int)
    y = rng.random(n) < 1 / (1 + np.exp(-controls[:, 0]))
    x = rng.normal(size=(n, 2))
    result = score_test(x, y, controls, strata, n_permutations=200, seed=3)
    design = with_intercept(controls)
    null = sm.GLM(y.astype(float), design, family=sm.families.Binomial()).fit(tol=1e-13)
    mu, w = null.fittedvalues, null.fittedvalues * (1 - null.fittedvalues)
    layout = strata_layout(strata, y)
    blocks = np.concatenate(list(stratified_labellings(layout, 200, 3)))
    for j in range(2):
        # x~ by weighted least squares (an independent route: statsmodels WLS)
        resid = x[:, j] - sm.WLS(x[:, j], design, weights=w).fit().fittedvalues
        scale = np.sqrt((w * resid**2).sum())
        observed = resid @ (y - mu) / scale
        assert result.statistic[j] == pytest.approx(observed, rel=1e-6)
        labels = np.empty_like(blocks)
        labels[:, layout.order] = blocks
        null_t = (labels @ resid - mu @ resid) / scale
        # the null's product runs in float32: about 1e-5 of the statistic
        np.testing.assert_allclose(result.null_distribution[:, j], null_t, rtol=0, atol=1e-4)
        b = (np.abs(null_t) >= abs(observed) * (1 - 1e-12)).sum()
        assert result.pvalue[j] == pytest.approx((b + 1) / 201)
