"""Strata from control covariates, for permutation tests conditional on them.

A conditional permutation test relabels tokens only within groups of tokens
that are alike in the controls (a stratum), so the null keeps every
association between the labels and the controls and tests only what the
values add beyond them.

Rules (one place for them):

- **Bins per covariate** (:func:`quantile_bins`): a covariate with at most two
  distinct values (a boolean) is its own bins, one per value. Any other is cut
  at its ``1/b, 2/b, ...`` quantiles (numpy's linear interpolation) into at most
  ``b`` bins, half-open ``[q_i, q_{i+1})`` with the last closed; repeated cut
  points are dropped, so heavily tied covariates get fewer bins.
- **Crossing**: a token's cell is the tuple of its bin codes (and of its block,
  when permutations must also stay within documents or windows), and cells are
  ordered lexicographically: the block first, then the controls by their number
  of bins, fewest first (ties in the order given), the last varying fastest. So
  merging (below) pools neighbouring quantile bins of the finest controls
  before it pools across the two values of a binary one.
- **Sparse cells are merged** (:func:`merge_sparse`): a cell is *sparse* when
  it has fewer than ``min_tokens`` tokens (:data:`MIN_STRATUM_TOKENS`) or
  lacks one of the two classes (its labels cannot move, so it carries no
  information). Walking the cells in their order, consecutive cells are pooled
  until the pool is not sparse; a pool still sparse at the end of its block
  joins the block's previous pool. Pools never cross a block. So merging is
  deterministic, only neighbours in the cell order are pooled, and every final
  stratum has at least ``min_tokens`` tokens of both classes unless its whole
  block has not (such a block is one stratum).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from lamina.errors import InputError

#: Fewest tokens in a stratum before it is merged with its neighbour.
MIN_STRATUM_TOKENS = 10


def quantile_bins(x, n_bins: int = 4) -> np.ndarray:
    """Bin codes 0.. of ``x``: its own values if it has at most 2, else ``n_bins`` quantile bins.

    Returns int64 codes, one per value (see the module docstring for the rule).
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise InputError(f"a covariate has shape {arr.shape}; pass one value per token.")
    if not np.isfinite(arr).all():
        raise InputError("a covariate holds NaN or inf; pass finite values.")
    if n_bins < 1:
        raise InputError(f"n_bins={n_bins} is invalid; pass at least 1 bin per covariate.")
    distinct = np.unique(arr)
    if distinct.size <= 2:
        return np.searchsorted(distinct, arr).astype(np.int64)
    cuts = np.unique(np.quantile(arr, np.arange(1, n_bins) / n_bins))
    # [q_i, q_{i+1}): a value equal to a cut point goes to the bin above it
    return np.searchsorted(cuts, arr, side="right").astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Strata:
    """Strata of tokens: ``codes`` (n,) int64 from 0, and how they were made.

    ``n_cells``: non-empty cells before merging; ``n_strata``: after;
    ``n_sparse_cells``: cells that were sparse; ``bins``: bins used per
    covariate (name -> count); ``n_blocks``: blocks permutations stay within;
    ``n_informative``: strata with both classes; ``min_tokens``: the rule's minimum.
    """

    codes: np.ndarray
    n_cells: int
    n_strata: int
    n_sparse_cells: int
    bins: dict[str, int]
    n_blocks: int
    n_informative: int
    min_tokens: int


def make_strata(
    covariates: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    labels,
    *,
    n_bins: int = 4,
    blocks=None,
    min_tokens: int = MIN_STRATUM_TOKENS,
) -> Strata:
    """Strata crossing the quantile bins of every covariate (and ``blocks``), sparse cells merged.

    ``covariates``: name -> (n,) values (or a sequence of arrays); ``labels``:
    (n,) bool classes; ``blocks``: None or (n,) integer codes of groups that
    permutations must stay within (documents, windows).
    """
    lab = np.asarray(labels, dtype=bool)
    n = lab.size
    named = (
        dict(covariates)
        if isinstance(covariates, Mapping)
        else {f"x{j}": v for j, v in enumerate(covariates)}
    )
    codes: dict[str, np.ndarray] = {}
    bins: dict[str, int] = {}
    block_codes = np.zeros(n, dtype=np.int64) if blocks is None else _codes(blocks, n)
    for name, values in named.items():
        if np.shape(values) != (n,):
            raise InputError(f"covariate {name} has shape {np.shape(values)}; pass ({n},).")
        codes[name] = quantile_bins(values, n_bins)
        bins[name] = int(np.unique(codes[name]).size)
    # fewest bins first: merging then pools neighbouring quantile bins of the finest
    # covariates before it pools across a binary covariate's two values
    order = sorted(codes, key=lambda name: bins[name])
    columns = [block_codes, *(codes[name] for name in order)]
    _, cells = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
    cells = cells.ravel()
    n_cells = int(cells.max()) + 1 if n else 0
    # the block of each cell (cells are sorted with the block as first key)
    cell_block = np.zeros(n_cells, dtype=np.int64)
    cell_block[cells] = block_codes
    size = np.bincount(cells, minlength=n_cells)
    n_true = np.bincount(cells, weights=lab, minlength=n_cells).astype(np.int64)
    sparse = (size < min_tokens) | (n_true == 0) | (n_true == size)
    pool = merge_sparse(size, n_true, cell_block, min_tokens)
    codes = pool[cells]
    n_strata = int(pool.max()) + 1 if n_cells else 0
    s_size = np.bincount(codes, minlength=n_strata)
    s_true = np.bincount(codes, weights=lab, minlength=n_strata)
    return Strata(
        codes=codes,
        n_cells=n_cells,
        n_strata=n_strata,
        n_sparse_cells=int(sparse.sum()),
        bins=bins,
        n_blocks=int(np.unique(block_codes).size),
        n_informative=int(((s_true > 0) & (s_true < s_size)).sum()),
        min_tokens=int(min_tokens),
    )


def _codes(values, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise InputError(f"blocks have shape {arr.shape}; pass one code per token ({n},).")
    return np.unique(arr, return_inverse=True)[1].ravel().astype(np.int64)


def merge_sparse(
    size: np.ndarray, n_true: np.ndarray, cell_block: np.ndarray, min_tokens: int
) -> np.ndarray:
    """The pool (final stratum, from 0) of every cell, by the module's merging rule.

    ``size``, ``n_true``, ``cell_block``: per cell, in cell order (blocks contiguous).
    """
    pool = np.empty(size.size, dtype=np.int64)
    current = -1
    acc_size = acc_true = 0
    still_sparse = False
    block_first_pool = 0
    for j in range(size.size):
        new_block = j == 0 or cell_block[j] != cell_block[j - 1]
        if new_block:
            block_first_pool = current + 1
        if new_block or not still_sparse:
            current += 1
            acc_size = acc_true = 0
        acc_size += int(size[j])
        acc_true += int(n_true[j])
        pool[j] = current
        still_sparse = acc_size < min_tokens or acc_true in (0, acc_size)
        last_of_block = j + 1 == size.size or cell_block[j + 1] != cell_block[j]
        if last_of_block and still_sparse:
            if current > block_first_pool:
                # a sparse pool at the end of its block joins the block's previous pool
                pool[pool == current] = current - 1
                current -= 1
            still_sparse = False
    return pool


# ----------------------------------------------------------------------------- effects in strata


def _class_moments(values: np.ndarray, labels: np.ndarray, codes: np.ndarray):
    """Per stratum and class: counts (K, 2), sums and sums of squares (K, 2, L)."""
    group = codes * 2 + labels.astype(np.int64)
    order = np.argsort(group, kind="stable")
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    present = sorted_group[starts]
    n_strata = int(codes.max()) + 1
    counts = np.zeros((n_strata * 2,))
    sums = np.zeros((n_strata * 2, values.shape[1]))
    squares = np.zeros_like(sums)
    counts[present] = np.diff(np.r_[starts, group.size])
    ordered = values[order]
    sums[present] = np.add.reduceat(ordered, starts, axis=0)
    squares[present] = np.add.reduceat(ordered**2, starts, axis=0)
    shape = (n_strata, 2)
    return counts.reshape(shape), sums.reshape(*shape, -1), squares.reshape(*shape, -1)


def _weighted_difference(values, labels, codes):
    """Per column: the stratum-weighted difference of class means, its total weight, the
    pooled within-class, within-stratum SD, its degrees of freedom, the strata used."""
    counts, sums, squares = _class_moments(values, labels, codes)
    both = (counts > 0).all(axis=1)
    n0, n1 = counts[both, 0], counts[both, 1]
    mean0 = sums[both, 0] / n0[:, None]
    mean1 = sums[both, 1] / n1[:, None]
    weight = n0 * n1 / (n0 + n1)  # 1 / (1/n1 + 1/n0): the precision of each difference
    diff = (weight[:, None] * (mean1 - mean0)).sum(axis=0) / weight.sum()
    within = (squares[both, 0] - n0[:, None] * mean0**2) + (
        squares[both, 1] - n1[:, None] * mean1**2
    )
    df = float((n0 + n1).sum() - 2 * both.sum())
    sd = (
        np.sqrt(np.maximum(within.sum(axis=0), 0.0) / df) if df > 0 else np.full(diff.shape, np.nan)
    )
    return diff, float(weight.sum()), sd, df, int(both.sum())


def stratified_hedges_g(values, labels, codes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hedges' g of every column within strata, with its 95% interval: (g, low, high), each (L,).

    ``g = J(df) * sum_s w_s (mean1_s - mean0_s) / sum_s w_s / s_within``: the
    strata's differences of class means (True minus False) weighted by their
    precision ``w_s = n1_s n0_s / (n1_s + n0_s)`` (strata with one class carry no
    weight), over the pooled within-stratum, within-class SD (``df = N - 2K`` for
    the ``N`` tokens of the ``K`` strata with both classes), times Hedges' factor
    ``J(df)``. ``SE = sqrt(1 / sum_s w_s + g^2 / (2 N))`` (Hedges & Olkin's, which
    it is for one stratum); the interval is ``g -/+ 1.96 SE``. With one stratum
    this is :func:`lamina.stats.hedges_g` and its interval.
    """
    from lamina.stats.effects import Z_975, hedges_correction

    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    lab = np.asarray(labels, dtype=bool)
    diff, weight, sd, df, n_strata = _weighted_difference(x, lab, np.asarray(codes, dtype=np.int64))
    if df <= 1:
        nan = np.full(diff.shape, np.nan)
        return nan, nan, nan
    with np.errstate(divide="ignore", invalid="ignore"):
        g = hedges_correction(df) * diff / sd
    se = np.sqrt(1.0 / weight + g**2 / (2.0 * (df + 2 * n_strata)))
    return g, g - Z_975 * se, g + Z_975 * se


def standardised_mean_difference(x, labels, codes=None) -> float:
    """Balance of a covariate: ``(mean_True - mean_False) / sqrt((var_True + var_False) / 2)``.

    The standardised mean difference of the propensity-score literature
    (Austin 2009; sample variances, ddof 1). With ``codes`` the numerator is the
    precision-weighted mean of the within-stratum differences (as in
    :func:`stratified_hedges_g`) over the same overall denominator, so the two
    numbers show how much of the imbalance the strata remove. NaN when the
    covariate is constant in both classes.
    """
    arr = np.asarray(x, dtype=np.float64)
    lab = np.asarray(labels, dtype=bool)
    spread = math.sqrt((arr[lab].var(ddof=1) + arr[~lab].var(ddof=1)) / 2.0)
    if codes is None:
        diff = arr[lab].mean() - arr[~lab].mean()
    else:
        diff = _weighted_difference(arr[:, None], lab, np.asarray(codes, dtype=np.int64))[0][0]
    return float(diff / spread) if spread > 0 else math.nan


def adjust_within_strata(values, codes, controls=None) -> np.ndarray:
    """``values`` with what the strata and the controls explain removed, column by column.

    The residuals of the least-squares fit of each column on one indicator per
    stratum and the ``controls`` (n, q) columns (by Frisch-Waugh: values and
    controls centred within strata, then the centred values' residual on the
    centred controls). Labels do not enter, so a test that permutes labels within
    the strata stays exact on the adjusted values; the adjustment removes the
    differences between strata (which would otherwise mask or mimic a difference
    within them) and the controls' linear trend inside each stratum.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    code = np.asarray(codes, dtype=np.int64)
    size = np.bincount(code).astype(np.float64)

    def centred(a: np.ndarray) -> np.ndarray:
        means = np.stack([np.bincount(code, weights=a[:, j]) for j in range(a.shape[1])], axis=1)
        return a - (means / np.maximum(size, 1.0)[:, None])[code]

    residual = centred(x)
    if controls is not None and np.size(controls):
        c = centred(np.asarray(controls, dtype=np.float64).reshape(x.shape[0], -1))
        residual -= c @ np.linalg.lstsq(c, residual, rcond=None)[0]
    return residual
