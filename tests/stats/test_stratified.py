"""Labellings permuted within strata: counts kept, uniform within strata, exact tests."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats

from lamina.errors import InputError
from lamina.stats._labellings import random_labellings
from lamina.stats._stratified import (
    exact_stratified_labellings,
    strata_layout,
    stratified_labellings,
)
from lamina.stats.permutation import permutation_test


def _in_table_order(block, layout):
    out = np.empty_like(block)
    out[:, layout.order] = block
    return out


@pytest.mark.parametrize("n_strata", [1, 3, 40, 300])
def test_every_labelling_keeps_each_stratum_class_counts(n_strata):
    rng = np.random.default_rng(n_strata)
    n = 1500
    strata = rng.integers(0, n_strata, n)
    labels = rng.random(n) < 0.3
    labels[strata == 0] = True  # a stratum with one class only: its labels never move
    layout = strata_layout(strata, labels)
    rows = 0
    for block in stratified_labellings(layout, 700, seed=5):
        table_order = _in_table_order(block, layout)
        for s in np.unique(strata):
            counts = table_order[:, strata == s].sum(axis=1)
            assert (counts == labels[strata == s].sum()).all()
        rows += block.shape[0]
    assert rows == 700


def test_labellings_are_uniform_within_strata_by_exact_enumeration():
    # strata of 4 (2 True) and 3 (1 True) tokens: 6 x 3 = 18 labellings, equally likely
    strata = np.array([0, 1, 0, 1, 0, 1, 0])
    labels = np.array([1, 1, 0, 0, 1, 0, 0], dtype=bool)
    layout = strata_layout(strata, labels)
    m = 36_000
    blocks = np.concatenate(list(stratified_labellings(layout, m, seed=11)))
    keys = blocks @ (1 << np.arange(labels.size))
    enumerated = np.concatenate(list(exact_stratified_labellings(layout)))
    expected = set((enumerated @ (1 << np.arange(labels.size))).tolist())
    assert len(expected) == math.comb(4, 2) * math.comb(3, 1)
    assert set(keys.tolist()) == expected  # only valid labellings, every one of them
    counts = np.array([(keys == k).sum() for k in sorted(expected)])
    chi2 = scipy.stats.chisquare(counts)
    assert chi2.pvalue > 0.001, counts


def test_the_same_seed_gives_the_same_labellings_and_one_stratum_is_a_valid_permutation():
    rng = np.random.default_rng(0)
    strata = rng.integers(0, 5, 300)
    labels = rng.random(300) < 0.4
    layout = strata_layout(strata, labels)
    first = np.concatenate(list(stratified_labellings(layout, 50, seed=3)))
    again = np.concatenate(list(stratified_labellings(layout, 50, seed=3)))
    other = np.concatenate(list(stratified_labellings(layout, 50, seed=4)))
    assert (first == again).all() and not (first == other).all()
    one = strata_layout(np.zeros(300, dtype=int), labels)
    block = next(stratified_labellings(one, 20, seed=0))
    assert (block.sum(axis=1) == labels.sum()).all()


def test_without_strata_the_labellings_are_those_of_earlier_versions():
    # strata=None must keep the null bit for bit (the golden outputs depend on it)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 3))
    labels = rng.random(200) < 0.4
    result = permutation_test(x, labels, statistic="mean_difference", n_permutations=300, seed=9)
    blocks = np.concatenate(list(random_labellings(200, int(labels.sum()), 300, 9)))
    centred = x - x.mean(axis=0)
    sums = blocks.astype(float) @ centred
    expected = sums / labels.sum() - (centred.sum(axis=0) - sums) / (~labels).sum()
    np.testing.assert_allclose(result.null_distribution, expected, rtol=1e-12, atol=1e-12)


def test_exact_stratified_test_equals_brute_force_enumeration():
    rng = np.random.default_rng(2)
    strata = np.array([0] * 5 + [1] * 4 + [2] * 3)
    labels = np.array([1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0], dtype=bool)
    x = rng.normal(size=(12, 2)) + labels[:, None] * 0.8
    result = permutation_test(
        x,
        labels,
        statistic="mean_difference",
        strata=strata,
        n_permutations=10_000,
        alternative="greater",
    )
    assert result.exact
    stats = []
    per_stratum = [np.flatnonzero(strata == s) for s in range(3)]
    sizes = [int(labels[idx].sum()) for idx in per_stratum]
    for choice in itertools.product(
        *[itertools.combinations(idx, k) for idx, k in zip(per_stratum, sizes, strict=True)]
    ):
        lab = np.zeros(12, dtype=bool)
        lab[list(itertools.chain.from_iterable(choice))] = True
        stats.append(x[lab].mean(axis=0) - x[~lab].mean(axis=0))
    stats = np.array(stats)
    assert result.n_permutations == len(stats) == math.comb(5, 2) * math.comb(4, 2) * 3
    observed = x[labels].mean(axis=0) - x[~labels].mean(axis=0)
    expected = (stats >= observed - 1e-12).mean(axis=0)
    np.testing.assert_allclose(result.pvalue, expected)
    np.testing.assert_allclose(result.statistic, observed)


def test_stratified_histogram_and_moment_statistics_share_the_labellings():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 2))
    labels = rng.random(400) < 0.5
    strata = rng.integers(0, 4, 400)
    kwargs = {"n_permutations": 200, "seed": 1, "strata": strata}
    md = permutation_test(x, labels, statistic="mean_difference", **kwargs)
    g = permutation_test(x, labels, statistic="hedges_g", **kwargs)
    # Hedges' g is a monotone function of the mean difference only given the variances; but
    # the sign of each null row is the same for both under shared labellings
    assert (np.sign(md.null_distribution) == np.sign(g.null_distribution)).all()


def test_bad_strata_are_refused_in_one_sentence():
    x = np.zeros((10, 1)) + np.arange(10)[:, None]
    labels = np.arange(10) % 2 == 0
    with pytest.raises(InputError, match="one integer stratum per token"):
        permutation_test(x, labels, statistic="mean_difference", strata=np.zeros(9, int))
    with pytest.raises(InputError, match="integer stratum codes"):
        permutation_test(x, labels, statistic="mean_difference", strata=np.zeros(10))
