"""The probe's contract computed directly (float64 numpy, scikit-learn's Ledoit-Wolf), for tests.

``reference_scores(x, correct, fold, method)`` is docs/token-table.md's "Probe scores" written
out from every row's vector: nothing of lamina's sums or directions is used.
"""

from __future__ import annotations

import numpy as np
from sklearn.covariance import ledoit_wolf_shrinkage


def reference_direction(x: np.ndarray, correct: np.ndarray, method: str):
    """``(w, centre, lambda)`` learned on the rows ``x`` with labels ``correct``."""
    x = np.asarray(x, dtype=np.float64)
    m1, m0 = x[correct].mean(axis=0), x[~correct].mean(axis=0)
    centre = (m1 + m0) / 2
    if method == "diffmeans":
        return m1 - m0, centre, None
    centred = np.where(correct[:, None], x - m1, x - m0)
    n, d = x.shape
    sigma = centred.T @ centred / (n - 2)
    shrink = float(ledoit_wolf_shrinkage(centred, assume_centered=True))
    shrunk = (1 - shrink) * sigma + shrink * np.trace(sigma) / d * np.eye(d)
    return np.linalg.solve(shrunk, m1 - m0), centre, shrink


def reference_scores(
    x: np.ndarray, correct: np.ndarray, fold: np.ndarray, method: str
) -> tuple[np.ndarray, list]:
    """Every row's held-out score (the direction of the other folds), and each fold's lambda."""
    scores = np.empty(len(x))
    lambdas = []
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        w, centre, shrink = reference_direction(x[train], correct[train], method)
        scores[test] = (np.asarray(x[test], dtype=np.float64) - centre) @ w
        lambdas.append(shrink)
    return scores, lambdas


def assert_scores_close(actual: np.ndarray, expected: np.ndarray) -> None:
    """float32 scores against float64 ones: relative 1e-4, or 1e-5 of the scores' spread."""
    scale = float(np.nanmax(np.abs(expected)))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)
