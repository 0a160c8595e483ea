"""Synthetic token tables: the model's numbers checked against direct computations."""

from __future__ import annotations

import numpy as np
import pytest

from lamina.errors import InputError
from lamina.stats.simulation import CONFOUNDS, ar1_within_windows, simulate_table


def _lag_corr(x, window, lag=1):
    """Correlation of (x[t], x[t+lag]) over pairs inside one window and over boundary pairs."""
    same = window[lag:] == window[:-lag]
    inside = np.corrcoef(x[:-lag][same], x[lag:][same])[0, 1]
    across = np.corrcoef(x[:-lag][~same], x[lag:][~same])[0, 1]
    return inside, across


def _class_gap(values, labels):
    """Per-column mean(correct) - mean(incorrect) and its standard error."""
    a, b = values[labels], values[~labels]
    gap = a.mean(axis=0) - b.mean(axis=0)
    se = np.sqrt(a.var(axis=0, ddof=1) / len(a) + b.var(axis=0, ddof=1) / len(b))
    return gap, se


def _ols(values, *columns):
    """Least-squares coefficients of values (n, L) on an intercept and the columns."""
    design = np.column_stack([np.ones(values.shape[0]), *columns]).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    return coef


def test_shapes_dtypes_windows_and_covariates():
    tab = simulate_table(2500, 3, window=1024)
    n = 2500
    assert tab.values.shape == (n, 3) and tab.values.dtype == np.float64
    assert tab.true_g.shape == (3,) and tab.true_g.dtype == np.float64
    for name, dtype in [("window", np.int64), ("ctx_pos", np.int64), ("target_chars", np.int64)]:
        assert getattr(tab, name).dtype == dtype and getattr(tab, name).shape == (n,)
    for name in ("input_is_first", "target_repeat", "labels"):
        assert getattr(tab, name).dtype == np.bool_
    assert tab.target_freq.dtype == np.float64
    assert np.bincount(tab.window).tolist() == [1024, 1024, 452]  # the last window is shorter
    assert (tab.ctx_pos == np.concatenate([np.arange(1024)] * 2 + [np.arange(452)])).all()
    assert (tab.input_is_first == (tab.ctx_pos == 0)).all()
    assert set(tab.covariates()) == {
        "ctx_pos",
        "target_chars",
        "target_freq",
        "target_repeat",
        "input_is_first",
    }
    assert tab.covariates()["target_freq"] is tab.target_freq


def test_covariate_distributions():
    tab = simulate_table(40_000, 1, seed=3)
    chars = tab.target_chars
    assert chars.min() >= 1 and chars.max() <= 15
    assert chars.mean() == pytest.approx(4.5, abs=0.05)  # 1 + Poisson(3.5), barely clipped
    log_freq = np.log1p(tab.target_freq)
    assert (tab.target_freq >= 1).all() and (tab.target_freq == np.floor(tab.target_freq)).all()
    assert log_freq.min() < 1.0 and log_freq.max() > 12.0
    assert np.median(log_freq) == pytest.approx(4.0, abs=0.1)
    early, late = tab.target_repeat[tab.ctx_pos < 20], tab.target_repeat[tab.ctx_pos > 800]
    assert early.mean() == pytest.approx(0.22, abs=0.04)
    assert late.mean() == pytest.approx(0.2 + 0.5 * (1 - np.exp(-900 / 200)), abs=0.03)


def test_noise_is_ar1_within_windows_unit_variance_and_shared_across_layers():
    rho = 0.8
    tab = simulate_table(40_000, 4, rho=rho, window=16, seed=1)
    eps = tab.values - tab.params["base"]  # no confound, no effect: the noise itself
    for layer in range(4):
        inside, across = _lag_corr(eps[:, layer], tab.window)
        assert inside == pytest.approx(rho, abs=0.02)
        assert abs(across) < 0.07  # 2,499 boundary pairs: SE 0.02
        assert _lag_corr(eps[:, layer], tab.window, lag=2)[0] == pytest.approx(rho**2, abs=0.03)
        assert eps[:, layer].mean() == pytest.approx(0.0, abs=0.05)
        assert eps[:, layer].var() == pytest.approx(1.0, abs=0.06)
        # the stationary start: the first position of a window has unit variance too
        assert eps[tab.ctx_pos == 0, layer].var() == pytest.approx(1.0, abs=0.12)
    corr = np.corrcoef(eps.T)[np.triu_indices(4, 1)]
    assert np.allclose(corr, tab.params["common_share"], atol=0.04)


def test_ar1_helper_restarts_each_window():
    rng = np.random.default_rng(0)
    x = ar1_within_windows(rng, 100_003, 10, 2, -0.6)
    assert x.shape == (100_003, 2)
    window = np.arange(100_003) // 10
    inside, across = _lag_corr(x[:, 0], window)
    assert inside == pytest.approx(-0.6, abs=0.01)
    assert abs(across) < 0.02
    assert x.var(axis=0) == pytest.approx([1.0, 1.0], abs=0.02)
    assert abs(np.corrcoef(x.T)[0, 1]) < 0.02


@pytest.mark.parametrize("confound", CONFOUNDS)
def test_accuracy_is_near_045_for_every_confound(confound):
    tab = simulate_table(40_000, 1, confound=confound, seed=2)
    assert tab.labels.mean() == pytest.approx(0.45, abs=0.015)


def test_label_serial_dependence_rises_with_label_rho():
    autocorr = {}
    for label_rho in (0.0, 0.5, 0.9):
        tab = simulate_table(40_000, 1, label_rho=label_rho, seed=4)
        autocorr[label_rho] = _lag_corr(tab.labels.astype(float), tab.window)[0]
    assert abs(autocorr[0.0]) < 0.03
    assert 0.1 <= autocorr[0.5] < autocorr[0.9] <= 0.3


def test_planted_effect_is_recovered_given_the_true_confound():
    g = 0.3
    tab = simulate_table(confound="none", effect=g, seed=5)
    assert (tab.true_g == g).all()
    coef = _ols(tab.values, tab.labels)  # h = 0: the labels alone
    assert np.abs(coef[1] - g).max() < 0.05  # SE per layer about 0.012

    tab = simulate_table(confound="step", effect=g, seed=6, window=256)
    coef = _ols(tab.values, tab.labels, tab.ctx_pos < 64)
    assert np.abs(coef[1] - g).max() < 0.05
    assert np.allclose(coef[2], 0.8 * np.linspace(0.3, 1.0, 30), atol=0.08)
    naive = _ols(tab.values, tab.labels)[1]  # leaving the confound out biases g down
    assert (naive < g).all() and naive[-1] < g - 0.05 and naive[-1] < naive[0]

    tab = simulate_table(confound="ushape", effect=g, seed=7)
    log_freq = np.log1p(tab.target_freq)
    f = (log_freq - log_freq.mean()) / log_freq.std()
    coef = _ols(tab.values, tab.labels, f**2)
    assert np.abs(coef[1] - g).max() < 0.05


def test_effect_on_chosen_layers_or_per_layer():
    tab = simulate_table(effect=0.5, effect_layers=[3, 7], seed=8)
    expected = np.zeros(30)
    expected[[3, 7]] = 0.5
    assert (tab.true_g == expected).all()
    coef = _ols(tab.values, tab.labels)[1]
    assert np.abs(coef - expected).max() < 0.05
    per_layer = np.linspace(-0.2, 0.2, 5)
    assert (simulate_table(1000, 5, effect=per_layer).true_g == per_layer).all()


def test_step_confound_associates_norms_and_labels_only_through_position():
    tab = simulate_table(confound="step", window=128, seed=9)
    gap, se = _class_gap(tab.values, tab.labels)
    # marginally incorrect tokens have larger norms, by the step times its share gap
    step = tab.ctx_pos < 64
    expected = (
        0.8 * np.linspace(0.3, 1.0, 30) * (step[tab.labels].mean() - step[~tab.labels].mean())
    )
    assert (np.abs(gap - expected) < 5 * se).all()
    assert (gap < 0).all() and gap[-1] / se[-1] < -8
    for group in (tab.ctx_pos < 64, tab.ctx_pos >= 64):
        gap, se = _class_gap(tab.values[group], tab.labels[group])
        assert (np.abs(gap / se) < 4.5).all()  # the SE ignores serial dependence


def test_first_token_confound():
    tab = simulate_table(confound="first", window=64, seed=10)
    first = tab.input_is_first
    jump = tab.values[first].mean(axis=0) - tab.values[~first].mean(axis=0)
    assert np.allclose(jump, 8 * np.linspace(0.3, 1.0, 30), atol=0.25)
    assert tab.labels[first].mean() < 0.15 < 0.4 < tab.labels[~first].mean()


def test_window_offsets():
    tab = simulate_table(40_000, 2, window=64, window_sd=2.0, seed=11)
    eps = tab.values - tab.params["base"]
    means = np.array([eps[tab.window == w].mean(axis=0) for w in range(tab.window[-1] + 1)])
    # 625 windows: each mean holds the offset (variance 4) and the AR(1) mean (about 0.05)
    assert means.var(axis=0) == pytest.approx([4.05, 4.05], abs=0.6)
    assert np.corrcoef(means.T)[0, 1] > 0.95  # one offset shared by the layers
    plain = simulate_table(40_000, 1, window=64, seed=11)
    shifted = simulate_table(40_000, 1, window=64, window_label_sd=2.0, seed=11)
    spread = [np.bincount(t.window, t.labels).var() for t in (plain, shifted)]
    assert spread[1] > 3 * spread[0]


def test_seeds_reproduce_and_the_effect_reuses_the_same_draws():
    a = simulate_table(5000, 3, confound="early", seed=12)
    b = simulate_table(5000, 3, confound="early", seed=12)
    c = simulate_table(5000, 3, confound="early", seed=13)
    for name in ("values", "labels", "target_freq", "target_chars", "target_repeat"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.values, c.values)
    d = simulate_table(5000, 3, confound="early", seed=12, effect=0.4)
    assert np.array_equal(a.labels, d.labels)
    assert np.allclose(d.values - a.values, 0.4 * a.labels[:, None], atol=1e-12)


def test_full_scale_table_has_the_run_shape():
    tab = simulate_table(confound="ushape", seed=14)
    assert tab.values.shape == (40_000, 30)
    assert np.isfinite(tab.values).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_tokens": 0}, "n_tokens"),
        ({"n_tokens": 10.5}, "n_tokens"),
        ({"n_layers": True}, "n_layers"),
        ({"window": 0}, "window"),
        ({"seed": -1}, "seed"),
        ({"confound": "quadratic"}, "confound"),
        ({"rho": 1.0}, "rho"),
        ({"rho": float("nan")}, "rho"),
        ({"label_rho": -1.0}, "label_rho"),
        ({"label_sd": -0.1}, "label_sd"),
        ({"window_sd": -1.0}, "window_sd"),
        ({"window_label_sd": float("inf")}, "window_label_sd"),
        ({"effect": "large"}, "effect"),
        ({"effect": [0.1, 0.2]}, "effect"),
        ({"effect": [0.1] * 30, "effect_layers": [0]}, "effect_layers"),
        ({"effect": 0.2, "effect_layers": [30]}, "effect_layers"),
        ({"effect": 0.2, "effect_layers": 3}, "effect_layers"),
        ({"effect": 0.2, "effect_layers": [1.5]}, "effect_layers"),
    ],
)
def test_bad_arguments_raise_one_sentence(kwargs, match):
    with pytest.raises(InputError, match=match) as info:
        simulate_table(**{"n_tokens": 100, **kwargs})
    message = str(info.value)
    assert message.endswith(".") and "\n" not in message
