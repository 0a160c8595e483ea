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


def _plain(observed, null, alternative, center, threshold=0.05, segments=None):
    """The documented procedure, one labelling, one segment and one cluster at a time."""
    segments = [list(range(observed.size))] if segments is None else segments
    mean, sd = null.mean(axis=0), null.std(axis=0, ddof=1)
    base = mean if center is None else center
    z_obs, z_null = (observed - base) / sd, (null - base) / sd
    tails = {"greater": [1], "less": [-1], "two-sided": [1, -1]}[alternative]
    level = threshold / len(tails)
    max_mass = np.zeros(null.shape[0])
    observed_clusters = []
    for sign in tails:
        cut = np.quantile(sign * z_null, 1 - level, axis=0)
        for seg in segments:
            for r in range(null.shape[0]):
                for run in _clusters(sign * z_null[r, seg], cut[seg]):
                    cols = [seg[i] for i in run]
                    max_mass[r] = max(max_mass[r], (sign * z_null[r, cols]).sum())
            for run in _clusters(sign * z_obs[seg], cut[seg]):
                cols = [seg[i] for i in run]
                observed_clusters.append((cols, (sign * z_obs[cols]).sum()))
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


def test_clusters_stay_within_their_segments():
    """Heads' layers (or sites) are separate runs: a cluster never crosses a segment's end."""
    rng = np.random.default_rng(1)
    null = rng.normal(size=(400, 12))
    observed = rng.normal(size=12)
    observed[[1, 4, 7]] = 3.5  # adjacent in the segment (1, 4, 7, 10), not in column order
    segments = [[1, 4, 7, 10], [0, 3, 6, 9], [2, 5, 8, 11]]
    got = cluster_pvalues(observed, null, "greater", segments=segments)
    np.testing.assert_allclose(got, _plain(observed, null, "greater", None, segments=segments))
    assert np.unique(got[[1, 4, 7]]).size == 1 and got[1] < 0.05
    # one segment of every column in order is the default
    np.testing.assert_array_equal(
        cluster_pvalues(observed, null, "greater", segments=[list(range(12))]),
        cluster_pvalues(observed, null, "greater"),
    )
