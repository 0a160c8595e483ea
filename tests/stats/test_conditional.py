"""The conditional test: residual correlation, its shift null, p-values, controlled effects."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from statsmodels.stats.multitest import multipletests

from lamina.errors import InputError
from lamina.stats.adjustment import control_basis, local_scale, n_knots, spline_columns
from lamina.stats.conditional import conditional_test, controlled_effects, residualise
from lamina.stats.resampling import make_blocks
from lamina.stats.shifts import random_shifts, shift_layout
from lamina.stats.simulation import simulate_table

_TOL = 100 * np.finfo(np.float64).eps  # lamina.stats.corrections' relative tie tolerance


def _table(n, seed, windows=1, effect=0.0):
    """Values (n, 3) and labels with a position confound; ``windows`` series of equal length."""
    rng = np.random.default_rng(seed)
    pos = np.arange(n) % (n // windows)
    trend = np.log1p(pos)
    labels = rng.random(n) < 1 / (1 + np.exp(-(trend - trend.mean())))
    x = rng.normal(size=(n, 3)) + 0.5 * trend[:, None]
    x[:, 1] += effect * labels
    return x, labels, {"ctx_pos": pos}, np.arange(n) // (n // windows)


def _correlation(wx, wy):
    return np.array(
        [
            np.sum(wx[:, j] * wy) / math.sqrt(np.sum(wx[:, j] ** 2) * np.sum(wy**2))
            for j in range(wx.shape[1])
        ]
    )


def _rolled_stats(wx, wy, layout, shifts):
    """The statistic of ``wy`` rolled left by ``shifts[r, j]`` in each series j, by hand."""
    out = []
    for row in shifts:
        moved = np.concatenate(
            [
                np.roll(wy[start : start + size], -int(k))
                for start, size, k in zip(layout.starts, layout.sizes, row, strict=True)
            ]
        )
        out.append(_correlation(wx, moved))
    return np.array(out)


def _count(observed, null):
    """b of lamina.stats.corrections, two-sided about 0: |null| >= |obs| (1 - 100 eps)."""
    a = np.abs(observed)
    return (np.abs(null) >= a - _TOL * a).sum(axis=0)


def test_residualise_and_the_statistic_equal_a_direct_computation():
    x, labels, controls, codes = _table(600, 0, windows=3, effect=0.4)
    basis = control_basis(controls, 600)
    res = residualise(x, labels, basis)
    design = np.column_stack(
        [np.ones(600), spline_columns(np.log1p(controls["ctx_pos"].astype(float)), n_knots(600))]
    )
    rx = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
    ry = labels - design @ np.linalg.lstsq(design, labels.astype(float), rcond=None)[0]
    np.testing.assert_allclose(res.rx, rx, atol=1e-9)
    np.testing.assert_allclose(res.ry, ry, atol=1e-9)
    np.testing.assert_allclose(res.wx, rx / local_scale(rx, basis), rtol=1e-9)
    np.testing.assert_allclose(res.wy, ry / local_scale(ry, basis)[:, 0], rtol=1e-9)
    assert res.dof == 600 - basis.rank - 1
    test = conditional_test(res, shift_layout(codes, 600), n_permutations=99)
    np.testing.assert_allclose(test.statistic, _correlation(res.wx, res.wy), rtol=1e-12)
    assert test.statistic[1] > 0.1  # correct tokens have larger norms in column 1


def test_the_exact_null_is_every_rotation_of_the_labels():
    x, labels, controls, _ = _table(50, 1)
    res = residualise(x, labels, control_basis(controls, 50))
    layout = shift_layout(None, 50)
    test = conditional_test(res, layout, n_permutations=50)
    assert test.exact and test.n_permutations == 50 and test.scheme == "shift"
    expected = _rolled_stats(res.wx, res.wy, layout, np.arange(50)[:, None])
    # the null is accumulated in float32: equal to the float64 statistic to about 1e-7
    np.testing.assert_allclose(test.null_distribution, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        np.sort(test.null_distribution, axis=0), np.sort(expected, axis=0), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(test.null_sd, test.null_distribution.std(axis=0))
    b = _count(test.statistic, test.null_distribution)
    np.testing.assert_allclose(test.pvalue, b / 50)
    studentised = test.null_distribution / test.null_sd
    maxima = np.abs(studentised).max(axis=1)
    b_max = _count(test.statistic / test.null_sd, np.broadcast_to(maxima[:, None], (50, 3)))
    np.testing.assert_allclose(test.pvalue_maxstat, b_max / 50)


def test_the_exact_pvalue_counts_the_observed_alignment():
    # seeds 44, 47, 61, 69, 83, 158 of 0..199 give a p-value of 0 in some column
    for seed in (44, 47, 61, 69, 83):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(50, 3))
        labels = rng.random(50) < 0.5
        res = residualise(x, labels, control_basis({"ctx_pos": np.arange(50)}, 50))
        layout = shift_layout(None, 50)
        test = conditional_test(res, layout, n_permutations=100)
        assert test.exact
        exact64 = _rolled_stats(res.wx, res.wy, layout, np.arange(50)[:, None])
        assert (test.pvalue >= 1 / 50).all(), (seed, test.pvalue)
        assert (test.pvalue_maxstat >= 1 / 50).all(), (seed, test.pvalue_maxstat)
        np.testing.assert_allclose(test.pvalue, _count(test.statistic, exact64) / 50)


def test_an_exact_test_of_too_many_shifts_is_refused_in_one_sentence():
    n = 3000
    x, labels, controls, codes = _table(n, 5, windows=3)  # 1000^3 shift combinations
    res = residualise(x, labels, control_basis(controls, n))
    with pytest.raises(InputError):
        conditional_test(res, shift_layout(codes, n), exact=True)


def test_random_shift_pvalues_and_the_studentised_max_statistic_equal_a_direct_computation():
    n, m, seed = 1200, 199, 3
    x, labels, controls, codes = _table(n, 2, windows=4, effect=0.15)
    x[:, 2] *= 3.0  # a wider column: the studentised max does not favour it
    res = residualise(x, labels, control_basis(controls, n))
    layout = shift_layout(codes, n)
    test = conditional_test(res, layout, n_permutations=m, seed=seed)
    assert not test.exact and test.n_permutations == m and test.seed == seed
    shifts = np.concatenate(list(random_shifts(layout, m, seed)))
    expected = _rolled_stats(res.wx, res.wy, layout, shifts)
    np.testing.assert_allclose(test.null_distribution, expected, rtol=1e-5, atol=1e-6)
    null = test.null_distribution
    sd = null.std(axis=0)
    np.testing.assert_allclose(test.null_sd, sd)
    np.testing.assert_allclose(test.pvalue, (_count(test.statistic, null) + 1) / (m + 1))
    maxima = np.abs(null / sd).max(axis=1)
    observed = np.abs(test.statistic / sd)
    b_max = np.array([(maxima >= o - _TOL * o).sum() for o in observed])
    np.testing.assert_allclose(test.pvalue_maxstat, (b_max + 1) / (m + 1))
    np.testing.assert_allclose(test.pvalue_holm, multipletests(test.pvalue, method="holm")[1])
    np.testing.assert_allclose(
        test.pvalue_fdr, scipy.stats.false_discovery_control(test.pvalue, method="bh")
    )
    assert test.pvalue[1] < 0.05  # the planted effect


def test_the_exchangeable_scheme_permutes_within_series_and_bad_options_are_refused():
    n = 400
    x, labels, controls, codes = _table(n, 3, windows=2)
    res = residualise(x, labels, control_basis(controls, n))
    layout = shift_layout(codes, n)
    test = conditional_test(res, layout, n_permutations=99, scheme="exchangeable", seed=1)
    assert test.scheme == "exchangeable" and not test.exact
    # a permutation keeps the sum of squares, so every null row is a correlation in [-1, 1]
    assert np.abs(test.null_distribution).max() <= 1.0
    np.testing.assert_allclose(test.statistic, _correlation(res.wx, res.wy), rtol=1e-12)
    with pytest.raises(InputError, match="unknown"):
        conditional_test(res, layout, scheme="blocks")
    with pytest.raises(InputError, match="shift scheme only"):
        conditional_test(res, layout, scheme="exchangeable", exact=True)
    with pytest.raises(InputError, match="predict every label"):
        residualise(x, np.arange(n) % 2 == 0, control_basis({"odd": np.arange(n) % 2}, n))


def test_controlled_effects_equal_the_partial_regression_coefficient():
    n = 2000
    x, labels, controls, codes = _table(n, 4, windows=2, effect=0.5)
    basis = control_basis(controls, n)
    res = residualise(x, labels, basis)
    layout = shift_layout(codes, n)
    effects = controlled_effects(res, make_blocks(layout, 25), n_bootstrap=500, seed=2)
    design = np.column_stack(
        [
            labels.astype(float),
            np.ones(n),
            spline_columns(np.log1p(controls["ctx_pos"].astype(float)), n_knots(n)),
        ]
    )
    for j in range(3):
        coef, rss, rank, _ = np.linalg.lstsq(design, x[:, j], rcond=None)
        assert rank == basis.rank + 1
        sd = math.sqrt(rss[0] / (n - basis.rank - 1))
        assert effects.difference[j] == pytest.approx(coef[0], rel=1e-9)
        assert effects.hedges_g[j] == pytest.approx(coef[0] / sd, rel=1e-9)
    assert effects.difference[1] == pytest.approx(0.5, abs=0.15)
    for estimate, interval in (
        (effects.difference, effects.difference_ci),
        (effects.hedges_g, effects.hedges_g_ci),
    ):
        assert interval.shape == (3, 2)
        assert (interval[:, 0] <= estimate).all() and (estimate <= interval[:, 1]).all()
    assert effects.n_bootstrap == 500


def test_symmetric_power_and_a_calibrated_null_on_simulated_tables():
    n, n_tables, alpha = 5000, 60, 0.05
    effects = (0.0, 0.15, -0.15, 0.05, -0.05)
    rejected = {g: [] for g in effects}
    for seed in range(n_tables):
        # common random numbers: one seed gives the same covariates, labels and noise for every
        # effect, and each column's p-value depends on its own column only, so the tables of
        # every effect are tested side by side (5 columns each) on the same shifts
        tables = [
            simulate_table(n, 5, confound="linear", effect=g, effect_layers=[2], seed=seed)
            for g in effects
        ]
        assert all((tab.labels == tables[0].labels).all() for tab in tables)
        basis = control_basis(tables[0].covariates(), n)
        values = np.hstack([tab.values for tab in tables])
        res = residualise(values, tables[0].labels, basis)
        test = conditional_test(
            res, shift_layout(tables[0].window, n), n_permutations=199, seed=seed
        )
        for i, g in enumerate(effects):
            rejected[g].append(test.pvalue[5 * i : 5 * i + 5] <= alpha)
    rates = {g: np.mean(r, axis=0) for g, r in rejected.items()}
    # measured: effect 0 per layer 0, 0.033, 0.05, 0.05, 0.033; +-0.15 on layer 2: 1.0 and 1.0;
    # +-0.05: 0.317 and 0.317 (19 tables rejected for + only, 19 for - only)
    se = math.sqrt(alpha * (1 - alpha) / n_tables)
    assert (rates[0.0] <= alpha + 2 * se).all(), rates[0.0]
    for g in (0.15, 0.05):
        plus, minus = np.array(rejected[g])[:, 2], np.array(rejected[-g])[:, 2]
        discordant = int((plus != minus).sum())
        assert abs(int(plus.sum()) - int(minus.sum())) <= 2 * math.sqrt(discordant) + 1
    assert rates[0.15][2] >= 0.9 and rates[-0.15][2] >= 0.9
    assert 0.1 < rates[0.05][2] < 0.9
