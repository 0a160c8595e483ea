"""Cluster-mass p-values over adjacent layers against a plain re-implementation."""

from __future__ import annotations

import numpy as np
import pytest

from lamina.stats.clusters import cluster_pvalues


def _clusters(z, cut):
    runs, start = [], None
    for j in range(len(z) + 1):
        if j < len(z) and z[j] > cut[j]:
            start = j if start is None else start
        elif start is not None:
            runs.append(list(range(start, j)))
            start = None
    return runs


def _plain(observed, null, alternative, center, threshold=0.05):
    """The documented procedure, one labelling and one cluster at a time."""
    mean, sd = null.mean(axis=0), null.std(axis=0, ddof=1)
    base = mean if center is None else center
    z_obs, z_null = (observed - base) / sd, (null - base) / sd
    tails = {"greater": [1], "less": [-1], "two-sided": [1, -1]}[alternative]
    level = threshold / len(tails)
    max_mass = np.zeros(null.shape[0])
    observed_clusters = []
    for sign in tails:
        cut = np.quantile(sign * z_null, 1 - level, axis=0)
        for r in range(null.shape[0]):
            for run in _clusters(sign * z_null[r], cut):
                max_mass[r] = max(max_mass[r], (sign * z_null[r, run]).sum())
        observed_clusters += [
            (run, (sign * z_obs[run]).sum()) for run in _clusters(sign * z_obs, cut)
        ]
    p = np.ones(observed.size)
    for run, mass in observed_clusters:
        value = ((max_mass >= mass * (1 - 1e-13)).sum() + 1) / (null.shape[0] + 1)
        p[run] = np.minimum(p[run], value)
    return p


@pytest.mark.parametrize(
    ("alternative", "center"), [("greater", None), ("two-sided", 0.0), ("less", 0.0)]
)
def test_cluster_pvalues_equal_the_plain_procedure(alternative, center):
    rng = np.random.default_rng(0)
    null = rng.normal(size=(500, 12))
    observed = rng.normal(size=12)
    observed[3:7] = 4.0 if alternative != "less" else -4.0
    observed[9] -= 3.0 if alternative != "less" else -3.0
    got = cluster_pvalues(observed, null, alternative, center=center)
    np.testing.assert_allclose(got, _plain(observed, null, alternative, center))
    assert got[3:7].max() < 0.05  # the four-layer run is one significant cluster
    assert np.unique(got[3:7]).size == 1


def test_an_effect_spread_over_neighbours_is_found_where_max_statistic_is_not():
    from lamina.stats.corrections import maxstat_pvalues

    rng = np.random.default_rng(1)
    null = rng.normal(size=(2000, 30))
    observed = rng.normal(size=30) * 0.2
    observed[10:18] = 2.1  # moderate at each of eight adjacent layers
    cluster = cluster_pvalues(observed, null, "greater", center=None)
    maxstat = maxstat_pvalues(observed, null, "greater")
    assert (cluster[10:18] < 0.05).all() and (maxstat[10:18] > 0.05).all()
    assert (cluster[:10] == 1).all()
