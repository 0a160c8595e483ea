"""p-value conventions and multiple-comparison corrections against their definitions."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from lamina.errors import InputError
from lamina.stats import fdr_bh, holm, maxstat_pvalues, permutation_pvalues


def _holm_by_definition(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


@pytest.mark.parametrize("seed", range(4))
def test_holm_and_bh(seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate((rng.uniform(size=20), rng.uniform(0, 0.01, size=5), [0.5, 0.5]))
    np.testing.assert_allclose(holm(p), _holm_by_definition(list(p)), rtol=0, atol=1e-15)
    np.testing.assert_allclose(
        fdr_bh(p), scipy.stats.false_discovery_control(p, method="bh"), rtol=1e-13
    )


def test_corrections_keep_nan_out():
    p = np.array([0.01, np.nan, 0.04])
    np.testing.assert_allclose(holm(p), [0.02, np.nan, 0.04])
    np.testing.assert_allclose(fdr_bh(p), [0.02, np.nan, 0.04])
    with pytest.raises(InputError):
        holm([0.5, 1.5])


def test_pvalue_conventions():
    null = np.array([[0.1], [0.5], [0.3], [0.3], [0.9]])
    # randomized: (b + 1) / (m + 1) with b = #(null >= observed), ties counted
    assert permutation_pvalues([0.3], null)[0] == pytest.approx((4 + 1) / 6)
    assert permutation_pvalues([1.0], null)[0] == pytest.approx(1 / 6)  # never 0
    assert permutation_pvalues([0.3], null, "less")[0] == pytest.approx((3 + 1) / 6)
    # exact: b / M with the observed labelling among the M
    assert permutation_pvalues([0.3], null, includes_observed=True)[0] == pytest.approx(4 / 5)
    # two-sided about a centre
    signed = np.array([[-0.4], [0.1], [0.2], [-0.05]])
    assert permutation_pvalues([0.3], signed, "two-sided")[0] == pytest.approx(2 / 5)
    assert permutation_pvalues([0.8], signed + 0.5, "two-sided", center=0.5)[0] == pytest.approx(
        2 / 5
    )
    # rounding-level differences count as ties
    assert 0.3 + 1e-16 != 0.3
    assert permutation_pvalues([0.3 + 1e-16], null)[0] == pytest.approx(5 / 6)


def test_maxstat_pvalues_by_brute_force():
    rng = np.random.default_rng(5)
    null = rng.normal(size=(99, 6))
    observed = np.array([0.5, 1.5, 2.5, 3.0, -1.0, 0.0])
    for alternative in ("greater", "less", "two-sided"):
        if alternative == "greater":
            extreme = null.max(axis=1)
            b = [(extreme >= o).sum() for o in observed]
        elif alternative == "less":
            extreme = null.min(axis=1)
            b = [(extreme <= o).sum() for o in observed]
        else:
            extreme = np.abs(null).max(axis=1)
            b = [(extreme >= abs(o)).sum() for o in observed]
        expected = (np.array(b) + 1) / 100
        np.testing.assert_allclose(maxstat_pvalues(observed, null, alternative), expected)
    # max-statistic p-values are never below the uncorrected ones
    assert (maxstat_pvalues(observed, null) >= permutation_pvalues(observed, null)).all()
