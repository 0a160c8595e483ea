"""The engine's kernels: a statistic of every column for a block of labellings at once.

A kernel is built once from the values and the observed labels, then called
with bool blocks ``(rows, n)`` of labellings; it returns float64 ``(rows, L)``.
Histogram statistics use exact one-hot count products (:mod:`lamina.backends`),
moments and AUROC one matrix product each, KS and Wasserstein cumulative sums in
each column's sorted order; the kNN estimator has no such form and loops.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.stats
from scipy.special import rel_entr

from lamina.backends import OneHotCounts, choose_backend
from lamina.backends.counts import TILE_TOKENS
from lamina.errors import InputError
from lamina.stats._knn import knn_kl_estimate
from lamina.stats._labellings import labelling_rows
from lamina.stats.effects import hedges_correction
from lamina.stats.histograms import bin_indices, edges_of

#: Working memory per chunk of labellings (bytes).
CHUNK_BYTES = 128 * 2**20
#: Tokens binned at once.
BIN_CHUNK = 2**20
#: Largest group for which ``x log x`` is tabulated (8 MiB per table).
LOOKUP_MAX = 2**20


class Kernel:
    """Evaluates a statistic for a block of labellings: bool (rows, n) -> float64 (rows, L)."""

    bytes_per_row: int = 1
    #: Whether the kernel takes a block drawn a range of tokens at a time (else: a whole array).
    streams: bool = False

    def __call__(self, block: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class HistogramKernel(Kernel):
    """JS or KL of the two groups' histograms on each column's pooled edges, from exact counts.

    ``robust_bins``: robust edges for a bin count (:mod:`lamina.stats.histograms`).
    Blocks may be :class:`~lamina.stats._labellings.StreamedBlock` s (``streams``):
    the counts are summed over ranges of tokens.
    """

    streams = True

    def __init__(
        self,
        values: np.ndarray,
        labels: np.ndarray,
        statistic: str,
        bins: int | str,
        pseudocount: float,
        base_divisor: float,
        backend: str,
        n_permutations: int,
        robust_bins: bool = False,
    ) -> None:
        n = values.shape[0]
        self.edges, self.n_bins, index, self.pooled = bin_columns(values, bins, robust_bins)
        total_bins = int(self.n_bins.sum())
        # per labelling: its labels as float32 operand for one tile of tokens, and
        # about ten int64 / float64 values per bin (counts, both groups, the terms)
        self.bytes_per_row = 4 * min(n, TILE_TOKENS) + 80 * total_bins
        rows = min(n_permutations, labelling_rows(n), max(1, CHUNK_BYTES // self.bytes_per_row))
        self.choice = choose_backend(
            backend,
            rows=rows,
            tokens=n,
            bins=total_bins,
            work=float(n) * n_permutations * total_bins,
        )
        self.counts = OneHotCounts(index, self.n_bins, self.choice.name)
        self.statistic = statistic
        self.n_true = int(labels.sum())
        self.n_false = n - self.n_true
        self.pseudocount = pseudocount
        self.base_divisor = base_divisor
        self.offsets = np.concatenate(([0], np.cumsum(self.n_bins)))
        # p log p for every possible count of each group (JS in entropy form), while small
        self.xlogx_true = _xlogx_table(self.n_true)
        self.xlogx_false = _xlogx_table(self.n_false)

    def __call__(self, block) -> np.ndarray:
        counts_true = self.counts(block)
        counts_false = self.pooled - counts_true
        if self.statistic == "js":
            # JS = sum_i [p_i log p_i + q_i log q_i] / 2 - m_i log m_i, m = (p + q) / 2
            terms = _plogp(counts_true, self.n_true, self.xlogx_true)
            terms += _plogp(counts_false, self.n_false, self.xlogx_false)
            terms *= 0.5
            mix = counts_true * (0.5 / self.n_true)
            mix += counts_false * (0.5 / self.n_false)
            # log of max(m, tiny) so that empty bins give 0 * finite = 0
            terms -= mix * np.log(np.maximum(mix, np.finfo(np.float64).tiny))
        else:
            c = self.pseudocount
            width = np.repeat(self.n_bins, self.n_bins)
            p = (counts_true + c) / (self.n_true + c * width)
            q = (counts_false + c) / (self.n_false + c * width)
            terms = rel_entr(p, q) if self.statistic == "kl" else rel_entr(q, p)
        out = np.add.reduceat(terms, self.offsets[:-1], axis=1)
        if self.statistic == "js":
            np.maximum(out, 0.0, out=out)
        return out / self.base_divisor


def bin_columns(
    values: np.ndarray, bins: int | str, robust_bins: bool = False
) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray, np.ndarray]:
    """Each column's pooled edges, bin counts, every token's bin and the pooled counts.

    Returns ``(edges, n_bins (L,), index (n, L) uint8 or uint16, pooled (sum n_bins,))``;
    tokens are binned :data:`BIN_CHUNK` at a time, so memory beyond the index
    does not grow with n (a bin rule other than a count, or ``robust_bins``
    with a count, reads a column at once). ``robust_bins``: robust edges for a
    bin count (:mod:`lamina.stats.histograms`); a column may then have up to 2
    bins fewer than ``bins``.
    """
    n, n_cols = values.shape
    edges = tuple(edges_of(values[:, j], bins, robust_bins) for j in range(n_cols))
    n_bins = np.array([e.size - 1 for e in edges], dtype=np.int64)
    index = np.empty((n, n_cols), dtype=np.uint8 if n_bins.max() <= 256 else np.uint16)
    pooled = [np.zeros(b, dtype=np.int64) for b in n_bins]
    for start in range(0, n, BIN_CHUNK):
        stop = min(n, start + BIN_CHUNK)
        for j, e in enumerate(edges):
            idx = bin_indices(values[start:stop, j], e)
            index[start:stop, j] = idx
            pooled[j] += np.bincount(idx, minlength=n_bins[j])
    return edges, n_bins, index, np.concatenate(pooled)


def _xlogx_table(n: int) -> np.ndarray | None:
    """``x log x`` at x = k / n for every count k, or None when n is above :data:`LOOKUP_MAX`."""
    return _xlogx(np.arange(n + 1) / n) if n < LOOKUP_MAX else None


def _plogp(counts: np.ndarray, n: int, table: np.ndarray | None) -> np.ndarray:
    """``p log p`` with p = counts / n, from the table while there is one."""
    return np.take(table, counts) if table is not None else _xlogx(counts / n)


def _xlogx(x: np.ndarray) -> np.ndarray:
    """``x log x`` with ``0 log 0 = 0``."""
    out = np.zeros_like(x, dtype=np.float64)
    positive = x > 0
    out[positive] = x[positive] * np.log(x[positive])
    return out


class MomentKernel(Kernel):
    """Mean difference and Hedges' g from sums of centred values and their squares."""

    def __init__(self, values: np.ndarray, labels: np.ndarray, statistic: str) -> None:
        n, n_cols = values.shape
        centred = values - values.mean(axis=0)
        self.statistic = statistic
        self.design = (
            centred if statistic == "mean_difference" else np.hstack((centred, centred**2))
        )
        self.totals = self.design.sum(axis=0)
        self.n_cols = n_cols
        self.n_true = int(labels.sum())
        self.n_false = n - self.n_true
        self.bytes_per_row = n * 9 + self.design.shape[1] * 8 * 4
        if statistic == "hedges_g":
            self.correction = hedges_correction(n - 2)
            constant = np.flatnonzero(values.max(axis=0) == values.min(axis=0))
            if constant.size:
                col = int(constant[0])
                raise InputError(
                    f"column {col} is constant, so Hedges' g is undefined there; drop it or use "
                    "statistic='mean_difference'."
                )

    def __call__(self, block: np.ndarray) -> np.ndarray:
        sums_true = block.astype(np.float64) @ self.design
        sums_false = self.totals - sums_true
        n1, n0, L = self.n_true, self.n_false, self.n_cols
        mean1 = sums_true[:, :L] / n1
        mean0 = sums_false[:, :L] / n0
        diff = mean1 - mean0
        if self.statistic == "mean_difference":
            return diff
        ss1 = sums_true[:, L:] - n1 * mean1**2
        ss0 = sums_false[:, L:] - n0 * mean0**2
        pooled_var = np.maximum((ss1 + ss0) / (n1 + n0 - 2), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.correction * diff / np.sqrt(pooled_var)


class AurocKernel(Kernel):
    """AUROC = (rank sum of P - n_P (n_P + 1) / 2) / (n_P n_Q) from pooled midranks."""

    def __init__(self, values: np.ndarray, labels: np.ndarray) -> None:
        n = values.shape[0]
        self.ranks = scipy.stats.rankdata(values, axis=0)
        self.n_true = int(labels.sum())
        self.n_false = n - self.n_true
        self.bytes_per_row = n * 9 + values.shape[1] * 8 * 2

    def __call__(self, block: np.ndarray) -> np.ndarray:
        rank_sums = block.astype(np.float64) @ self.ranks
        u = rank_sums - self.n_true * (self.n_true + 1) / 2.0
        return u / (self.n_true * self.n_false)


class EcdfKernel(Kernel):
    """KS and Wasserstein-1 from the labels' cumulative sums in each column's sorted order."""

    def __init__(self, values: np.ndarray, labels: np.ndarray, statistic: str) -> None:
        n, n_cols = values.shape
        self.statistic = statistic
        self.order = np.argsort(values, axis=0, kind="stable")
        sorted_values = np.take_along_axis(values, self.order, axis=0)
        # (n - 1, L), each column contiguous
        self.gaps = np.asfortranarray(np.diff(sorted_values, axis=0))
        # the ECDFs are compared only after the last of a run of tied values
        self.run_ends = [
            np.flatnonzero(np.append(self.gaps[:, j] > 0, True)) for j in range(n_cols)
        ]
        self.n_true = int(labels.sum())
        self.n_false = n - self.n_true
        # F_P - F_Q after the first i sorted tokens, c of them in P:
        # c / n_P - (i - c) / n_Q = c (1 / n_P + 1 / n_Q) - i / n_Q
        self.slope = 1.0 / self.n_true + 1.0 / self.n_false
        self.offset = np.arange(1, n + 1, dtype=np.float64) / self.n_false
        self.bytes_per_row = n * (2 + 4 + 8)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        n = self.order.shape[0]
        out = np.empty((block.shape[0], self.order.shape[1]))
        # tokens along the first axis: gathering and summing whole rows is fast
        by_token = np.ascontiguousarray(block.T)
        for j in range(self.order.shape[1]):
            cum_true = by_token[self.order[:, j]].astype(np.int32)
            np.cumsum(cum_true, axis=0, out=cum_true)  # in place: far faster than from bool
            diff = cum_true * self.slope
            diff -= self.offset[:, None]
            np.abs(diff, out=diff)
            if self.statistic == "wasserstein":
                # einsum, not BLAS: a matrix-vector product this small is faster unthreaded
                out[:, j] = np.einsum("i,ij->j", self.gaps[:, j], diff[:-1])
            elif self.run_ends[j].size == n:
                out[:, j] = diff.max(axis=0)
            else:
                out[:, j] = diff[self.run_ends[j]].max(axis=0)
        return out


class KnnKernel(Kernel):
    """The kNN KL estimator, one labelling and column at a time (no matrix form)."""

    def __init__(self, values: np.ndarray, statistic: str, k: int, base_divisor: float) -> None:
        self.values = values
        self.reverse = statistic == "knn_kl_reverse"
        self.k = k
        self.base_divisor = base_divisor
        self.bytes_per_row = values.shape[0] * 8

    def __call__(self, block: np.ndarray) -> np.ndarray:
        out = np.empty((block.shape[0], self.values.shape[1]))
        for r, row in enumerate(block):
            for j in range(self.values.shape[1]):
                first, second = self.values[row, j], self.values[~row, j]
                if self.reverse:
                    first, second = second, first
                out[r, j] = knn_kl_estimate(first, second, self.k)
        return out / self.base_divisor


class PairKernel(Kernel):
    """Two kernels on the same labellings, side by side: (rows, L1 + L2); ``width`` = L1."""

    def __init__(self, first: Kernel, second: Kernel) -> None:
        self.first = first
        self.second = second
        self.width: int | None = None
        self.bytes_per_row = first.bytes_per_row + second.bytes_per_row

    def __call__(self, block: np.ndarray) -> np.ndarray:
        a = self.first(block)
        self.width = a.shape[1]
        return np.hstack((a, self.second(block)))


def evaluate(kernel: Kernel, blocks: Iterator, total: int, progress: bool) -> np.ndarray:
    """Run ``kernel`` over labelling blocks into a (total, L) null, in bounded chunks.

    Chunks of rows keep the kernel's working memory within :data:`CHUNK_BYTES`;
    a kernel that needs whole labellings gets a streamed block as one array.
    """
    from tqdm.auto import tqdm

    max_rows = max(1, CHUNK_BYTES // max(kernel.bytes_per_row, 1))
    null = None
    filled = 0
    with tqdm(total=total, disable=not progress, unit="perm", desc="permutations") as bar:
        for block in blocks:
            if hasattr(block, "token_pieces") and not kernel.streams:
                block = block.full()
            rows = block.shape[0]
            n_chunks = -(-rows // max_rows)
            rows_per_chunk = -(-rows // n_chunks)
            for start in range(0, rows, rows_per_chunk):
                stop = min(rows, start + rows_per_chunk)
                if hasattr(block, "row_range"):
                    chunk = block if stop - start == rows else block.row_range(start, stop)
                else:
                    chunk = block[start:stop]
                values = kernel(chunk)
                if null is None:
                    null = np.empty((int(total), values.shape[1]))
                null[filled : filled + values.shape[0]] = values
                filled += values.shape[0]
                bar.update(values.shape[0])
                del chunk, values
            del block  # memory: not kept while the next block is drawn
    if null is None or filled != total:
        raise RuntimeError(f"the labellings gave {filled} rows, not {total}")  # a bug, not input
    return null
