"""Flexible adjustment for control covariates: a basis that keeps up as tokens grow.

Part 7 removes from the log-norms and from the labels what the controls
explain, then asks whether what is left of the two is still associated
(:mod:`lamina.stats.conditional`). Coarse strata plus a linear term leave
confounding inside the strata that grows with the number of tokens (a linear
position confound rejected in 23% of null tables at 40,000 tokens with 4 bins);
so the adjustment is a regression on a basis whose flexibility grows with ``n``:

- a control with at most 2 distinct values (``target_repeat``,
  ``input_is_first``, ``input_is_delimiter``): its indicator;
- an integer control with at most :data:`FACTOR_LEVELS` distinct values once
  its top 0.5% is pooled into the largest kept level (``target_chars``): a
  factor, one indicator per level but the first;
- any other (``ctx_pos``, ``target_freq``, ``entropy``): a cubic B-spline of
  the value (of ``log(1 + value)`` for :data:`LOG_CONTROLS`, whose effects are
  roughly logarithmic) with :func:`n_knots` interior knots at quantiles of the
  distinct values; the first basis column is dropped (the B-splines sum to 1,
  the intercept's column).

Additive: no interactions between controls. The design ``[1, basis]`` is
reduced to an orthonormal basis ``Q`` of its column space by an SVD (columns
that are linear combinations of others drop out), so residuals are
``x - Q Q' x``. :func:`local_scale` estimates a residual's standard deviation
as a function of the controls (the fitted values of its square on the same
basis), which the conditional test divides by so that tokens where both the
norm and the label vary more (early positions, the first token) do not weigh more.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
from scipy.interpolate import BSpline

from lamina.errors import InputError

#: Controls entered on a log scale (``log(1 + value)``).
LOG_CONTROLS = ("ctx_pos", "target_freq")
#: Most levels of a control entered as a factor.
FACTOR_LEVELS = 16
#: Fewest and most interior knots of a spline.
MIN_KNOTS, MAX_KNOTS = 3, 20
#: A residual's variance is estimated at least this fraction of its mean.
SCALE_FLOOR = 0.05


def n_knots(n_tokens: int) -> int:
    """Interior knots of each spline: ``round(n^(1/3) / 2)`` within [3, 20] (5 at 1,000
    tokens, 17 at 40,000): the flexibility grows with the data."""
    return int(min(MAX_KNOTS, max(MIN_KNOTS, round(n_tokens ** (1.0 / 3.0) / 2.0))))


@dataclasses.dataclass(frozen=True)
class ControlBasis:
    """The controls' basis: ``q`` (n, r) orthonormal, spanning ``[1, columns]``;
    ``terms`` (one description per control), ``n_columns`` (before reduction) and ``rank``."""

    q: np.ndarray
    terms: list[str]
    n_columns: int
    rank: int
    knots: int

    def residuals(self, values) -> np.ndarray:
        """``values`` (n,) or (n, c) minus their least-squares fit on the basis: (n, c)."""
        x = np.asarray(values, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        return x - self.q @ (self.q.T @ x)

    def fitted(self, values) -> np.ndarray:
        """The least-squares fit of ``values`` on the basis: (n, c)."""
        x = np.asarray(values, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        return self.q @ (self.q.T @ x)


def control_basis(controls: Mapping[str, np.ndarray], n_tokens: int) -> ControlBasis:
    """The basis of ``controls`` (name -> (n,) values) by the module's rules."""
    knots = n_knots(n_tokens)
    columns = [np.ones((n_tokens, 1))]
    terms = []
    for name, raw in controls.items():
        x = np.asarray(raw, dtype=np.float64)
        if x.shape != (n_tokens,):
            raise InputError(f"control {name} has shape {x.shape}; pass ({n_tokens},).")
        if not np.isfinite(x).all():
            raise InputError(f"control {name} holds NaN or inf; pass finite values.")
        block, term = _term(name, x, knots)
        columns.append(block)
        terms.append(term)
    design = np.hstack(columns)
    q = _orthonormal(design)
    return ControlBasis(q=q, terms=terms, n_columns=design.shape[1], rank=q.shape[1], knots=knots)


def _term(name: str, x: np.ndarray, knots: int) -> tuple[np.ndarray, str]:
    distinct = np.unique(x)
    if distinct.size <= 2:
        return (x == distinct[-1]).astype(np.float64)[:, None], name
    if np.all(x == np.round(x)):
        top = np.quantile(x, 0.995, method="lower")
        pooled = np.minimum(x, top)
        levels = np.unique(pooled)
        if levels.size <= FACTOR_LEVELS:
            block = (pooled[:, None] == levels[None, 1:]).astype(np.float64)
            return block, f"factor({name}, {levels.size} levels, >= {top:g} pooled)"
    scaled = np.log1p(np.maximum(x, 0.0)) if name in LOG_CONTROLS else x
    label = f"log(1 + {name})" if name in LOG_CONTROLS else name
    return spline_columns(scaled, knots), f"spline({label}, {knots} knots)"


def spline_columns(x: np.ndarray, knots: int, degree: int = 3) -> np.ndarray:
    """Cubic B-spline basis of ``x`` with interior knots at quantiles of its distinct
    values, the first column dropped: (n, knots + degree) at most."""
    lo, hi = float(x.min()), float(x.max())
    distinct = np.unique(x)
    inner = np.unique(np.quantile(distinct, np.linspace(0, 1, knots + 2)[1:-1]))
    inner = inner[(inner > lo) & (inner < hi)]
    t = np.r_[[lo] * (degree + 1), inner, [hi] * (degree + 1)]
    basis = BSpline.design_matrix(np.clip(x, lo, hi), t, degree).toarray()
    return basis[:, 1:]


def _orthonormal(design: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the column space of ``design`` (rank-revealing SVD)."""
    scale = np.linalg.norm(design, axis=0)
    scaled = design / np.where(scale > 0, scale, 1.0)
    u, s, _ = np.linalg.svd(scaled, full_matrices=False)
    tol = s.max() * max(design.shape) * np.finfo(np.float64).eps if s.size else 0.0
    return np.ascontiguousarray(u[:, s > tol])


def local_scale(residuals, basis: ControlBasis) -> np.ndarray:
    """The standard deviation of each residual column as a function of the controls:
    ``sqrt(fit of r^2 on the basis)``, floored at :data:`SCALE_FLOOR` of the mean square."""
    r = np.asarray(residuals, dtype=np.float64)
    if r.ndim == 1:
        r = r[:, None]
    squares = r**2
    fitted = basis.fitted(squares)
    floor = SCALE_FLOOR * squares.mean(axis=0)
    return np.sqrt(np.maximum(fitted, np.maximum(floor, math.ulp(1.0))))
