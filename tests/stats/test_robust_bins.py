"""Robust bin edges (central quantile range plus two open end bins) against numpy and scipy.

The reference edges come from ``tests/binning.py``: numpy's quantiles and
``linspace``, nothing of lamina's. The divergences are scipy's
(``jensenshannon`` squared) on ``numpy.histogram`` counts with the same edges.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import scipy.spatial.distance

from binning import TAIL, robust_edges
from lamina.cli import build_parser
from lamina.cli.arguments import study_options
from lamina.errors import InputError
from lamina.stats import bin_edges, outlier_spread, permutation_test, shared_edges
from lamina.stats._kernels import bin_columns
from lamina.stats.histograms import ROBUST_TAIL
from lamina.study import StudyOptions, analyze_table
from lamina.study.parts.layer import layer_histograms, outlier_layers
from study.token_tables import token_table


def _js_bits(a: np.ndarray, b: np.ndarray, edges: np.ndarray) -> float:
    """JS in bits of two samples' histograms on ``edges``: scipy, numpy counts."""
    counts_a, counts_b = np.histogram(a, edges)[0], np.histogram(b, edges)[0]
    return float(scipy.spatial.distance.jensenshannon(counts_a, counts_b, base=2) ** 2)


def _groups(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Log-norms of two groups in about 4.9-5.4: the same mean, different spreads."""
    rng = np.random.default_rng(seed)
    return rng.normal(5.15, 0.03, n), rng.normal(5.15, 0.045, n)


def test_tail_is_the_documented_one():
    assert ROBUST_TAIL == TAIL == 0.005


@pytest.mark.parametrize("bins", [3, 4, 10, 30, 57])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_robust_edges_equal_an_independent_computation(bins, seed):
    rng = np.random.default_rng(seed)
    x = np.concatenate((rng.lognormal(1.0, 0.4, 700), [25.0, -3.0]))
    edges = bin_edges(x, bins, robust=True)
    np.testing.assert_array_equal(edges, robust_edges(x, bins))
    assert edges.size == bins + 1  # both tails here: bins - 2 inner bins and 2 end bins
    assert edges[0] == x.min() and edges[-1] == x.max()
    q_lo, q_hi = np.quantile(x, [0.005, 0.995])
    assert edges[1] == q_lo and edges[-2] == q_hi
    np.testing.assert_allclose(np.diff(edges[1:-1]), (q_hi - q_lo) / (bins - 2), rtol=1e-9)
    assert np.histogram(x, edges)[0].sum() == x.size  # every value in a bin


def test_shared_edges_pool_both_groups_and_default_to_the_range():
    a, b = _groups(300, seed=4)
    pooled = np.concatenate((a, b))
    np.testing.assert_array_equal(shared_edges(a, b, 12, robust=True), robust_edges(pooled, 12))
    np.testing.assert_array_equal(shared_edges(a, b, 12), np.histogram_bin_edges(pooled, 12))
    np.testing.assert_array_equal(bin_edges(pooled, 12), np.histogram_bin_edges(pooled, 12))


def test_an_end_without_a_tail_is_dropped_and_edges_stay_increasing():
    rng = np.random.default_rng(5)
    spread = rng.uniform(1.0, 2.0, 900)
    low_ties = np.concatenate((np.full(50, 1.0), spread))  # min == q(0.005)
    edges = bin_edges(low_ties, 20, robust=True)
    q_hi = np.quantile(low_ties, 0.995)
    np.testing.assert_array_equal(edges, np.append(np.linspace(1.0, q_hi, 19), low_ties.max()))
    assert edges.size - 1 == 19
    both = np.concatenate((np.full(50, 1.0), spread, np.full(50, 2.0)))  # no tail at either end
    edges = bin_edges(both, 20, robust=True)
    np.testing.assert_array_equal(edges, np.linspace(1.0, 2.0, 19))
    assert edges.size - 1 == 18 and (np.diff(edges) > 0).all()
    # 3 bins with no tails would leave 1 bin: the range edges instead
    np.testing.assert_array_equal(bin_edges(both, 3, robust=True), np.linspace(1.0, 2.0, 4))


def test_degenerate_central_range_small_counts_and_rules_keep_the_range_edges():
    x = np.concatenate((np.full(995, 5.0), [1.0, 2.0, 9.0, 9.5, 10.0]))  # q(0.005) == q(0.995)
    np.testing.assert_array_equal(bin_edges(x, 10, robust=True), np.histogram_bin_edges(x, 10))
    constant = np.full(7, 2.0)
    np.testing.assert_array_equal(
        bin_edges(constant, 4, robust=True), np.histogram_bin_edges(constant, 4)
    )
    y = np.random.default_rng(6).normal(size=400)
    np.testing.assert_array_equal(bin_edges(y, 2, robust=True), np.histogram_bin_edges(y, 2))
    for rule in ("fd", "sturges"):
        np.testing.assert_array_equal(
            bin_edges(y, rule, robust=True), np.histogram_bin_edges(y, bins=rule)
        )


def test_one_outlier_moves_the_inner_edges_only_as_much_as_the_quantiles():
    a, b = _groups()
    clean = np.concatenate((a, b))
    dirty = np.append(clean, 10.0)
    before = bin_edges(clean, 30, robust=True)
    after = bin_edges(dirty, 30, robust=True)
    q_clean = np.quantile(clean, [0.005, 0.995])
    q_dirty = np.quantile(dirty, [0.005, 0.995])
    np.testing.assert_array_equal(after[1:-1], np.linspace(*q_dirty, 29))
    np.testing.assert_array_equal(before[1:-1], np.linspace(*q_clean, 29))
    # one more value shifts each quantile by less than one gap between order statistics
    gaps = np.diff(np.sort(clean))
    assert np.abs(q_dirty - q_clean).max() <= gaps.max()
    assert np.abs(after[1:-1] - before[1:-1]).max() < 0.01 * (q_clean[1] - q_clean[0])
    assert after[-1] == 10.0
    # while the range edges get about 17 times wider
    width_clean = np.diff(bin_edges(clean, 30)).mean()
    assert np.diff(bin_edges(dirty, 30)).mean() > 10 * width_clean


def test_js_collapses_on_range_edges_and_not_on_robust_edges():
    correct, incorrect = _groups()
    dirty = incorrect.copy()
    dirty[0] = 10.0  # the first token of a window: a massive activation
    labels = np.concatenate((np.ones(correct.size, bool), np.zeros(dirty.size, bool)))
    clean_pooled = np.concatenate((correct, incorrect))
    dirty_pooled = np.concatenate((correct, dirty))

    js_clean = _js_bits(correct, incorrect, np.histogram_bin_edges(clean_pooled, 30))
    js_range = _js_bits(correct, dirty, np.histogram_bin_edges(dirty_pooled, 30))
    js_robust = _js_bits(correct, dirty, robust_edges(dirty_pooled, 30))
    # scipy's numbers (seeded data): 0.058 bits without the outlier, 0.010 with it on
    # range edges (the central tokens share 3 of the 30 bins), 0.060 on robust edges
    assert (js_clean, js_range, js_robust) == pytest.approx((0.05762, 0.01027, 0.06012), rel=1e-3)
    assert js_range < 0.2 * js_clean
    assert js_robust == pytest.approx(js_clean, rel=0.1)

    # lamina's statistic equals scipy's on the same edges, either binning
    for robust, expected in ((False, js_range), (True, js_robust)):
        res = permutation_test(
            dirty_pooled, labels, bins=30, robust_bins=robust, base=2, n_permutations=9
        )
        assert res.binning == ("robust" if robust else "range")
        assert res.to_dict()["binning"] == res.binning
        assert float(res.statistic[0]) == pytest.approx(expected, rel=1e-10)


def test_outlier_spread_on_clean_and_outlier_data():
    uniform = np.linspace(0.0, 1.0, 2001)
    assert outlier_spread(uniform) == pytest.approx(0.01, abs=1e-12)  # 0.5% at each end
    assert outlier_spread(np.full(9, 3.0)) == 0.0
    assert outlier_spread(uniform, tail=0.0) == 0.0
    a, b = _groups()
    clean = np.concatenate((a, b))
    dirty = np.append(clean, 10.0)
    q_lo, q_hi = np.quantile(dirty, [0.005, 0.995])
    expected = 1 - (q_hi - q_lo) / (dirty.max() - dirty.min())
    assert outlier_spread(dirty) == pytest.approx(expected, rel=1e-12)
    assert outlier_spread(clean) < 0.5 < 0.9 < outlier_spread(dirty)
    with pytest.raises(InputError, match="tail"):
        outlier_spread(clean, tail=0.5)


def test_permutation_test_with_robust_bins_equals_a_direct_loop():
    rng = np.random.default_rng(7)
    values = rng.normal(size=(11, 2))
    values[0, 1] = 12.0  # an outlier in the second column
    labels = np.zeros(11, dtype=bool)
    labels[[1, 2, 6, 9]] = True
    res = permutation_test(values, labels, bins=6, robust_bins=True, n_permutations=400)
    assert res.exact and res.n_permutations == math.comb(11, 4)
    assert res.binning == "robust"
    for j in range(2):
        edges = robust_edges(values[:, j], 6)
        np.testing.assert_array_equal(res.edges[j], edges)
        assert res.n_bins[j] == edges.size - 1
        null = []
        for chosen in itertools.combinations(range(11), 4):
            lab = np.zeros(11, dtype=bool)
            lab[list(chosen)] = True
            null.append(_js_bits(values[lab, j], values[~lab, j], edges) * math.log(2))
        np.testing.assert_allclose(res.null_distribution[:, j], null, rtol=1e-9, atol=1e-12)
        observed = _js_bits(values[labels, j], values[~labels, j], edges) * math.log(2)
        assert res.statistic[j] == pytest.approx(observed, rel=1e-9, abs=1e-12)


def test_bin_columns_threads_robust_bins():
    x = np.random.default_rng(8).normal(size=(300, 3))
    x[5, 2] = 40.0
    edges, n_bins, index, pooled = bin_columns(x, 10, robust_bins=True)
    offsets = np.concatenate(([0], np.cumsum(n_bins)))
    for j in range(3):
        np.testing.assert_array_equal(edges[j], robust_edges(x[:, j], 10))
        counts = np.histogram(x[:, j], edges[j])[0]
        np.testing.assert_array_equal(pooled[offsets[j] : offsets[j + 1]], counts)
        np.testing.assert_array_equal(np.bincount(index[:, j], minlength=n_bins[j]), counts)
    # the statistics without bins, and the rules, record the range
    labels = x[:, 0] > 0
    for kwargs in ({"statistic": "ks"}, {"bins": "fd"}):
        res = permutation_test(x, labels, robust_bins=True, n_permutations=9, **kwargs)
        assert res.binning == "range"


def test_notebook_mode_ignores_robust_bins():
    rng = np.random.default_rng(9)
    values = rng.normal(size=(60, 2))
    values[0] = 9.0
    labels = rng.random(60) < 0.5
    plain = permutation_test(values, labels, bins=10, n_permutations=20, compat="notebook")
    robust = permutation_test(
        values, labels, bins=10, n_permutations=20, compat="notebook", robust_bins=True
    )
    np.testing.assert_array_equal(plain.statistic, robust.statistic)
    np.testing.assert_array_equal(plain.null_distribution, robust.null_distribution)
    assert plain.binning == robust.binning == "range"


# ----------------------------------------------------------------------------- the study


def test_study_options_binning():
    assert StudyOptions().binning == "robust" and StudyOptions().robust_bins
    with pytest.raises(InputError, match="--binning 'foo' is unknown"):
        StudyOptions(binning="foo")
    assert not StudyOptions(binning="range").robust_bins
    assert not StudyOptions(compat="notebook").robust_bins  # the notebook's bins
    assert not StudyOptions(bin_rule="fd").robust_bins  # a rule has its own edges
    assert StudyOptions().to_dict()["binning"] == "robust"
    assert StudyOptions(compat="notebook").to_dict()["binning"] == "range"


@pytest.mark.parametrize("binning", ["robust", "range"])
def test_binning_reaches_the_options_from_the_command_line(binning):
    args = build_parser().parse_args(["analyze", "tokens.parquet", "--binning", binning])
    assert study_options(args).binning == binning
    default = build_parser().parse_args(["analyze", "tokens.parquet"])
    assert study_options(default).binning == "robust"


def _outlier_table():
    """300 tokens, 5 layers; at layers 2-3 the first token's norm is e^10, the rest about e^5."""
    rng = np.random.default_rng(10)
    correct = rng.random(300) < 0.45
    log_norms = rng.normal(5.15, 0.05, size=(300, 5))
    log_norms[correct, 1] += 0.03
    log_norms[0, 2:4] = 10.0
    return correct, log_norms, token_table(correct, np.exp(log_norms).astype(np.float32))


OPTIONS = StudyOptions(
    layer=2, permutations=19, diagnostic_permutations=19, sweep_bins=(5, 6), controls=()
)


def test_part3_names_the_outlier_layers_and_what_the_bins_do():
    _, log_norms, table = _outlier_table()
    p3 = analyze_table(table, OPTIONS, created="x").part3
    assert p3.binning == "robust"
    assert p3.outlier_layers == [2, 3]
    assert p3.binning_note.startswith(
        "At layers 2-3 the 1% most extreme tokens span more than half of the log-norm range"
    )
    assert "robust bins keep the histogram's resolution there (--binning robust)" in p3.binning_note
    values = np.log(np.exp(log_norms).astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(p3.edges, robust_edges(values[:, 2], 30), rtol=1e-12)

    ranged = analyze_table(table, dataclasses.replace(OPTIONS, binning="range"), created="x")
    p3 = ranged.part3
    assert p3.binning == "range" and p3.outlier_layers == [2, 3]
    assert "collapsed" in p3.binning_note
    assert p3.binning_note.endswith("use --binning robust or --exclude first.")
    np.testing.assert_allclose(p3.edges, np.histogram_bin_edges(values[:, 2], 30), rtol=1e-12)
    assert ranged.parameters["binning"] == "range"
    assert ranged.to_dict()["part3"]["outlier_layers"] == [2, 3]

    clean = analyze_table(table, dataclasses.replace(OPTIONS, layer=1), created="x").part3
    assert clean.outlier_layers == [2, 3]  # every analysed layer is checked, not only Part 3's


def test_layer_histograms_without_all_values_checks_its_layer():
    correct, log_norms, _ = _outlier_table()
    one = layer_histograms(log_norms[:, 2], correct, OPTIONS)
    assert one.outlier_layers == [2] and one.binning_note.startswith("At layer 2 the 1%")
    none = layer_histograms(log_norms[:, 1], correct, dataclasses.replace(OPTIONS, layer=1))
    assert none.outlier_layers == [] and none.binning_note is None
    assert outlier_layers(log_norms, [10, 11, 12, 13, 14]) == [12, 13]


def test_a_comparison_treats_binning_as_critical_and_older_runs_as_range():
    from lamina.pipeline.compare_runs import CRITICAL, differences, reanalysis_options, setting

    old = {"bins": 30, "site": "attn_out", "layer": 4}  # a results.json from before --binning
    new = {**old, "binning": "robust"}
    assert setting(old, "binning") == "range"
    assert differences(old, new, CRITICAL) == [("binning", "robust", "range")]
    assert reanalysis_options(old, new).binning == "range"
    assert reanalysis_options(new, old).binning == "robust"
