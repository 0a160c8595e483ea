"""Token tables with held-out probe scores (the Part 8 contract), built from synthetic vectors.

:func:`planted_vectors` draws every layer's vectors so that the two classes have the same
distribution of norms at every layer and differ, at ``planted`` layers only, along one
direction: ``x = R z + c`` with ``R`` a random rotation, ``z`` serially dependent unit
normals (AR(1) within windows), ``c = 3 R e_2`` a common offset orthogonal to the planted
direction ``u = R e_1``, and at a planted layer ``z_1`` replaced by ``+|z_1|`` or ``-|z_1|``,
the sign that of the label (+ correct) with probability ``agreement``. The sign of a
coordinate does not move the norm (``|x|^2 = |z|^2 + 9 + 6 z_2``), so the norms of both
classes are identically distributed; the class means differ by
``2 (2 agreement - 1) sqrt(2 / pi) u``.

:func:`probe_table` writes the vectors' norms as the site's columns and their cross-fitted
scores (:func:`lamina.stats.linear_probes.crossfit`) as ``probe.{site}.{layer}``, with ``fold`` and
the ``probe`` metadata, as the extraction does.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
from scipy.special import expit
from scipy.stats import special_ortho_group

from lamina.stats.linear_probes import crossfit, group_folds
from lamina.stats.simulation import ar1_within_windows
from study.token_tables import token_table


def planted_vectors(
    n_tokens: int,
    n_layers: int,
    dim: int,
    *,
    planted: tuple[int, ...] = (),
    agreement: float = 0.7,
    rho: float = 0.5,
    window: int = 1024,
    seed: int = 0,
):
    """``(labels (n,), vectors: list of (n, dim) per layer, directions (n_layers, dim))``:
    labels from a latent AR(1) series within windows (accuracy about 0.45), vectors as the
    module docstring says; ``directions[l]`` is the planted unit direction ``R_l e_1``."""
    rng = np.random.default_rng(seed)
    latent = 1.5 * ar1_within_windows(rng, n_tokens, window, 1, rho)[:, 0]
    labels = rng.random(n_tokens) < expit(-0.25 + latent)
    sign = np.where(labels, 1.0, -1.0)
    vectors, directions = [], []
    for layer in range(n_layers):
        rotation = special_ortho_group.rvs(dim, random_state=rng)
        z = ar1_within_windows(rng, n_tokens, window, dim, rho)
        if layer in planted:
            agree = rng.random(n_tokens) < agreement
            z[:, 0] = np.abs(z[:, 0]) * np.where(agree, sign, -sign)
        vectors.append(z @ rotation.T + 3.0 * rotation[:, 1])
        directions.append(rotation[:, 0])
    return labels, vectors, np.array(directions)


def probe_table(
    labels: np.ndarray,
    vectors: list[np.ndarray],
    *,
    method: str = "diffmeans",
    site: str = "attn_out",
    window: int = 1024,
    folds: int = 5,
    seed: int = 0,
) -> tuple[pa.Table, list]:
    """A token table with the vectors' norms and cross-fitted probe scores (windows of
    ``window`` tokens, folds of whole windows); also each layer's :class:`CrossFit`."""
    n = labels.size
    t = np.arange(n)
    windows = {
        "mode": "all",
        "window": window,
        "stride": window,
        "bos": False,
        "batch_size": 1,
        "max_tokens": None,
        "n_windows": int(-(-n // window)),
    }
    norms = np.column_stack([np.linalg.norm(x, axis=1) for x in vectors])
    chars = np.random.default_rng(seed).integers(1, 9, n)
    table = token_table(
        labels, norms, site=site, ctx_pos=t % window, target_chars=chars, windows=windows, seed=seed
    )
    table = table.set_column(
        table.column_names.index("window"), "window", pa.array((t // window).astype(np.int32))
    )
    fold = group_folds(t // window, folds)
    fits = [crossfit(x, labels, fold, method) for x in vectors]
    table = table.append_column("fold", pa.array(fold.astype(np.int16)))
    for layer, fit in enumerate(fits):
        table = table.append_column(
            f"probe.{site}.{layer}", pa.array(fit.scores.astype(np.float32))
        )
    meta = json.loads(table.schema.metadata[b"lamina"])
    meta["probe"] = {
        "method": method,
        "folds": folds,
        "fold_unit": "window" if windows["n_windows"] >= folds else "span",
        "sites": [site],
        "centring": "midpoint of the other folds' class means",
        "n_per_fold": [
            [int((~labels[fold == f]).sum()), int(labels[fold == f].sum())] for f in range(folds)
        ],
        "sign": "correct minus incorrect",
    }
    return table.replace_schema_metadata({"lamina": json.dumps(meta)}), fits
