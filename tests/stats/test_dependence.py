"""Serial dependence within series: autocorrelation, effective tokens, block length."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import lfilter

from lamina.stats.dependence import autocorrelation, block_length, effective_tokens
from lamina.stats.shifts import shift_layout


def _ar1(rng, n, rho, k=1):
    e = rng.standard_normal((n, k))
    e[0] /= math.sqrt(1 - rho * rho)  # a stationary start
    return lfilter([math.sqrt(1 - rho * rho)], [1.0, -rho], e, axis=0)


def _acf_by_loops(x, sizes, max_lag):
    """Pairs within one series only, the overall mean, every token's square in the denominator."""
    n, n_cols = x.shape
    out = np.full((max_lag, n_cols), np.nan)
    for j in range(n_cols):
        m = sum(x[:, j]) / n
        denom = sum((v - m) ** 2 for v in x[:, j])
        for lag in range(1, max_lag + 1):
            total, pairs, start = 0.0, 0, 0
            for size in sizes:
                for t in range(start, start + size - lag):
                    total += (x[t, j] - m) * (x[t + lag, j] - m)
                    pairs += 1
                start += size
            if pairs:
                out[lag - 1, j] = total / denom
    return out


def test_autocorrelation_equals_a_direct_loop_over_pairs_within_series():
    rng = np.random.default_rng(0)
    n = 400
    codes = rng.choice([4, 0, 9, 2, 13], size=n, p=[0.4, 0.3, 0.2, 0.09, 0.01])
    table = np.cumsum(rng.normal(size=(n, 2)), axis=0) * 0.1 + rng.normal(size=(n, 2))
    layout = shift_layout(codes, n)
    x = table[layout.order]
    got = autocorrelation(x, layout, 5)
    expected = _acf_by_loops(x, layout.sizes.tolist(), 5)
    assert got.shape == (5, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    # a 1-D input is one column
    np.testing.assert_allclose(autocorrelation(x[:, 0], layout, 5)[:, 0], expected[:, 0])


def test_autocorrelation_is_nan_where_no_pair_lies_in_one_series():
    layout = shift_layout(np.repeat([0, 1, 2], [3, 2, 3]), 8)
    x = np.arange(8.0) ** 2
    got = autocorrelation(x, layout, 4)[:, 0]
    expected = _acf_by_loops(x[:, None], [3, 2, 3], 4)[:, 0]
    np.testing.assert_allclose(got[:2], expected[:2])
    assert np.isnan(got[2:]).all() and np.isnan(expected[2:]).all()


def test_autocorrelation_of_a_long_ar1_series_approaches_rho_to_the_k():
    rng = np.random.default_rng(1)
    rho = 0.6
    x = _ar1(rng, 200_000, rho)
    got = autocorrelation(x, shift_layout(None, x.shape[0]), 5)[:, 0]
    np.testing.assert_allclose(got, rho ** np.arange(1, 6), atol=0.015)


def test_effective_tokens_equals_bartletts_formula():
    rng = np.random.default_rng(2)
    k, n = 20, 5000
    acf_x = rng.uniform(-0.2, 0.8, size=(k, 3)) * 0.9 ** np.arange(1, k + 1)[:, None]
    acf_y = rng.uniform(0, 0.6, size=k) * 0.8 ** np.arange(1, k + 1)
    got = effective_tokens(acf_x, acf_y, n)
    for j in range(3):
        s = sum((1 - lag / (k + 1)) * acf_x[lag - 1, j] * acf_y[lag - 1] for lag in range(1, k + 1))
        assert s > 0
        assert got[j] == pytest.approx(n / (1 + 2 * s), rel=1e-12)
    # acf_y as a column gives the same
    np.testing.assert_allclose(effective_tokens(acf_x, acf_y[:, None], n), got)


def test_effective_tokens_is_n_without_autocorrelation_and_never_above_n():
    rng = np.random.default_rng(3)
    acf_x = rng.uniform(0, 0.9, size=(10, 4))
    zero = np.zeros(10)
    np.testing.assert_array_equal(effective_tokens(acf_x, zero, 1000), 1000.0)
    np.testing.assert_array_equal(effective_tokens(np.zeros((10, 4)), acf_x[:, 0], 1000), 1000.0)
    # negative products (x positively, y negatively autocorrelated) would inflate n: capped at n
    np.testing.assert_array_equal(effective_tokens(acf_x, -acf_x[:, 0], 1000), 1000.0)
    # NaN lags (undefined) count as 0
    with_nan = acf_x.copy()
    with_nan[5:] = np.nan
    np.testing.assert_allclose(
        effective_tokens(with_nan, acf_x[:, 0], 1000),
        effective_tokens(np.where(np.isnan(with_nan), 0, with_nan), acf_x[:, 0], 1000),
    )
    assert (effective_tokens(acf_x, acf_x[:, 0], 1000) <= 1000).all()


def test_block_length_is_bounded_and_grows_with_the_dependence():
    n = 20_000
    floor = math.ceil(n ** (1 / 3))  # 28
    layout = shift_layout(None, n)
    lengths = {}
    for rho in (0.2, 0.9):
        rng = np.random.default_rng(4)
        z = _ar1(rng, n, rho)[:, 0] * _ar1(rng, n, rho)[:, 0]  # a product: acf rho^(2k)
        lengths[rho] = block_length(z, layout)
        assert floor <= lengths[rho] <= n
    assert lengths[0.2] < lengths[0.9]
    assert lengths[0.2] == floor  # acf 0.04: barely any dependence, the floor
    # iid tokens: the floor
    iid = np.random.default_rng(5).normal(size=n)
    assert block_length(iid, layout) == floor
    # series of 200 tokens: never longer than the median series length
    rng = np.random.default_rng(6)
    strong = _ar1(rng, n, 0.99)[:, 0]
    windows = shift_layout(np.arange(n) // 200, n)
    assert floor <= block_length(strong, windows) <= 200
    assert block_length(strong, windows) == 200
    # the largest over columns
    both = np.column_stack((iid, _ar1(np.random.default_rng(4), n, 0.9)[:, 0] ** 2))
    assert block_length(both, layout) == block_length(both[:, 1], layout)


@pytest.mark.parametrize("phi", [0.5, 0.7])
def test_block_length_matches_politis_white_for_an_ar1_mean(phi):
    # an AR(1) autocovariance phi^|k|: G = 2 phi / (1 - phi)^2, g(0) = (1 + phi) / (1 - phi),
    # b = (2 G^2 / ((4/3) g(0)^2))^(1/3) n^(1/3) = (6 phi^2 / (1 - phi^2)^2)^(1/3) n^(1/3)
    n = 20_000
    theory = (6 * phi**2 / (1 - phi**2) ** 2) ** (1 / 3) * n ** (1 / 3)  # 37.6 and 60.9
    layout = shift_layout(None, n)
    got = [block_length(_ar1(np.random.default_rng(s), n, phi), layout) for s in range(8)]
    assert np.mean(got) == pytest.approx(theory, rel=0.1), got
