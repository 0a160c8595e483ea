"""Bin edges, bin rules (numpy's and Knuth's) and histogram counts against numpy/scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from scipy.special import gammaln

from lamina.errors import InputError
from lamina.stats import bin_edges, bin_indices, histogram_counts, knuth_bin_count, shared_edges
from lamina.stats.histograms import knuth_log_posterior


def test_integer_bins_are_bins_not_edges():
    x = np.random.default_rng(0).normal(size=500)
    edges = bin_edges(x, 30)
    assert edges.size == 31
    np.testing.assert_array_equal(edges, np.histogram_bin_edges(x, bins=30))
    assert edges[0] == x.min() and edges[-1] == x.max()


@pytest.mark.parametrize("rule", ["auto", "fd", "doane", "scott", "sturges", "rice", "sqrt"])
def test_numpy_rules_match_numpy(rule):
    x = np.random.default_rng(1).gamma(2.0, size=700)
    np.testing.assert_array_equal(bin_edges(x, rule), np.histogram_bin_edges(x, bins=rule))


def test_shared_edges_come_from_pooled_data():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=300), rng.normal(3, 1, size=200)
    np.testing.assert_array_equal(
        shared_edges(a, b, 17), np.histogram_bin_edges(np.concatenate((a, b)), 17)
    )


def test_constant_data_widens_like_numpy():
    np.testing.assert_array_equal(
        bin_edges(np.full(5, 2.0), 4), np.histogram_bin_edges(np.full(5, 2.0), 4)
    )


def _knuth_log_posterior_dirichlet(x: np.ndarray, m: int) -> float:
    """Knuth's posterior via scipy's Dirichlet-multinomial (alpha = 1/2) plus the width term."""
    counts, _ = np.histogram(x, bins=m)
    n = x.size
    log_dm = scipy.stats.dirichlet_multinomial.logpmf(counts, np.full(m, 0.5), n)
    # sequence likelihood = pmf / multinomial coefficient; densities scale as (M / range)^n
    log_multinomial = gammaln(n + 1) - gammaln(counts + 1).sum()
    return float(n * np.log(m) + log_dm - log_multinomial)


def test_knuth_posterior_matches_dirichlet_multinomial():
    x = np.random.default_rng(3).normal(size=400)
    ms = np.arange(1, 60)
    ours = knuth_log_posterior(x, ms)
    ref = np.array([_knuth_log_posterior_dirichlet(x, int(m)) for m in ms])
    # equal up to one additive constant (terms that do not depend on M)
    np.testing.assert_allclose(ours - ours[0], ref - ref[0], rtol=0, atol=1e-8)


def test_knuth_bin_count_is_the_argmax():
    x = np.random.default_rng(4).normal(size=2000)
    best = knuth_bin_count(x)
    ms = np.arange(2, 200)
    ref = np.array([_knuth_log_posterior_dirichlet(x, int(m)) for m in ms])
    assert best == ms[np.argmax(ref)]
    assert bin_edges(x, "knuth").size == best + 1
    # a uniform sample needs few bins, a bimodal one more
    uniform = np.random.default_rng(5).uniform(size=2000)
    assert knuth_bin_count(uniform) < best


def test_histogram_counts_and_indices_match_numpy_with_values_on_edges():
    rng = np.random.default_rng(6)
    edges = np.linspace(-2, 2, 9)
    x = np.concatenate((rng.normal(size=1000), edges, [-3.0, 3.0]))
    np.testing.assert_array_equal(histogram_counts(x, edges), np.histogram(x, edges)[0])
    idx = bin_indices(x, edges)
    assert idx[-2] == -1 and idx[-1] == 8
    assert idx[1000 + 8] == 7  # the right edge belongs to the last bin


@pytest.mark.parametrize("bins", [1, 0, -3, 2.5, True, "nope"])
def test_bad_bins_raise(bins):
    with pytest.raises(InputError):
        bin_edges(np.arange(10.0), bins)


def test_non_finite_values_raise():
    with pytest.raises(InputError, match="non-finite"):
        bin_edges(np.array([0.0, np.nan, 1.0]), 5)
