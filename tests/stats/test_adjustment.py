"""The controls' flexible basis: terms, residuals against an explicit least squares, scale."""

from __future__ import annotations

import numpy as np
import pytest

from lamina.errors import InputError
from lamina.stats.adjustment import (
    SCALE_FLOOR,
    control_basis,
    local_scale,
    n_knots,
    spline_columns,
)

N = 3000


def _controls(n=N, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "ctx_pos": np.arange(n) % 700,
        "target_chars": rng.integers(1, 7, n),  # 6 levels, none pooled
        "target_repeat": rng.random(n) < 0.3,
        "entropy": rng.gamma(2.0, 1.0, n),
    }


def _design(controls, n=N):
    """The design ``[1, columns...]`` built by hand from the module's rules."""
    knots = n_knots(n)
    chars = controls["target_chars"]
    return np.column_stack(
        [
            np.ones(n),
            spline_columns(np.log1p(controls["ctx_pos"].astype(float)), knots),
            *[(chars == level).astype(float) for level in range(2, 7)],
            controls["target_repeat"].astype(float),
            spline_columns(controls["entropy"], knots),
        ]
    )


def test_n_knots_grows_as_the_cube_root_within_3_and_20():
    assert n_knots(1000) == 5
    assert n_knots(40_000) == 17
    assert n_knots(10) == 3 and n_knots(1) == 3
    assert n_knots(10**9) == 20
    for n in (500, 5000, 64_000, 200_000):
        assert n_knots(n) == min(20, max(3, round(n ** (1 / 3) / 2)))


def test_terms_by_kind_of_control():
    basis = control_basis(_controls(), N)
    pos, chars, repeat, entropy = basis.terms
    assert pos == f"spline(log(1 + ctx_pos), {n_knots(N)} knots)"
    assert chars.startswith("factor(target_chars, 6 levels")
    assert repeat == "target_repeat"
    assert entropy.startswith("spline(entropy,")
    knots = n_knots(N)
    assert basis.knots == knots
    # 1 + spline (knots + 3 each) + 5 indicators + 1 indicator
    assert basis.n_columns == 1 + 2 * (knots + 3) + 5 + 1 == _design(_controls()).shape[1]
    assert basis.rank == np.linalg.matrix_rank(_design(_controls()))
    np.testing.assert_allclose(basis.q.T @ basis.q, np.eye(basis.rank), atol=1e-10)


def test_a_factor_pools_its_rare_top_levels():
    rng = np.random.default_rng(1)
    chars = rng.integers(1, 9, N)
    chars[[5, 50, 500, 600, 700, 800]] = [12, 13, 14, 12, 13, 14]  # 0.2% of the tokens
    top = np.quantile(chars, 0.995, method="lower")
    assert top == 8  # 12, 13 and 14 join level 8
    basis = control_basis({"target_chars": chars}, N)
    levels = np.unique(np.minimum(chars, top))
    assert basis.terms[0] == f"factor(target_chars, {levels.size} levels, >= {top:g} pooled)"
    design = np.column_stack(
        [np.ones(N)] + [(np.minimum(chars, top) == v).astype(float) for v in levels[1:]]
    )
    y = rng.normal(size=N) + chars
    fit = np.linalg.lstsq(design, y, rcond=None)[0]
    np.testing.assert_allclose(basis.residuals(y)[:, 0], y - design @ fit, atol=1e-9)


def test_residuals_equal_an_explicit_least_squares_and_are_orthogonal_to_every_column():
    controls = _controls()
    basis = control_basis(controls, N)
    design = _design(controls)
    rng = np.random.default_rng(2)
    y = rng.normal(size=(N, 3)) + np.log1p(controls["ctx_pos"])[:, None] * [1, 2, 3]
    fit = np.linalg.lstsq(design, y, rcond=None)[0]
    expected = y - design @ fit
    got = basis.residuals(y)
    np.testing.assert_allclose(got, expected, atol=1e-9)
    np.testing.assert_allclose(basis.fitted(y), design @ fit, atol=1e-9)
    cosines = (design.T @ got) / np.outer(
        np.linalg.norm(design, axis=0), np.linalg.norm(got, axis=0)
    )
    assert np.abs(cosines).max() < 1e-10
    np.testing.assert_allclose(basis.residuals(y[:, 0])[:, 0], expected[:, 0], atol=1e-9)


def test_a_function_in_the_span_is_removed():
    controls = _controls()
    basis = control_basis(controls, N)
    rng = np.random.default_rng(3)
    splines = spline_columns(np.log1p(controls["ctx_pos"].astype(float)), n_knots(N))
    y = 0.5 + splines @ rng.normal(size=splines.shape[1]) + 2.0 * controls["target_repeat"]
    y += 0.7 * (controls["target_chars"] == 4)
    assert np.abs(basis.residuals(y)).max() < 1e-8
    # a cubic of log(1 + ctx_pos) is not exactly in the span, but nearly
    cubic = np.log1p(controls["ctx_pos"]) ** 3
    assert np.abs(basis.residuals(cubic)).max() < 1e-3 * np.abs(cubic).max()


def test_collinear_controls_reduce_the_rank_without_changing_the_residuals():
    controls = _controls()
    duplicated = dict(
        controls,
        again=controls["target_repeat"].copy(),  # an indicator twice
        chars2=controls["target_chars"] + 10,  # the same factor, other codes
        entropy2=controls["entropy"].copy(),  # the same spline
    )
    basis = control_basis(duplicated, N)
    plain = control_basis(controls, N)
    assert basis.n_columns > plain.n_columns and basis.rank == plain.rank
    assert basis.rank < basis.n_columns
    y = np.random.default_rng(4).normal(size=N)
    np.testing.assert_allclose(basis.residuals(y), plain.residuals(y), atol=1e-9)


def test_bad_controls_are_refused():
    controls = _controls()
    broken = controls["entropy"].copy()
    broken[10] = np.nan
    with pytest.raises(InputError, match="NaN"):
        control_basis(dict(controls, entropy=broken), N)
    with pytest.raises(InputError, match="shape"):
        control_basis({"ctx_pos": np.arange(N - 1)}, N)


def test_no_controls_is_the_intercept_alone():
    basis = control_basis({}, 50)
    y = np.arange(50.0) ** 2
    np.testing.assert_allclose(basis.residuals(y)[:, 0], y - y.mean(), atol=1e-9)
    assert basis.rank == basis.n_columns == 1 and basis.terms == []


def test_local_scale_recovers_a_step_in_the_residual_sd():
    n = 20_000
    pos = np.arange(n) % 512
    basis = control_basis({"ctx_pos": pos}, n)
    for seed in range(3):
        r = np.random.default_rng(seed).normal(size=n) * np.where(pos < 100, 1.0, 3.0)
        scale = local_scale(r, basis)[:, 0]
        assert np.median(scale[(pos >= 5) & (pos < 70)]) == pytest.approx(1.0, abs=0.12)
        assert np.median(scale[pos >= 130]) == pytest.approx(3.0, abs=0.1)
        # by definition: the square root of the least-squares fit of r^2, floored
        fitted = basis.fitted(r**2)[:, 0]
        expected = np.sqrt(np.maximum(fitted, SCALE_FLOOR * np.mean(r**2)))
        np.testing.assert_allclose(scale, expected, rtol=1e-12)


def test_local_scale_floor_applies_where_the_fit_goes_below_it():
    n = 4000
    pos = np.arange(n) % 400
    basis = control_basis({"ctx_pos": pos}, n)
    r = np.where(pos < 200, 0.0, np.random.default_rng(5).normal(size=n))
    scale = local_scale(r, basis)[:, 0]
    floor = np.sqrt(SCALE_FLOOR * np.mean(r**2))
    assert scale.min() == pytest.approx(floor, rel=1e-12)
    assert np.median(scale[pos >= 250]) == pytest.approx(1.0, abs=0.15)
