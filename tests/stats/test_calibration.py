"""Calibration at the scale of a real run (40,000 tokens), a fast subset of
``benchmarks/calibration.py``: type-I error, power of either sign, interval coverage.

Each rate is compared with its nominal value within two Monte-Carlo standard
errors. Layers of one table are correlated (a shared noise component), so rates
pooled over layers use the number of tables, not of table-layers, for their
standard error: conservative.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lamina.stats.calibration import ALPHA, Rate, run_cell, run_probe_cell

pytestmark = pytest.mark.slow

N_TOKENS = 40_000


def _bound(n_tables: int, rate: float = ALPHA) -> float:
    return rate + 2 * math.sqrt(rate * (1 - rate) / n_tables)


def test_rate_and_its_monte_carlo_error():
    r = Rate()
    r.add(np.array([True, False, True, True]), 4)
    r.add(False)
    assert r.rate == pytest.approx(3 / 5)
    assert r.se == pytest.approx(math.sqrt(0.6 * 0.4 / 5))
    assert r.to_dict() == {"rate": 0.6, "se": r.se, "hits": 3, "n": 5}


def test_no_direct_effect_under_a_linear_confound_keeps_alpha_and_covers():
    n_tables = 40
    cell = run_cell(
        n_tokens=N_TOKENS,
        n_layers=8,
        confound="linear",
        rho=0.5,
        n_tables=n_tables,
        n_permutations=99,
        seed=100,
    )
    rates = cell["rates"]
    assert rates["part7_fwer"]["rate"] <= _bound(n_tables)
    assert rates["part7_layer_rejection"]["rate"] <= _bound(n_tables)
    assert rates["part7_g_coverage"]["rate"] >= 0.93


def test_dependence_without_a_confound_keeps_part6_at_alpha_where_permutations_fail():
    # few layers, many tables: the layers of one table share half their noise, so tables,
    # not layers, carry the Monte-Carlo information
    n_tables = 80
    cell = run_cell(
        n_tokens=N_TOKENS,
        n_layers=3,
        confound="none",
        rho=0.9,
        n_tables=n_tables,
        n_permutations=99,
        exchangeable=True,
        seed=200,
    )
    rates = cell["rates"]
    assert rates["part6_shift_fwer"]["rate"] <= _bound(n_tables)
    assert rates["part6_exchangeable_fwer"]["rate"] > 4 * ALPHA  # the failure the shifts fix
    assert rates["part7_fwer"]["rate"] <= _bound(n_tables)
    assert rates["part7_g_coverage"]["rate"] >= 0.93
    assert rates["part6_g_coverage"]["rate"] >= 0.93


def test_power_is_the_same_for_either_sign():
    # common random numbers: the same tables with +g and -g planted at layers 2-4
    found = {}
    n_tables = 20
    for effect in (0.03, -0.03):
        cell = run_cell(
            n_tokens=N_TOKENS,
            n_layers=8,
            confound="linear",
            rho=0.5,
            effect=effect,
            effect_layers=(2, 3, 4),
            n_tables=n_tables,
            n_permutations=99,
            part6=False,
            seed=300,
        )
        found[effect] = cell["rates"]["part7_effect_layers_found"]["rate"]
        assert cell["rates"]["part7_g_coverage"]["rate"] >= 0.93
    assert 0.2 < found[0.03] < 1.0 and 0.2 < found[-0.03] < 1.0
    # the difference of two rates over 20 tables each, two Monte-Carlo SEs
    p = (found[0.03] + found[-0.03]) / 2
    assert abs(found[0.03] - found[-0.03]) <= 2 * math.sqrt(2 * p * (1 - p) / n_tables)


def test_part8_keeps_alpha_and_covers_at_scale_where_fixed_scores_do_not():
    # 40,000 tokens, 30 layers of 32-dimensional vectors that carry nothing, serially dependent
    # labels and vectors (rho 0.5), cross-fitted over 5 folds of whole windows
    n_tables = 10
    cell = run_probe_cell(n_tokens=N_TOKENS, n_layers=30, n_tables=n_tables, n_permutations=99)
    rates = cell["rates"]
    assert rates["probe_fwer"]["rate"] <= _bound(n_tables)
    assert rates["probe_layer_rejection"]["rate"] <= _bound(n_tables)
    assert rates["probe_auroc_coverage"]["rate"] >= 0.93
    assert rates["norm_auroc_coverage"]["rate"] >= 0.93
    # the shift null and the bootstrap with the scores held fixed: too narrow (the widening's
    # reason, lamina.stats.linear_probes)
    assert rates["probe_layer_rejection_fixed"]["rate"] > 1.5 * ALPHA
    assert rates["probe_auroc_coverage_fixed"]["rate"] < 0.9
