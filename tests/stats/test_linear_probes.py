"""Cross-fitted linear probes (lamina.stats.linear_probes) against direct formulas, and the statistics
of held-out scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lamina.errors import InputError
from lamina.stats.discrimination import auroc_of
from lamina.stats.linear_probes import (
    CROSSFIT_VARIANCE,
    block_auroc,
    crossfit,
    crossfit_scores,
    group_folds,
    held_out_auroc,
    ledoit_wolf_shrinkage,
    oriented_by_fold,
    probe_direction,
    saturation_index,
    span_folds,
    widened_interval,
    widened_permutation,
)
from lamina.stats.permutation import permutation_test
from lamina.stats.resampling import make_blocks
from lamina.stats.shifts import shift_layout


def _data(n=600, d=6, seed=0):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d))
    x = rng.normal(size=(n, d)) @ mixing + rng.normal(size=d)
    labels = rng.random(n) < 0.4
    x[labels] += 0.3 * mixing[0]
    return x, labels


def _lw_direct(z: np.ndarray) -> float:
    """Ledoit & Wolf (2004), Lemma 3.2-3.4 with the sample's own moments, written out."""
    n, d = z.shape
    s = z.T @ z / n
    mu = np.trace(s) / d
    d2 = np.linalg.norm(s - mu * np.eye(d), "fro") ** 2 / d
    b2_bar = sum(np.linalg.norm(np.outer(row, row) - s, "fro") ** 2 for row in z) / n**2 / d
    return float(min(b2_bar, d2) / d2)


def test_ledoit_wolf_intensity_is_the_formula_and_scikit_learns():
    rng = np.random.default_rng(1)
    for n, d in ((40, 8), (300, 20), (25, 60)):
        z = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
        assert ledoit_wolf_shrinkage(z) == pytest.approx(_lw_direct(z), rel=1e-10)
    sklearn = pytest.importorskip("sklearn.covariance")
    for n, d in ((50, 10), (200, 40), (1000, 5), (30, 60)):
        z = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
        expected = sklearn.ledoit_wolf_shrinkage(z, assume_centered=True)
        assert ledoit_wolf_shrinkage(z) == pytest.approx(expected, rel=1e-10, abs=1e-14)
    assert ledoit_wolf_shrinkage(rng.normal(size=(10, 1))) == 0.0


def test_lda_direction_is_the_shrunk_pooled_covariance_solve():
    x, labels = _data()
    probe = probe_direction(x, labels, "lda")
    m1, m0 = x[labels].mean(axis=0), x[~labels].mean(axis=0)
    z = np.vstack((x[labels] - m1, x[~labels] - m0))
    n, d = z.shape
    sigma = z.T @ z / (n - 2)
    lam = ledoit_wolf_shrinkage(z)
    shrunk = (1 - lam) * sigma + lam * np.trace(sigma) / d * np.eye(d)
    np.testing.assert_allclose(probe.direction, np.linalg.solve(shrunk, m1 - m0), rtol=1e-10)
    np.testing.assert_allclose(probe.midpoint, (m1 + m0) / 2)
    assert probe.shrinkage == pytest.approx(lam)
    # scikit-learn's shrunk covariance of the class-centred rows is ours times (n - 2) / n
    sklearn = pytest.importorskip("sklearn.covariance")
    theirs, intensity = sklearn.ledoit_wolf(z, assume_centered=True)
    assert intensity == pytest.approx(lam, rel=1e-10)
    np.testing.assert_allclose(theirs * n / (n - 2), shrunk, rtol=1e-9)
    fixed = probe_direction(x, labels, "lda", shrinkage=0.0)
    np.testing.assert_allclose(fixed.direction, np.linalg.solve(sigma, m1 - m0), rtol=1e-9)


def test_crossfit_scores_every_row_by_the_other_folds_only():
    x, labels = _data(n=500)
    folds = span_folds(500, 5)
    x[7, 2] = np.nan  # a non-finite row: NaN score, trains nothing
    for method in ("diffmeans", "lda"):
        scores, directions = crossfit_scores(x, labels, folds, method)
        assert directions.shape == (5, x.shape[1])
        assert np.isnan(scores[7]) and np.isfinite(np.delete(scores, 7)).all()
        for f in range(5):
            train = (folds != f) & np.isfinite(x).all(axis=1)
            m1, m0 = x[train & labels].mean(axis=0), x[train & ~labels].mean(axis=0)
            if method == "diffmeans":
                w = m1 - m0
            else:
                w = probe_direction(x[train], labels[train], "lda").direction
            np.testing.assert_allclose(directions[f], w, rtol=1e-10)
            rows = (folds == f) & np.isfinite(x).all(axis=1)
            np.testing.assert_allclose(scores[rows], (x[rows] - (m1 + m0) / 2) @ w, rtol=1e-9)
    fit = crossfit(x, labels, folds)
    assert fit.n_train.tolist()[0] == [
        int((~labels[(folds != 0) & np.isfinite(x).all(axis=1)]).sum()),
        int(labels[(folds != 0) & np.isfinite(x).all(axis=1)].sum()),
    ]
    assert np.isnan(fit.shrinkage).all()


def test_a_fold_whose_training_lacks_a_class_scores_nan_and_bad_input_is_refused():
    x, _ = _data(n=100)
    labels = np.zeros(100, dtype=bool)
    labels[:20] = True  # only fold 0 has correct tokens
    scores, _ = crossfit_scores(x, labels, span_folds(100, 5))
    assert np.isnan(scores[:20]).all() and np.isfinite(scores[20:]).all()
    with pytest.raises(InputError, match="unknown"):
        crossfit(x, labels, span_folds(100), "svm")
    with pytest.raises(InputError, match="at least 2 folds"):
        crossfit(x, labels, np.zeros(100))
    with pytest.raises(InputError, match="one entry per row"):
        crossfit(x, labels[:50], span_folds(100))


def test_group_folds_keep_series_whole_contiguous_and_balanced():
    sizes = [1024] * 39 + [64]
    codes = np.repeat(np.arange(40), sizes)
    folds = group_folds(codes, 5)
    assert (np.diff(folds) >= 0).all() and set(folds.tolist()) == set(range(5))
    for code in range(40):
        assert np.unique(folds[codes == code]).size == 1
    counts = np.bincount(folds)
    assert np.abs(counts - codes.size / 5).max() <= 1024  # within one series of n / k
    # fewer series than folds: equal contiguous spans
    np.testing.assert_array_equal(group_folds(np.zeros(10), 5), span_folds(10, 5))
    np.testing.assert_array_equal(span_folds(10, 5), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])


def test_oriented_by_fold_is_a_held_out_one_dimensional_probe():
    rng = np.random.default_rng(3)
    labels = rng.random(400) < 0.5
    values = rng.normal(size=(400, 2))
    values[labels, 0] -= 1.0  # correct tokens lower: the orientation flips it
    folds = span_folds(400, 4)
    oriented, signs = oriented_by_fold(values, labels, folds)
    assert (signs[:, 0] == -1).all()
    for f in range(4):
        train, test = folds != f, folds == f
        m1, m0 = values[train & labels, 0].mean(), values[train & ~labels, 0].mean()
        np.testing.assert_allclose(oriented[test, 0], (values[test, 0] - (m1 + m0) / 2) * -1)
    assert auroc_of(oriented[:, 0], labels) > 0.7


def test_block_auroc_is_the_auroc_and_the_held_out_interval_is_widened():
    rng = np.random.default_rng(4)
    labels = rng.random(2000) < 0.4
    scores = rng.normal(size=(2000, 3)) + 0.3 * labels[:, None] * [0, 1, 2]
    blocks = make_blocks(shift_layout(np.zeros(2000, dtype=int)), 20)
    auc, ci = block_auroc(scores, labels, blocks, seed=1)
    for j in range(3):
        assert auc[j] == pytest.approx(auroc_of(scores[:, j], labels), abs=1e-12)
        assert ci[j, 0] < auc[j] < ci[j, 1]
    auc2, wide = held_out_auroc(scores, labels, blocks, seed=1)
    np.testing.assert_allclose(auc2, auc)
    np.testing.assert_allclose(
        wide[:, 1] - wide[:, 0], math.sqrt(CROSSFIT_VARIANCE) * (ci[:, 1] - ci[:, 0])
    )
    np.testing.assert_allclose(widened_interval(auc, ci, 1.0), ci)


def test_widened_permutation_recomputes_every_p_value_from_the_wider_null():
    rng = np.random.default_rng(5)
    labels = rng.random(300) < 0.5
    scores = rng.normal(size=(300, 4)) + 0.25 * labels[:, None] * [0, 0, 1, 2]
    perm = permutation_test(scores, labels, statistic="auroc", n_permutations=199, seed=2)
    same = widened_permutation(perm, 1.0)
    np.testing.assert_allclose(same.null_distribution, perm.null_distribution)
    np.testing.assert_allclose(same.pvalue, perm.pvalue)
    np.testing.assert_allclose(same.pvalue_maxstat, perm.pvalue_maxstat)
    wide = widened_permutation(perm)
    centre = perm.null_distribution.mean(axis=0)
    np.testing.assert_allclose(
        wide.null_distribution - centre, np.sqrt(2.0) * (perm.null_distribution - centre)
    )
    expected = (1 + (wide.null_distribution >= perm.statistic).sum(axis=0)) / 200
    np.testing.assert_allclose(wide.pvalue, expected)
    above = perm.statistic > centre  # a wider null: larger p above its centre
    assert (wide.pvalue[above] >= perm.pvalue[above]).all()
    top = wide.null_distribution.max(axis=1)
    np.testing.assert_allclose(
        wide.pvalue_maxstat, (1 + (top[:, None] >= perm.statistic).sum(axis=0)) / 200
    )


def test_saturation_is_the_first_layer_within_the_peaks_interval():
    auroc = [0.5, 0.62, 0.70, 0.74, 0.73]
    low = [0.48, 0.6, 0.68, 0.71, 0.70]
    assert saturation_index(auroc, low) == 3
    assert saturation_index([0.5, 0.72, 0.74], [0.48, 0.70, 0.71]) == 1
    assert saturation_index([np.nan, np.nan], [np.nan, np.nan]) is None
