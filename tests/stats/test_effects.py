"""Effect sizes and bootstrap intervals against direct computations and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from scipy.special import gamma

from lamina.errors import InputError
from lamina.stats import auroc, bootstrap_ci, hedges_g, mean_difference
from lamina.stats.effects import hedges_correction


def _samples(seed=0, n_a=40, n_b=25, shift=0.4):
    rng = np.random.default_rng(seed)
    return rng.normal(shift, 1.0, n_a), rng.normal(0.0, 1.3, n_b)


def test_mean_difference():
    a, b = _samples()
    assert mean_difference(a, b) == pytest.approx(np.mean(a) - np.mean(b), rel=1e-14)


def test_hedges_g_against_the_textbook_formula():
    a, b = _samples()
    n1, n2 = a.size, b.size
    sp = math.sqrt(((n1 - 1) * np.var(a, ddof=1) + (n2 - 1) * np.var(b, ddof=1)) / (n1 + n2 - 2))
    df = n1 + n2 - 2
    j = gamma(df / 2) / (math.sqrt(df / 2) * gamma((df - 1) / 2))
    assert hedges_g(a, b) == pytest.approx(j * (a.mean() - b.mean()) / sp, rel=1e-12)
    # the exact factor is close to Hedges' approximation 1 - 3 / (4 df - 1)
    assert hedges_correction(df) == pytest.approx(1 - 3 / (4 * df - 1), abs=1e-4)
    assert hedges_g(b, a) == pytest.approx(-hedges_g(a, b), rel=1e-14)


def test_hedges_g_undefined_for_constant_groups():
    with pytest.raises(InputError, match="constant"):
        hedges_g(np.ones(3), np.ones(4))


def test_auroc_against_brute_force_and_mannwhitneyu_with_ties():
    rng = np.random.default_rng(1)
    a = np.round(rng.normal(0.3, 1, 60), 1)
    b = np.round(rng.normal(0.0, 1, 45), 1)
    pairs = (a[:, None] > b[None, :]).mean() + 0.5 * (a[:, None] == b[None, :]).mean()
    assert auroc(a, b) == pytest.approx(pairs, rel=1e-12)
    u = scipy.stats.mannwhitneyu(a, b).statistic
    assert auroc(a, b) == pytest.approx(u / (a.size * b.size), rel=1e-12)
    assert auroc(a, b) + auroc(b, a) == pytest.approx(1.0, rel=1e-14)


@pytest.mark.parametrize(("method", "scipy_method"), [("percentile", "percentile"), ("bca", "BCa")])
def test_bootstrap_ci_agrees_with_scipy(method, scipy_method):
    a, b = _samples(seed=2, n_a=50, n_b=40)
    ours = bootstrap_ci("mean_difference", a, b, n_resamples=4000, seed=3, method=method)
    ref = scipy.stats.bootstrap(
        (a, b),
        lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        n_resamples=4000,
        method=scipy_method,
        rng=np.random.default_rng(4),
    ).confidence_interval
    # two Monte-Carlo estimates of the same interval: agree to a few % of its width
    width = ref.high - ref.low
    assert ours[0] == pytest.approx(ref.low, abs=0.08 * width)
    assert ours[1] == pytest.approx(ref.high, abs=0.08 * width)


def test_bootstrap_ci_is_seeded_and_accepts_callables():
    a, b = _samples(seed=5)
    first = bootstrap_ci(auroc, a, b, n_resamples=300, seed=9)
    assert first == bootstrap_ci("auroc", a, b, n_resamples=300, seed=9)
    assert first != bootstrap_ci("auroc", a, b, n_resamples=300, seed=10)
    assert first[0] < auroc(a, b) < first[1]


@pytest.mark.parametrize(
    "kwargs", [{"level": 1.5}, {"method": "basic"}, {"n_resamples": 1}, {"seed": -1}]
)
def test_bootstrap_ci_bad_arguments(kwargs):
    a, b = _samples()
    with pytest.raises(InputError):
        bootstrap_ci("mean_difference", a, b, **kwargs)
    with pytest.raises(InputError):
        bootstrap_ci("no such statistic", a, b)


def test_standardised_mean_difference():
    from lamina.stats.effects import standardised_mean_difference

    rng = np.random.default_rng(4)
    x = rng.normal(size=400)
    labels = rng.random(400) < 0.5
    x[labels] += 1.0
    expected = (x[labels].mean() - x[~labels].mean()) / np.sqrt(
        (x[labels].var(ddof=1) + x[~labels].var(ddof=1)) / 2
    )
    assert standardised_mean_difference(x, labels) == pytest.approx(expected)
