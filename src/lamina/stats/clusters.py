"""Cluster-mass permutation correction over adjacent layers (Maris & Oostenveld 2007).

Given a statistic per layer and its permutation null (rows = shared labellings,
as :func:`lamina.stats.permutation_test` returns), :func:`cluster_pvalues`:

1. standardises every layer by its null: ``z = (T - mean) / sd`` with the
   null's mean and SD (signed statistics: about their value under no effect,
   ``center``, keeping the sign);
2. forms clusters: runs of adjacent layers whose ``z`` passes that layer's
   cluster-forming threshold, the ``1 - threshold`` quantile of its own null
   ``z`` (``threshold`` = 0.05: a raw per-layer permutation p of about 0.05).
   ``'greater'`` uses positive runs, ``'less'`` negative runs, ``'two-sided'``
   both, separately (a run never mixes signs; each tail at ``threshold / 2``);
3. a cluster's mass is the sum of its ``|z|``; each labelling of the null
   contributes its largest cluster mass (0 when it has no cluster);
4. a cluster's p-value is ``(b + 1) / (m + 1)`` with ``b`` the labellings whose
   largest mass is at least the cluster's (``b / M`` for an exact null); every
   layer of the cluster gets that p-value, a layer in no cluster gets 1.

This controls the family-wise error of declaring *some* cluster, in the weak
sense; its claim is "there is an effect somewhere in this run of layers", not
at each layer of it (Sassenhagen & Draschkow 2019). It is more powerful than
the max-statistic when an effect spans neighbouring layers, and weaker
evidence on a cumulative site such as the residual stream, where each layer's
state contains every earlier layer's writes: one early difference persists in
every later layer and builds a long, massive cluster without any later layer
adding to it.
"""

from __future__ import annotations

import numpy as np

from lamina.stats.corrections import check_alternative

#: Raw per-layer level that forms clusters.
CLUSTER_THRESHOLD = 0.05


def cluster_pvalues(
    observed,
    null,
    alternative: str = "greater",
    *,
    center: float | None = None,
    threshold: float = CLUSTER_THRESHOLD,
    includes_observed: bool = False,
    segments=None,
) -> np.ndarray:
    """Per-layer cluster-mass p-values (layers in the columns' order; see the module docstring).

    ``observed``: (L,); ``null``: (m, L) statistics of shared labellings.
    ``center``: the statistic's value under no effect for signed statistics (0,
    or 1/2 for AUROC); None (unsigned statistics) standardises about the null mean.
    ``segments``: sequences of column indices, each one run of adjacent layers in
    order (one head's layers, one site's layers); a cluster never spans two
    segments, and each labelling contributes its largest cluster over all of
    them. None: every column, in order, is one segment.
    """
    check_alternative(alternative)
    obs = np.asarray(observed, dtype=np.float64)
    nul = np.atleast_2d(np.asarray(null, dtype=np.float64))
    mean = nul.mean(axis=0)
    sd = nul.std(axis=0, ddof=1) if nul.shape[0] > 1 else np.zeros(obs.size)
    sd = np.where(sd > 0, sd, np.inf)
    base = mean if center is None else center
    z_obs = (obs - base) / sd
    z_null = (nul - base) / sd
    tails = {"greater": (1,), "less": (-1,), "two-sided": (1, -1)}[alternative]
    level = threshold / len(tails)
    out = np.ones(obs.size)
    null_max = np.zeros(nul.shape[0])
    clusters = []
    if segments is None:
        segments = [np.arange(obs.size)]
    for sign in tails:
        cut = np.quantile(sign * z_null, 1.0 - level, axis=0)
        for segment in segments:
            seg = np.asarray(segment, dtype=np.int64)
            null_max = np.maximum(null_max, _max_run_mass(sign * z_null[:, seg], cut[seg]))
            clusters += [(seg[cols], mass) for cols, mass in _runs(sign * z_obs[seg], cut[seg])]
    m = nul.shape[0]
    for layers, mass in clusters:
        b = int((null_max >= mass * (1 - 100 * np.finfo(np.float64).eps)).sum())
        p = b / m if includes_observed else (b + 1.0) / (m + 1.0)
        out[layers] = np.minimum(out[layers], p)
    return out


def _max_run_mass(z: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """Per row, the largest sum of ``z`` over a run of adjacent columns with ``z > cut``."""
    supra = z > cut
    running = np.zeros(z.shape[0])
    best = np.zeros(z.shape[0])
    for j in range(z.shape[1]):
        running = np.where(supra[:, j], running + z[:, j], 0.0)
        np.maximum(best, running, out=best)
    return best


def _runs(z: np.ndarray, cut: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """The observed clusters: (layer indices, mass) of every run with ``z > cut``."""
    out = []
    start = None
    for j in range(z.size + 1):
        inside = j < z.size and z[j] > cut[j]
        if inside and start is None:
            start = j
        elif not inside and start is not None:
            layers = np.arange(start, j)
            out.append((layers, float(z[layers].sum())))
            start = None
    return out
