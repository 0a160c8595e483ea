"""Circular shifts within series: layout, shift draws, shifted labellings and the shift test."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats
from scipy.signal import lfilter
from scipy.spatial.distance import jensenshannon

from lamina.errors import InputError
from lamina.stats.permutation import permutation_test
from lamina.stats.shifts import (
    apply_shifts,
    exact_shifts,
    random_shifts,
    shift_labellings,
    shift_layout,
)


def _rolled_in_table_order(series, codes, shifts_row):
    """``series`` (table order) with series j (j-th smallest code) rolled left by shifts_row[j]."""
    out = np.array(series, copy=True)
    for j, code in enumerate(np.unique(codes)):
        idx = np.flatnonzero(codes == code)
        out[idx] = np.roll(series[idx], -int(shifts_row[j]))
    return out


@pytest.mark.parametrize("dtype", [bool, np.float32, np.float64, np.int16])
def test_apply_shifts_equals_np_roll_per_series_for_unsorted_codes(dtype):
    rng = np.random.default_rng(1)
    n = 300
    codes = rng.choice([7, -2, 40, 3, 11], size=n)  # unsorted, non-contiguous codes
    codes[17] = 99  # a series of one token: its only shift is 0
    raw = rng.normal(size=n) > 0 if dtype is bool else (rng.normal(size=n) * 50).astype(dtype)
    layout = shift_layout(codes, n)
    sizes = np.array([(codes == c).sum() for c in np.unique(codes)])
    np.testing.assert_array_equal(layout.sizes, sizes)
    np.testing.assert_array_equal(layout.starts, np.r_[0, np.cumsum(sizes)[:-1]])
    shifts = (rng.random((25, sizes.size)) * sizes).astype(np.int64)
    shifts[0] = 0
    shifts[1] = sizes - 1
    out = apply_shifts(raw[layout.order], layout, shifts)
    assert out.dtype == raw.dtype and out.shape == (25, n)
    for r in range(shifts.shape[0]):
        for j, code in enumerate(np.unique(codes)):
            segment = raw[codes == code]  # table order within the series
            start, size = layout.starts[j], layout.sizes[j]
            np.testing.assert_array_equal(
                out[r, start : start + size], np.roll(segment, -shifts[r, j])
            )
    # back in table order, row 0 (no shift) is the input itself
    table = np.empty_like(out[0])
    table[layout.order] = out[0]
    np.testing.assert_array_equal(table, raw)


def test_shift_layout_of_none_is_one_series_and_bad_codes_are_refused():
    layout = shift_layout(None, 12)
    assert layout.n_series == 1 and layout.sizes.tolist() == [12]
    np.testing.assert_array_equal(layout.order, np.arange(12))
    assert shift_layout(np.array([0, 0, 1, 1, 1]), 5).n_shifts(6) == 6
    assert shift_layout(np.array([0, 0, 1, 1, 1]), 5).n_shifts(5) == math.inf
    with pytest.raises(InputError):
        shift_layout(np.zeros(5), 5)
    with pytest.raises(InputError):
        shift_layout(np.zeros(4, dtype=int), 5)
    with pytest.raises(InputError):
        shift_layout(None)


def test_random_shifts_are_reproducible_in_range_and_uniform():
    codes = np.repeat([0, 1, 2], [3, 5, 7])
    layout = shift_layout(codes, codes.size)
    m = 12_000  # more than one block of draws (4096 rows per block here)
    first = np.concatenate(list(random_shifts(layout, m, seed=3)))
    again = np.concatenate(list(random_shifts(layout, m, seed=3)))
    other = np.concatenate(list(random_shifts(layout, m, seed=4)))
    assert first.shape == (m, 3) and first.dtype == np.int64
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert (first >= 0).all() and (first < layout.sizes).all()
    for j, size in enumerate(layout.sizes):
        counts = np.bincount(first[:, j], minlength=size)
        assert counts.size == size
        assert scipy.stats.chisquare(counts).pvalue > 1e-3, counts
    # pairs of series are drawn independently: the 15 joint cells of series 0 and 1 are uniform
    joint = np.bincount(first[:, 0] * 5 + first[:, 1], minlength=15)
    assert scipy.stats.chisquare(joint).pvalue > 1e-3, joint


def test_exact_shifts_enumerate_every_combination_observed_first():
    codes = np.repeat([5, 1, 9], [3, 40, 50])  # 6,000 combinations: two blocks of rows
    layout = shift_layout(codes, codes.size)
    blocks = list(exact_shifts(layout))
    assert len(blocks) >= 2
    rows = np.concatenate(blocks)
    assert rows.shape == (40 * 3 * 50, 3)
    np.testing.assert_array_equal(rows[0], 0)
    # series in ascending code order: sizes 40 (code 1), 3 (code 5), 50 (code 9)
    assert (rows >= 0).all() and (rows < np.array([40, 3, 50])).all()
    keys = (rows[:, 0] * 3 + rows[:, 1]) * 50 + rows[:, 2]
    assert np.unique(keys).size == rows.shape[0]


def _shift_case():
    rng = np.random.default_rng(7)
    codes = np.array([2, 0, 2, 1, 0, 2, 1, 0, 2, 1, 0, 1])  # sizes 4, 4, 4: 64 combinations
    labels = np.array([1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0], dtype=bool)
    x = rng.normal(size=(12, 2)) + 0.7 * labels[:, None]
    return codes, labels, x


def test_exact_shift_test_of_a_mean_difference_equals_the_enumeration():
    codes, labels, x = _shift_case()
    result = permutation_test(
        x,
        labels,
        statistic="mean_difference",
        alternative="two-sided",
        shift_within=codes,
        n_permutations=100,
    )
    assert result.exact and result.scheme == "circular shifts"
    assert result.pvalue_rule == "b / M (exact)"
    sizes = [int((codes == c).sum()) for c in np.unique(codes)]
    stats = []
    for combo in itertools.product(*(range(s) for s in sizes)):
        lab = _rolled_in_table_order(labels, codes, combo)
        stats.append(x[lab].mean(axis=0) - x[~lab].mean(axis=0))
    stats = np.array(stats)
    assert result.n_permutations == stats.shape[0] == 64
    np.testing.assert_allclose(result.null_distribution, stats, atol=1e-12)  # same order
    np.testing.assert_allclose(
        np.sort(result.null_distribution, axis=0), np.sort(stats, axis=0), atol=1e-12
    )
    observed = x[labels].mean(axis=0) - x[~labels].mean(axis=0)
    np.testing.assert_allclose(result.statistic, observed, atol=1e-12)
    b = (np.abs(stats) >= np.abs(observed) - 1e-12).sum(axis=0)
    np.testing.assert_allclose(result.pvalue, b / 64)
    maxima = np.abs(stats).max(axis=1)
    b_max = (maxima[:, None] >= np.abs(observed) - 1e-12).sum(axis=0)
    np.testing.assert_allclose(result.pvalue_maxstat, b_max / 64)


def test_exact_shift_test_of_js_equals_scipy_on_the_result_edges():
    codes, labels, x = _shift_case()
    result = permutation_test(x, labels, statistic="js", bins=4, shift_within=codes)
    assert result.exact and result.n_permutations == 64
    sizes = [int((codes == c).sum()) for c in np.unique(codes)]
    stats = []
    for combo in itertools.product(*(range(s) for s in sizes)):
        lab = _rolled_in_table_order(labels, codes, combo)
        row = []
        for j in range(x.shape[1]):
            p = np.histogram(x[lab, j], result.edges[j])[0]
            q = np.histogram(x[~lab, j], result.edges[j])[0]
            row.append(jensenshannon(p, q) ** 2)  # scipy: sqrt of JS in nats
        stats.append(row)
    stats = np.array(stats)
    np.testing.assert_allclose(
        np.sort(result.null_distribution, axis=0), np.sort(stats, axis=0), atol=1e-12
    )
    np.testing.assert_allclose(result.statistic, stats[0], atol=1e-12)
    b = (stats >= stats[0] - 1e-12).sum(axis=0)
    np.testing.assert_allclose(result.pvalue, b / 64)


def test_random_shift_test_equals_a_direct_recomputation_and_keeps_series_counts():
    rng = np.random.default_rng(3)
    n = 400
    codes = rng.integers(0, 6, n)
    labels = rng.random(n) < 0.35
    x = rng.normal(size=(n, 3))
    m, seed = 150, 11
    result = permutation_test(
        x, labels, statistic="mean_difference", shift_within=codes, n_permutations=m, seed=seed
    )
    assert not result.exact and result.scheme == "circular shifts"
    layout = shift_layout(codes, n)
    shifts = np.concatenate(list(random_shifts(layout, m, seed)))
    expected = []
    for row in shifts:
        lab = _rolled_in_table_order(labels, codes, row)
        for c in np.unique(codes):
            assert lab[codes == c].sum() == labels[codes == c].sum()
        expected.append(x[lab].mean(axis=0) - x[~lab].mean(axis=0))
    expected = np.array(expected)
    np.testing.assert_allclose(result.null_distribution, expected, atol=1e-12)
    observed = x[labels].mean(axis=0) - x[~labels].mean(axis=0)
    b = (expected >= observed - 1e-12).sum(axis=0)
    np.testing.assert_allclose(result.pvalue, (b + 1) / (m + 1))
    # shift_labellings: rows in series order, each series' count of True labels kept
    blocks = np.concatenate(
        list(shift_labellings(layout, labels[layout.order], random_shifts(layout, m, seed)))
    )
    for j, (start, size) in enumerate(zip(layout.starts, layout.sizes, strict=True)):
        kept = labels[layout.order][start : start + size].sum()
        assert (blocks[:, start : start + size].sum(axis=1) == kept).all(), j


def _ar1(rng, n, rho, k):
    e = rng.standard_normal((n, k))
    e[0] /= math.sqrt(1 - rho * rho)  # a stationary start
    return lfilter([math.sqrt(1 - rho * rho)], [1.0, -rho], e, axis=0)


def test_shift_test_is_calibrated_under_serial_dependence_where_exchangeable_is_not():
    n_tables, n, alpha = 150, 1000, 0.05
    shift_rejects = exchangeable_rejects = 0
    for seed in range(n_tables):
        rng = np.random.default_rng(1000 + seed)
        x = _ar1(rng, n, 0.9, 3)
        labels = _ar1(rng, n, 0.9, 1)[:, 0] > 0  # independent of x
        kwargs = {"statistic": "mean_difference", "alternative": "two-sided", "seed": seed}
        shifted = permutation_test(
            x, labels, shift_within=np.zeros(n, int), n_permutations=99, **kwargs
        )
        exchangeable = permutation_test(x, labels, n_permutations=99, **kwargs)
        shift_rejects += shifted.pvalue_maxstat.min() <= alpha
        exchangeable_rejects += exchangeable.pvalue_maxstat.min() <= alpha
    bound = alpha + 2 * math.sqrt(alpha * (1 - alpha) / n_tables) + 0.01
    # measured: shift 5 / 150 (0.033), exchangeable 106 / 150 (0.71)
    assert shift_rejects / n_tables <= bound, shift_rejects
    assert exchangeable_rejects / n_tables > 0.3, exchangeable_rejects


def test_strata_and_shift_within_together_are_refused():
    x = np.arange(10.0)
    labels = np.arange(10) % 2 == 0
    with pytest.raises(InputError, match="not both"):
        permutation_test(
            x,
            labels,
            statistic="mean_difference",
            strata=np.zeros(10, int),
            shift_within=np.zeros(10, int),
        )
