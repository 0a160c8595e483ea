"""A cross-fitted probe's arithmetic: class sums per fold, their totals, the held-out directions.

Pass 1 of a probed extraction accumulates, per probed vector (site and layer), fold
``f`` and class ``c`` (0: incorrect, 1: correct), over the rows ``i`` of that fold and
class: ``n``, ``sum x_i`` and, for ``lda``, ``sum x_i x_i^T``, ``sum |x_i|^2 x_i`` and
``sum |x_i|^4`` (float64). Each shard's sums (:class:`ShardSums`) are saved with it
and added, in plan order, into :class:`Totals`. The direction for fold ``f`` uses
the other folds only (training rows: folds ``g != f``):

* ``m_c`` = the training rows' mean of class ``c``; ``centre = (m_1 + m_0) / 2``;
* ``diffmeans``: ``w_f = m_1 - m_0``;
* ``lda``: ``C = sum_c (sum x x^T - n_c m_c m_c^T)``, the pooled within-class scatter;
  ``Sigma = C / (n - 2)``; ``lambda`` the Ledoit-Wolf intensity of the class-centred
  training rows ``y_i = x_i - m_{c(i)}`` (:func:`ledoit_wolf_intensity`, exactly
  ``sklearn.covariance.ledoit_wolf_shrinkage(Y, assume_centered=True)``);
  ``w_f = ((1 - lambda) Sigma + lambda tr(Sigma) / d I)^{-1} (m_1 - m_0)``.

A row of fold ``f`` scores ``(x - centre_f) . w_f``; a fold whose training rows lack
a class (or, for ``lda``, have fewer than three rows) has NaN directions.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from lamina._io import atomic_path

FIELDS_1 = ("sum",)
FIELDS_2 = ("sum", "xx", "qx", "q4")


def fields(second_moments: bool) -> tuple[str, ...]:
    return FIELDS_2 if second_moments else FIELDS_1


def _key(name: str, field: str) -> str:
    return f"{name}__{field}"


@dataclasses.dataclass
class ShardSums:
    """One shard's sums: ``folds`` (the ``F`` folds its rows cover), ``count`` ``(F, 2)``,
    and per vector name ``{site}.{layer}`` its fields, each with leading axes ``(F, 2)``."""

    folds: np.ndarray
    count: np.ndarray
    moments: dict[str, dict[str, np.ndarray]]
    #: the shard's probed vectors batch by batch, when pass 1 keeps them (never saved)
    kept: list | None = dataclasses.field(default=None, repr=False)

    def save(self, path: Path) -> None:
        arrays = {"folds": self.folds, "count": self.count}
        for name, by_field in self.moments.items():
            arrays.update({_key(name, f): a for f, a in by_field.items()})
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def sums_file_ok(path: Path, names: list[str], second_moments: bool) -> bool:
    """Whether ``path`` is a readable sums file with every array a probe needs."""
    try:
        with np.load(path) as data:
            wanted = {
                "folds",
                "count",
                *(_key(n, f) for n in names for f in fields(second_moments)),
            }
            return wanted <= set(data.files)
    except (OSError, ValueError, EOFError):
        return False


class Totals:
    """The sums of every fold and class over the shards added so far (float64)."""

    def __init__(self, k: int, names: list[str], second_moments: bool) -> None:
        self.k = k
        self.names = list(names)
        self.second_moments = second_moments
        self.count = np.zeros((k, 2), dtype=np.int64)
        self.moments: dict[str, dict[str, np.ndarray]] = {}

    def _add_field(self, name: str, field: str, folds: np.ndarray, values: np.ndarray) -> None:
        by_field = self.moments.setdefault(name, {})
        if field not in by_field:
            by_field[field] = np.zeros((self.k, *values.shape[1:]), dtype=np.float64)
        target = by_field[field]
        for slot, fold in enumerate(folds):
            target[int(fold)] += values[slot]

    def add(self, sums: ShardSums) -> None:
        """Add one shard's sums (in memory)."""
        for slot, fold in enumerate(sums.folds):
            self.count[int(fold)] += sums.count[slot]
        for name in self.names:
            for field in fields(self.second_moments):
                self._add_field(name, field, sums.folds, sums.moments[name][field])

    def add_file(self, path: Path) -> None:
        """Add one shard's saved sums, one array at a time (a shard's ``lda`` sums are large)."""
        with np.load(path) as data:
            folds = data["folds"]
            for slot, fold in enumerate(folds):
                self.count[int(fold)] += data["count"][slot]
            for name in self.names:
                for field in fields(self.second_moments):
                    self._add_field(name, field, folds, data[_key(name, field)])


def ledoit_wolf_intensity(scatter: np.ndarray, n: int, fourth: float) -> float:
    """The Ledoit-Wolf shrinkage intensity of ``n`` centred rows ``y_i`` from their sums.

    ``scatter`` is ``sum y_i y_i^T``, ``fourth`` is ``sum |y_i|^4``; the result is what
    ``sklearn.covariance.ledoit_wolf_shrinkage(Y, assume_centered=True)`` computes from
    the rows themselves (Ledoit and Wolf 2004, in scikit-learn's form).
    """
    d = scatter.shape[0]
    if d == 1 or n < 1:
        return 0.0
    trace = float(np.trace(scatter)) / n
    mu = trace / d
    delta_ = float(np.sum(scatter * scatter)) / n**2
    beta = (fourth / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * trace + d * mu**2) / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else float(beta / delta)


def _centred_fourth(xx: np.ndarray, qx: np.ndarray, q4: float, n: int, m: np.ndarray) -> float:
    """``sum |x_i - m|^4`` from ``sum x x^T``, ``sum |x|^2 x``, ``sum |x|^4`` and ``n``.

    With ``a = |x|^2``, ``b = x . m``, ``c = |m|^2``: ``|x - m|^4 = (a - 2b + c)^2``, and
    ``sum b = m . sum x = n c`` when ``m`` is the rows' mean.
    """
    c = float(m @ m)
    b2 = float(m @ xx @ m)
    ab = float(m @ qx)
    return q4 + 4.0 * b2 + n * c * c - 4.0 * ab + 2.0 * c * float(np.trace(xx)) - 4.0 * n * c * c


@dataclasses.dataclass
class Directions:
    """Per vector name, each fold's direction ``w`` ``(K, d)`` and offset ``centre . w`` ``(K,)``;
    ``shrinkage`` ``(K,)`` per name for ``lda``; ``n_per_fold`` ``(K, 2)``."""

    method: str
    k: int
    w: dict[str, np.ndarray]
    offset: dict[str, np.ndarray]
    shrinkage: dict[str, np.ndarray]
    n_per_fold: np.ndarray

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256(f"{self.method}|{self.k}|{sorted(self.w)}".encode())
        for name in sorted(self.w):
            digest.update(np.ascontiguousarray(self.w[name], dtype=np.float64).tobytes())
            digest.update(np.ascontiguousarray(self.offset[name], dtype=np.float64).tobytes())
        return digest.hexdigest()

    def save(self, path: Path) -> None:
        arrays = {"n_per_fold": self.n_per_fold}
        for name in self.w:
            arrays[_key(name, "w")] = self.w[name]
            arrays[_key(name, "offset")] = self.offset[name]
            if name in self.shrinkage:
                arrays[_key(name, "shrinkage")] = self.shrinkage[name]
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: Path, method: str, names: list[str]) -> Directions:
        with np.load(path) as data:
            w = {n: data[_key(n, "w")] for n in names}
            offset = {n: data[_key(n, "offset")] for n in names}
            shrink = {n: data[_key(n, "shrinkage")] for n in names if _key(n, "shrinkage") in data}
            return cls(method, len(data["n_per_fold"]), w, offset, shrink, data["n_per_fold"])


def _training(values: np.ndarray, fold: int) -> np.ndarray:
    """The sum over every fold but ``fold`` (axis 0), in fold order."""
    return np.delete(values, fold, axis=0).sum(axis=0)


def fold_direction(totals: Totals, name: str, fold: int, method: str) -> tuple[np.ndarray, float]:
    """``(w, lambda)`` for ``fold``: from the training folds' sums (module docstring)."""
    moments = totals.moments[name]
    count = _training(totals.count, fold).astype(np.float64)  # (2,)
    sums = _training(moments["sum"], fold)  # (2, d)
    d = sums.shape[-1]
    if count.min() < 1 or (method == "lda" and count.sum() < 3):
        return np.full(d, np.nan), float("nan")
    means = sums / count[:, None]
    diff = means[1] - means[0]
    if method == "diffmeans":
        return diff, float("nan")
    xx, qx, q4 = (_training(moments[f], fold) for f in ("xx", "qx", "q4"))
    scatter = np.zeros((d, d))
    fourth = 0.0
    for c in (0, 1):
        scatter += xx[c] - count[c] * np.outer(means[c], means[c])
        fourth += _centred_fourth(xx[c], qx[c], float(q4[c]), int(count[c]), means[c])
    n = int(count.sum())
    shrink = ledoit_wolf_intensity(scatter, n, fourth)
    sigma = scatter / (n - 2)
    shrunk = (1.0 - shrink) * sigma
    shrunk[np.diag_indices(d)] += shrink * np.trace(sigma) / d
    try:
        w = np.linalg.solve(shrunk, diff)
    except np.linalg.LinAlgError:
        w = np.linalg.lstsq(shrunk, diff, rcond=None)[0]
    return w, shrink


def compute_directions(totals: Totals, method: str) -> Directions:
    """Every fold's held-out direction and offset for every probed vector."""
    w, offset, shrinkage = {}, {}, {}
    for name in totals.names:
        sums = totals.moments[name]["sum"]
        rows, offsets, lambdas = [], [], []
        for fold in range(totals.k):
            direction, shrink = fold_direction(totals, name, fold, method)
            count = _training(totals.count, fold).astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                centre = (_training(sums, fold) / count[:, None]).sum(axis=0) / 2.0
            rows.append(direction)
            offsets.append(float(centre @ direction))
            lambdas.append(shrink)
        w[name], offset[name] = np.stack(rows), np.asarray(offsets)
        if method == "lda":
            shrinkage[name] = np.asarray(lambdas)
    return Directions(method, totals.k, w, offset, shrinkage, totals.count.copy())
