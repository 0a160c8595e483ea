"""Cross-validated AUROC gain: folds and fits recomputed with statsmodels and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import statsmodels.api as sm

from lamina.stats.discrimination import _bootstrap, added_auroc, placements


def _auroc(score, labels):
    u = scipy.stats.mannwhitneyu(score[labels], score[~labels]).statistic
    return u / (labels.sum() * (~labels).sum())


def test_out_of_fold_auroc_equals_a_direct_recomputation():
    rng = np.random.default_rng(0)
    n = 400
    controls = rng.normal(size=(n, 2))
    x = rng.normal(size=(n, 2))
    logit = 0.8 * controls[:, 0] + 0.9 * x[:, 1]
    labels = rng.random(n) < 1 / (1 + np.exp(-logit))
    result = added_auroc(x, labels, controls, folds=5, n_bootstrap=200, seed=4)
    fold = np.empty(n, dtype=int)
    fold[np.random.default_rng(4).permutation(n)] = np.arange(n) % 5
    base = sm.add_constant(controls)
    score_base = np.empty(n)
    score_full = np.empty((2, n))
    for k in range(5):
        tr, te = fold != k, fold == k
        fit = sm.GLM(labels[tr].astype(float), base[tr], family=sm.families.Binomial()).fit(
            tol=1e-13
        )
        score_base[te] = base[te] @ fit.params
        for j in range(2):
            full = np.column_stack((base, x[:, j]))
            fj = sm.GLM(labels[tr].astype(float), full[tr], family=sm.families.Binomial()).fit(
                tol=1e-13
            )
            score_full[j, te] = full[te] @ fj.params
    assert result.controls == pytest.approx(_auroc(score_base, labels), abs=1e-9)
    for j in range(2):
        assert result.full[j] == pytest.approx(_auroc(score_full[j], labels), abs=1e-9)
    assert result.gain[1] > 0.05 and result.gain_ci[1, 0] > 0  # x[:, 1] adds information
    assert result.gain_ci[0, 0] < 0 < result.gain_ci[0, 1]  # x[:, 0] does not


def test_placements_average_to_the_auroc_with_ties():
    rng = np.random.default_rng(1)
    score = rng.integers(0, 6, 80).astype(float)
    labels = rng.random(80) < 0.5
    v = placements(score, labels)
    assert v[labels].mean() == pytest.approx(_auroc(score, labels))
    assert v[~labels].mean() == pytest.approx(_auroc(score, labels))


def test_linearised_bootstrap_interval_matches_the_exact_bootstrap():
    rng = np.random.default_rng(2)
    n = 1500
    labels = rng.random(n) < 0.4
    score = rng.normal(size=n) + 0.6 * labels
    fast = _bootstrap(score[None, :], labels, 2000, seed=3)[:, 0]
    exact = np.empty(2000)
    boot = np.random.default_rng(9)
    for b in range(2000):
        idx = boot.integers(0, n, n)
        exact[b] = _auroc(score[idx], labels[idx])
    assert fast.std() == pytest.approx(exact.std(), rel=0.1)
    assert np.percentile(fast, [2.5, 97.5]) == pytest.approx(
        np.percentile(exact, [2.5, 97.5]), abs=0.006
    )
