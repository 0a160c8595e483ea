"""Strata from controls: quantile bins, crossing, the merging rule, effects within strata."""

from __future__ import annotations

import numpy as np
import pytest

from lamina.stats.effects import hedges_correction, hedges_g, hedges_g_ci
from lamina.stats.strata import (
    MIN_STRATUM_TOKENS,
    make_strata,
    merge_sparse,
    quantile_bins,
    standardised_mean_difference,
    stratified_hedges_g,
)


def test_quantile_bins_follow_numpy_quantiles_and_binary_covariates_keep_their_values():
    rng = np.random.default_rng(0)
    x = rng.normal(size=1001)
    codes = quantile_bins(x, 4)
    cuts = np.quantile(x, [0.25, 0.5, 0.75])
    expected = (x >= cuts[0]).astype(int) + (x >= cuts[1]) + (x >= cuts[2])
    assert (codes == expected).all()
    assert np.bincount(codes).tolist() == [250, 250, 250, 251]
    flags = rng.random(50) < 0.3
    assert (quantile_bins(flags, 4) == flags).all()
    # heavy ties: repeated cut points are dropped, so fewer bins
    tied = np.array([1, 1, 1, 1, 1, 1, 2, 3, 4, 5])
    assert np.unique(quantile_bins(tied, 4)).size < 4


def _brute_force_merge(size, n_true, block, min_tokens):
    """The documented rule, written plainly: pools of consecutive cells within each block."""

    def sparse(pool):
        total, true = sum(size[i] for i in pool), sum(n_true[i] for i in pool)
        return total < min_tokens or true in (0, total)

    out, next_id = np.empty(len(size), dtype=int), 0
    for b in dict.fromkeys(block.tolist()):
        pools, current = [], []
        for j in np.flatnonzero(block == b):
            current.append(j)
            if not sparse(current):
                pools.append(current)
                current = []
        if current:
            if pools:
                pools[-1] += current  # a sparse pool at the block's end joins the previous one
            else:
                pools.append(current)
        for pool in pools:
            out[pool] = next_id
            next_id += 1
    return out


@pytest.mark.parametrize("seed", range(6))
def test_merging_follows_the_documented_rule(seed):
    rng = np.random.default_rng(seed)
    cells = 40
    size = rng.integers(1, 15, cells)
    n_true = rng.binomial(size, 0.4)
    block = np.sort(rng.integers(0, 3, cells))
    pool = merge_sparse(size, n_true, block, MIN_STRATUM_TOKENS)
    assert (pool == _brute_force_merge(size, n_true, block, MIN_STRATUM_TOKENS)).all()
    # pools are contiguous, never cross a block, and are informative unless the block is not
    assert (np.diff(pool) >= 0).all()
    for p in np.unique(pool):
        members = pool == p
        assert np.unique(block[members]).size == 1
        whole = block == block[members][0]
        block_informative = size[whole].sum() >= 10 and 0 < n_true[whole].sum() < size[whole].sum()
        if block_informative:
            total, true = size[members].sum(), n_true[members].sum()
            assert total >= 10 and 0 < true < total


def test_make_strata_crosses_controls_and_blocks():
    rng = np.random.default_rng(1)
    n = 2000
    controls = {"a": rng.normal(size=n), "flag": rng.random(n) < 0.5}
    labels = rng.random(n) < 0.4
    blocks = np.repeat(np.arange(4), n // 4)
    strata = make_strata(controls, labels, n_bins=4, blocks=blocks)
    assert strata.n_cells == 4 * 4 * 2 and strata.n_strata == 32 and strata.n_sparse_cells == 0
    assert strata.bins == {"a": 4, "flag": 2} and strata.n_blocks == 4
    for s in range(strata.n_strata):  # each stratum lies in one block and one bin of each
        members = strata.codes == s
        assert np.unique(blocks[members]).size == 1
        assert np.unique(quantile_bins(controls["a"], 4)[members]).size == 1


def test_hedges_g_within_strata_equals_a_direct_computation():
    rng = np.random.default_rng(2)
    n = 500
    codes = rng.integers(0, 6, n)
    labels = rng.random(n) < 0.4
    x = rng.normal(size=(n, 2)) + codes[:, None] * 0.5 + labels[:, None] * [0.3, 0.0]
    g, low, high = stratified_hedges_g(x, labels, codes)
    for j in range(2):
        num = den = ss = 0.0
        total = 0
        for s in range(6):
            a = x[(codes == s) & labels, j]
            b = x[(codes == s) & ~labels, j]
            w = a.size * b.size / (a.size + b.size)
            num += w * (a.mean() - b.mean())
            den += w
            ss += ((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()
            total += a.size + b.size
        df = total - 12
        expected = hedges_correction(df) * num / den / np.sqrt(ss / df)
        se = np.sqrt(1 / den + expected**2 / (2 * total))
        assert g[j] == pytest.approx(expected, rel=1e-12)
        assert low[j] == pytest.approx(expected - 1.959963984540054 * se, rel=1e-12)
        assert high[j] == pytest.approx(expected + 1.959963984540054 * se, rel=1e-12)
    # the confound (codes) inflates the raw g of column 1; within strata it is near 0
    raw = hedges_g(x[labels, 1], x[~labels, 1])
    assert abs(g[1]) < abs(raw) or abs(g[1]) < 0.2


def test_one_stratum_is_hedges_g_with_its_interval():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 1))
    labels = rng.random(300) < 0.4
    x[labels] += 0.4
    g, low, high = stratified_hedges_g(x, labels, np.zeros(300, int))
    expected = hedges_g(x[labels, 0], x[~labels, 0])
    assert g[0] == pytest.approx(expected, rel=1e-12)
    lo, hi = hedges_g_ci(expected, int(labels.sum()), int((~labels).sum()))
    assert (low[0], high[0]) == pytest.approx((lo, hi), rel=1e-12)


def test_standardised_mean_difference():
    rng = np.random.default_rng(4)
    x = rng.normal(size=400)
    labels = rng.random(400) < 0.5
    x[labels] += 1.0
    expected = (x[labels].mean() - x[~labels].mean()) / np.sqrt(
        (x[labels].var(ddof=1) + x[~labels].var(ddof=1)) / 2
    )
    assert standardised_mean_difference(x, labels) == pytest.approx(expected)
    # within strata of the covariate itself the imbalance shrinks
    codes = quantile_bins(x, 8)
    assert abs(standardised_mean_difference(x, labels, codes)) < abs(expected) / 2
