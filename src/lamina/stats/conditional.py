"""Part 7's test: is a layer's norm associated with correctness beyond the controls?

A generalised covariance measure (Shah & Peters, Annals of Statistics 2020)
with a null that keeps the serial dependence of text:

1. Adjust (:mod:`lamina.stats.adjustment`): the log-norms ``x`` (every layer)
   and the labels ``y`` (0/1) are each replaced by their residual on the
   controls' flexible basis, ``r_x = x - E^[x | Z]`` and ``r_y = y - E^[y | Z]``
   (least squares; for ``y`` the linear probability model).
2. Standardise: each residual is divided by its standard deviation as a
   function of the controls (:func:`~lamina.stats.adjustment.local_scale`),
   ``w_x = r_x / s_x(Z)``, ``w_y = r_y / s_y(Z)``.
3. Statistic: per layer the correlation of the standardised residuals,
   ``T = sum w_x w_y / sqrt(sum w_x^2 sum w_y^2)``; 0 when the norm carries no
   information about correctness beyond the controls. Signed: ``T > 0`` when
   correct tokens have larger norms than their controls predict.
4. Null: ``w_y`` circularly shifted within each series (window or document;
   :mod:`lamina.stats.shifts`) against ``w_x``, the same shifts for every layer,
   so each residual series keeps its autocorrelation and the null is centred
   where the observed statistic is compared, for either sign. Two-sided
   p-values ``(b + 1) / (m + 1)`` about 0 (exact ``b / M`` when every shift
   combination is enumerated). ``scheme="exchangeable"`` permutes ``w_y`` within
   each series instead (valid only for independent tokens).
5. Family-wise: the max-statistic over layers of ``|T| / sd_null(T)``, each
   layer's statistic standardised by the SD of its own null, so that layers
   whose norms are more autocorrelated (a wider null) do not dominate the max;
   Holm and Benjamini-Hochberg from the per-layer p-values.

The controlled effect (:func:`controlled_effects`) is the partial regression
coefficient of ``x`` on ``y`` given the basis (Frisch-Waugh:
``d = sum r_x r_y / sum r_y^2``, the difference of class means of the
log-norm at equal controls) and ``g = d / s`` with ``s`` the residual SD of
that regression: a controlled Hedges' g, with block-bootstrap intervals
(:mod:`lamina.stats.resampling`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lamina.errors import InputError
from lamina.stats.adjustment import ControlBasis, local_scale
from lamina.stats.corrections import fdr_bh, holm, maxstat_pvalues, permutation_pvalues
from lamina.stats.resampling import Blocks, bootstrap_interval, resampled_sums
from lamina.stats.shifts import (
    ShiftLayout,
    apply_shifts,
    exact_shifts,
    random_shifts,
    shift_rows,
)

SCHEMES = ("shift", "exchangeable")
#: Largest exact test enumerated (as :data:`lamina.stats.permutation.EXACT_LIMIT`).
EXACT_LIMIT = 2_000_000


@dataclasses.dataclass(frozen=True)
class ConditionalTest:
    """The conditional test of every column: ``statistic``, ``null_sd``, p-values (L,),
    ``null_distribution`` (m, L), ``n_permutations``, ``exact``, ``scheme``, ``seed``."""

    statistic: np.ndarray
    null_distribution: np.ndarray
    null_sd: np.ndarray
    pvalue: np.ndarray
    pvalue_maxstat: np.ndarray
    pvalue_holm: np.ndarray
    pvalue_fdr: np.ndarray
    n_permutations: int
    exact: bool
    scheme: str
    seed: int


@dataclasses.dataclass(frozen=True)
class Residuals:
    """The adjusted series in series order: ``rx`` (n, L), ``ry`` (n,), and standardised
    ``wx``, ``wy``; ``dof`` the residual degrees of freedom (n - rank - 1)."""

    rx: np.ndarray
    ry: np.ndarray
    wx: np.ndarray
    wy: np.ndarray
    dof: int


def residualise(values, labels, basis: ControlBasis) -> Residuals:
    """Step 1 and 2 of the module docstring (inputs in the order the basis was built)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    y = np.asarray(labels, dtype=np.float64)
    rx = basis.residuals(x)
    ry = basis.residuals(y)[:, 0]
    if not np.any(np.abs(ry) > 1e-9):
        raise InputError("the controls predict every label exactly; drop a control.")
    wx = rx / local_scale(rx, basis)
    wy = ry / local_scale(ry, basis)[:, 0]
    return Residuals(rx=rx, ry=ry, wx=wx, wy=wy, dof=max(1, x.shape[0] - basis.rank - 1))


def conditional_test(
    res: Residuals,
    layout: ShiftLayout,
    *,
    n_permutations: int = 1000,
    seed: int = 0,
    scheme: str = "shift",
    exact: bool | None = None,
) -> ConditionalTest:
    """The test of every column of ``res`` (its arrays in ``layout``'s series order)."""
    if scheme not in SCHEMES:
        raise InputError(f"scheme={scheme!r} is unknown; use one of {', '.join(SCHEMES)}.")
    wx, wy = res.wx, res.wy
    norm = np.sqrt((wx**2).sum(axis=0) * (wy**2).sum())
    # the observed alignment by the same product as the null's rows, so that an exact
    # null's identity row ties with it
    observed = (wy[None, :] @ wx)[0] / norm
    n_shifts = layout.n_shifts(max(n_permutations, EXACT_LIMIT)) if scheme == "shift" else np.inf
    use_exact = (n_shifts <= n_permutations) if exact is None else bool(exact)
    if use_exact and scheme != "shift":
        raise InputError("the exact conditional test exists for the shift scheme only.")
    if use_exact and n_shifts > EXACT_LIMIT:
        raise InputError(
            f"the exact test would enumerate more than {EXACT_LIMIT} shift combinations; "
            "pass exact=None or False for a randomized test."
        )
    if use_exact:
        blocks = exact_shifts(layout)
        total = int(n_shifts)
    else:
        blocks = _random_blocks(layout, n_permutations, seed, scheme)
        total = n_permutations
    null = np.empty((total, wx.shape[1]))
    filled = 0
    step = shift_rows(layout.n_tokens, 8)  # float64 rows of about 32 MiB at once
    for block in blocks:
        for start in range(0, block.shape[0], step):
            part = block[start : start + step]
            rows = apply_shifts(wy, layout, part) if scheme == "shift" else wy[part]
            null[filled : filled + rows.shape[0]] = (rows @ wx) / norm
            filled += rows.shape[0]
    sd = null.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    exact_kw = {"includes_observed": use_exact}
    pvalue = permutation_pvalues(observed, null, "two-sided", center=0.0, **exact_kw)
    studentised = maxstat_pvalues(observed / sd, null / sd, "two-sided", center=0.0, **exact_kw)
    return ConditionalTest(
        statistic=observed,
        null_distribution=null,
        null_sd=sd,
        pvalue=pvalue,
        pvalue_maxstat=studentised,
        pvalue_holm=holm(pvalue),
        pvalue_fdr=fdr_bh(pvalue),
        n_permutations=int(total),
        exact=bool(use_exact),
        scheme=scheme,
        seed=int(seed),
    )


def _random_blocks(layout: ShiftLayout, n_permutations: int, seed: int, scheme: str):
    """Shift amounts (shift scheme) or index permutations within series (exchangeable)."""
    if scheme == "shift":
        yield from random_shifts(layout, n_permutations, seed)
        return
    rng = np.random.default_rng(seed)
    series = np.repeat(np.arange(layout.n_series), layout.sizes).astype(np.float64)
    rows_per_block = shift_rows(layout.n_tokens, 8)
    done = 0
    while done < n_permutations:
        rows = min(rows_per_block, n_permutations - done)
        keys = series + rng.random((rows, layout.n_tokens))
        yield np.argsort(keys, axis=1, kind="stable")
        done += rows


@dataclasses.dataclass(frozen=True)
class ControlledEffects:
    """Per column: ``difference`` (log-norm, correct minus incorrect at equal controls),
    ``hedges_g`` and their 95% block-bootstrap intervals (L, 2)."""

    difference: np.ndarray
    difference_ci: np.ndarray
    hedges_g: np.ndarray
    hedges_g_ci: np.ndarray
    n_bootstrap: int


def _effect_from_sums(sxy, sxx, syy, dof):
    with np.errstate(invalid="ignore", divide="ignore"):
        d = sxy / syy
        s = np.sqrt(np.maximum(sxx - d * d * syy, 0.0) / dof)
        return d, d / s


def controlled_effects(
    res: Residuals, blocks: Blocks, *, n_bootstrap: int = 1000, seed: int = 0
) -> ControlledEffects:
    """The controlled difference and g of every column, block-bootstrap intervals."""
    rx, ry = res.rx, res.ry
    n_cols = rx.shape[1]
    parts = np.hstack((rx * ry[:, None], rx**2, (ry**2)[:, None], np.ones((ry.size, 1))))
    totals = parts.sum(axis=0)
    d, g = _effect_from_sums(totals[:n_cols], totals[n_cols : 2 * n_cols], totals[-2], res.dof)
    boot = resampled_sums(blocks.sums(parts), n_bootstrap, seed)
    dof_boot = np.maximum(boot[:, -1:] - (ry.size - res.dof), 1.0)
    d_b, g_b = _effect_from_sums(
        boot[:, :n_cols], boot[:, n_cols : 2 * n_cols], boot[:, -2:-1], dof_boot
    )
    return ControlledEffects(
        difference=d,
        difference_ci=bootstrap_interval(d, d_b, blocks.n_blocks),
        hedges_g=g,
        hedges_g_ci=bootstrap_interval(g, g_b, blocks.n_blocks),
        n_bootstrap=int(n_bootstrap),
    )


@dataclasses.dataclass(frozen=True)
class PartialAssociation:
    """Everything Part 7 computes from the arrays: the series ``layout`` (its ``order`` puts
    tokens in series order, the order of every array here), the controls' ``basis``, the
    ``residuals``, the ``test``, the bootstrap ``blocks`` and the controlled ``effects``."""

    layout: ShiftLayout
    basis: ControlBasis
    residuals: Residuals
    test: ConditionalTest
    blocks: Blocks
    effects: ControlledEffects


def partial_association(
    values,
    labels,
    controls,
    series=None,
    *,
    n_permutations: int = 1000,
    seed: int = 0,
    scheme: str = "shift",
    n_bootstrap: int = 1000,
) -> PartialAssociation:
    """The conditional test and the controlled effects of every column of ``values``.

    Table order in: ``values`` (n, L), ``labels`` (n,) bool, ``controls`` name ->
    (n,) values, ``series`` (n,) integer codes of the windows or documents (None:
    one series; rows in text order within a series). The bootstrap's block length
    is :func:`lamina.stats.resampling.bootstrap_blocks`' for the residuals' products.
    """
    from lamina.stats.adjustment import control_basis
    from lamina.stats.resampling import bootstrap_blocks
    from lamina.stats.shifts import shift_layout

    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    lab = np.asarray(labels, dtype=bool)
    layout = shift_layout(series, lab.size)
    order = layout.order
    basis = control_basis({k: np.asarray(v)[order] for k, v in controls.items()}, lab.size)
    res = residualise(x[order], lab[order], basis)
    test = conditional_test(res, layout, n_permutations=n_permutations, seed=seed, scheme=scheme)
    blocks = bootstrap_blocks(res.rx * res.ry[:, None], layout)
    effects = controlled_effects(res, blocks, n_bootstrap=n_bootstrap, seed=seed + 1)
    return PartialAssociation(layout, basis, res, test, blocks, effects)
