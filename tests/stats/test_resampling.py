"""The block bootstrap: blocks within series, resampled sums, interval coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import lfilter

from lamina.stats import resampling
from lamina.stats.dependence import block_length
from lamina.stats.resampling import make_blocks, percentile_interval, resampled_sums
from lamina.stats.shifts import shift_layout


def _expected_ids(sizes, length):
    """Block ids by hand: runs of ``length`` per series, a tail < length / 2 joins the one before."""
    ids, next_id = [], 0
    for size in sizes:
        runs = []
        t = 0
        while t < size:
            runs.append(min(length, size - t))
            t += length
        if len(runs) > 1 and runs[-1] < length / 2:
            tail = runs.pop()
            runs[-1] += tail
        for r in runs:
            ids.extend([next_id] * r)
            next_id += 1
    return np.array(ids), next_id


@pytest.mark.parametrize("length", [1, 4, 7, 10, 50])
def test_blocks_stay_in_a_series_with_runs_of_length_and_short_tails_joined(length):
    rng = np.random.default_rng(length)
    sizes = [1, 3, 4, 6, 7, 9, 10, 13, 14, 21, 38, 40]
    codes = np.repeat(rng.permutation(len(sizes)), sizes)
    rng.shuffle(codes)
    layout = shift_layout(codes, codes.size)
    blocks = make_blocks(layout, length)
    expected, n_blocks = _expected_ids(layout.sizes.tolist(), length)
    np.testing.assert_array_equal(blocks.ids, expected)
    assert blocks.n_blocks == n_blocks and blocks.length == length
    # ids are 0 .. K-1, each block one contiguous run inside one series
    assert (np.diff(blocks.ids) >= 0).all() and (np.diff(blocks.ids) <= 1).all()
    assert blocks.ids[0] == 0 and blocks.ids[-1] == n_blocks - 1
    series = np.repeat(np.arange(layout.n_series), layout.sizes)
    for b in range(n_blocks):
        members = np.flatnonzero(blocks.ids == b)
        assert np.unique(series[members]).size == 1
        size = members.size
        whole = layout.sizes[series[members[0]]]
        # a full run, a full run plus a short tail, or a tail / short series of its own
        assert size == length or length < size < 1.5 * length or size < length
        if size < length and whole >= length:
            assert size >= length / 2


def test_block_sums_equal_a_direct_groupby():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 5, 333)
    layout = shift_layout(codes, codes.size)
    blocks = make_blocks(layout, 6)
    x = rng.normal(size=(333, 3))
    got = blocks.sums(x)
    expected = np.zeros((blocks.n_blocks, 3))
    for t in range(333):
        expected[blocks.ids[t]] += x[t]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(blocks.sums(x[:, 0])[:, 0], expected[:, 0], atol=1e-12)


@pytest.mark.parametrize("counts_bytes", [resampling.COUNTS_BYTES, 8 * 13 * 7])
def test_each_resample_is_a_count_vector_of_k_blocks_times_the_block_sums(
    counts_bytes, monkeypatch
):
    monkeypatch.setattr(resampling, "COUNTS_BYTES", counts_bytes)  # 7 rows per chunk or all
    rng = np.random.default_rng(1)
    k, b = 13, 500
    counts = resampled_sums(np.eye(k), b, seed=4)
    assert counts.shape == (b, k)
    np.testing.assert_array_equal(counts, np.round(counts))
    assert (counts >= 0).all() and (counts.sum(axis=1) == k).all()
    sums = rng.normal(size=(k, 3))
    np.testing.assert_allclose(resampled_sums(sums, b, seed=4), counts @ sums, atol=1e-12)
    # the counts are multinomial(k, 1/k): each block's count has mean 1 and variance 1 - 1/k
    assert counts.mean() == pytest.approx(1.0)
    assert counts.var() == pytest.approx(1 - 1 / k, rel=0.1)
    np.testing.assert_array_equal(resampled_sums(np.eye(k), b, seed=4), counts)
    assert not np.array_equal(resampled_sums(np.eye(k), b, seed=5), counts)


def test_the_mean_of_resampled_sums_approaches_the_total():
    rng = np.random.default_rng(2)
    sums = rng.normal(2.0, 3.0, size=(40, 2))
    boot = resampled_sums(sums, 20_000, seed=0)
    se = boot.std(axis=0) / math.sqrt(boot.shape[0])
    assert (np.abs(boot.mean(axis=0) - sums.sum(axis=0)) < 4 * se).all()
    # and the variance of a resampled sum is k times the population variance of the block sums
    expected_var = 40 * sums.var(axis=0)
    np.testing.assert_allclose(boot.var(axis=0), expected_var, rtol=0.05)


def test_percentile_interval_equals_numpy_percentiles():
    rng = np.random.default_rng(3)
    boot = rng.normal(size=(999, 4))
    boot[5, 2] = np.nan
    got = percentile_interval(boot, 0.9)
    for j in range(4):
        col = boot[:, j][~np.isnan(boot[:, j])]
        np.testing.assert_allclose(got[j], np.percentile(col, [5, 95]))


def test_block_bootstrap_interval_of_a_mean_covers_at_close_to_95_percent():
    rho, n, draws = 0.5, 2000, 200
    scale = math.sqrt(1 - rho * rho)
    layout = shift_layout(None, n)
    covered = naive = 0
    for seed in range(draws):
        e = np.random.default_rng(seed).standard_normal(n)
        e[0] /= scale
        x = lfilter([scale], [1.0, -rho], e)  # stationary AR(1), mean 0
        parts = np.column_stack((x, np.ones(n)))
        for length, n_boot in ((block_length(x, layout), 1000), (1, 200)):
            boot = resampled_sums(make_blocks(layout, length).sums(parts), n_boot, seed)
            lo, hi = percentile_interval(boot[:, :1] / boot[:, 1:], 0.95)[0]
            if length == 1:
                naive += lo <= 0.0 <= hi
            else:
                covered += lo <= 0.0 <= hi
    # measured: 187 / 200 (0.935) with blocks; single tokens (the iid
    # bootstrap, 200 resamples) 142 / 200 (0.71)
    assert covered / draws >= 0.90, covered
    assert naive / draws < 0.85, naive
