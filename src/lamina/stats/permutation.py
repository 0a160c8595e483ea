"""One permutation engine for every layer at once.

``values`` has one row per token and one column per layer (or site); boolean
``labels`` split the rows into the first group P (True: the correct tokens)
and the second group Q (False). Every labelling of the null is one
relabelling of the tokens shared by all columns, so the maximum statistic
over columns is available for a family-wise correction.

Labellings
----------
Randomized (the default when there are more distinct labellings than
``n_permutations``): ``n_permutations`` uniformly random relabellings that keep
the group sizes, from ``numpy.random.default_rng(seed)``; the same seed, data
size and ``n_permutations`` give the same labellings for every statistic, so
results are reproducible and comparable across statistics and bin counts. Each
labelling is drawn as independent biased coin flips per token (proposal) whose
surplus or deficit of True labels is then corrected by flipping a uniformly
random subset; the procedure commutes with every permutation of the tokens, so
each labelling is uniform over all relabellings with the right group sizes
(1 random byte per token is far cheaper than a shuffle; see
:func:`random_labellings`).
p = (b + 1) / (m + 1), see :mod:`lamina.stats.corrections`.

Exact (when ``C(n, n_P) <= n_permutations``, or ``exact=True``): every
labelling, the observed one included, in :func:`itertools.combinations`
order; p = b / M.

Histogram statistics without a loop over labellings
----------------------------------------------------
Per column the bin edges come from the pooled data, which no relabelling
changes, so each token's bin is fixed. The P-group histogram of a labelling is
then a count over its labels: for a block of labellings ``Y`` (rows x tokens,
0/1) and the one-hot bin matrix ``H`` of all columns side by side (tokens x
total bins), ``Y @ H`` gives every P-histogram of every column at once; the
Q-histogram is the pooled histogram minus it. The product is an exact integer
count, computed as an int8 x int8 -> int32 matrix product in torch when torch
is installed (``backend="torch"``; several times faster than float32 on CPUs
with int8 dot-product units) or as a float32 BLAS product in numpy
(``backend="numpy"``). ``"auto"`` takes torch when it is already imported or
the work repays importing it (:data:`AUTO_TORCH_MIN_WORK`), else numpy; both
give the same counts. Mean differences, Hedges' g and AUROC use the same product with
the (centred) values, their squares or their pooled midranks; KS and
Wasserstein use per-column cumulative sums of the labels in sorted order.
The kNN KL estimator has no such form and loops over labellings (slow).

Memory
------
Labellings are drawn in blocks of ``block_rows(n) = clamp(32 MiB / n, 16, 4096)``
rows (about 2 bytes per token and row while drawing) and evaluated in chunks
of at most ``CHUNK_BYTES`` (128 MiB) of working arrays. The one-hot matrices
(1 byte per token and bin with torch, 4 with numpy) are kept while all of them
fit in ``ONEHOT_BYTES`` (256 MiB) and otherwise built one group of columns at
a time. Beyond its inputs the engine therefore holds the null distribution
(``8 m L`` bytes) plus at most about 64 MiB + 128 MiB + 256 MiB (more only if
a single column's one-hot matrix is larger), whatever ``m``: 40,000 tokens x
36 layers x 30 bins x 10,000 permutations peaked at about 210 MiB above the
inputs with torch and 390 MiB with numpy (benchmarks/bench_permutation.py).
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.stats
from scipy.special import rel_entr

from lamina.errors import InputError
from lamina.stats import seed as seed_mode
from lamina.stats._validation import (
    as_labels,
    as_values_matrix,
    check_bin_count,
    check_positive_int,
    check_seed,
    log_base_divisor,
)
from lamina.stats.corrections import (
    ALTERNATIVES,
    fdr_bh,
    holm,
    maxstat_pvalues,
    permutation_pvalues,
)
from lamina.stats.divergence import _check_pseudocount, _knn_kl_sorted
from lamina.stats.effects import hedges_correction
from lamina.stats.histograms import bin_edges, bin_indices

HISTOGRAM_STATISTICS = ("js", "kl", "kl_reverse")
DIVERGENCES = (*HISTOGRAM_STATISTICS, "knn_kl", "knn_kl_reverse")
#: Signed statistics and their value under no effect (the two-sided centre).
SIGNED_CENTERS = {"mean_difference": 0.0, "hedges_g": 0.0, "auroc": 0.5}
STATISTICS = (*DIVERGENCES, "ks", "wasserstein", *SIGNED_CENTERS)
BACKENDS = ("auto", "numpy", "torch")

#: Working memory per chunk of labellings (bytes).
CHUNK_BYTES = 128 * 2**20
#: One-hot matrix memory per group of columns (bytes).
ONEHOT_BYTES = 256 * 2**20
#: Largest exact test enumerated.
EXACT_LIMIT = 2_000_000


def block_rows(n_tokens: int) -> int:
    """Labellings drawn per random block: a function of the data size only (reproducibility)."""
    return int(min(4096, max(16, (32 * 2**20) // max(n_tokens, 1))))


@dataclass(frozen=True)
class PermutationResult:
    """A permutation test of every column at once.

    Arrays are per column (layer): ``statistic`` (L,), ``null_distribution``
    (m, L) with one row per labelling (shared by all columns; in the exact test
    every labelling, the observed one included), ``pvalue`` (L,) uncorrected,
    ``pvalue_maxstat`` (L,) max-statistic family-wise, ``pvalue_holm`` (L,)
    Holm family-wise, ``pvalue_fdr`` (L,) Benjamini-Hochberg. Divergences are
    in nats, or in units of ``log(base)``.
    """

    statistic: np.ndarray
    null_distribution: np.ndarray
    pvalue: np.ndarray
    pvalue_maxstat: np.ndarray
    pvalue_holm: np.ndarray
    pvalue_fdr: np.ndarray
    n_permutations: int
    exact: bool
    statistic_name: str
    alternative: str
    seed: int
    bins: int | str | None
    base: float | None
    compat: str
    n_true: int = 0
    n_false: int = 0
    n_bins: np.ndarray | None = None
    edges: tuple[np.ndarray, ...] | None = field(default=None, repr=False)
    pseudocount: float = 0.0
    k: int | None = None
    backend: str = "numpy"
    pvalue_rule: str = "(b + 1) / (m + 1)"

    def to_dict(self, *, include_null: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; non-finite numbers become the strings "inf", "-inf", "nan"."""
        out: dict[str, Any] = {
            "statistic_name": self.statistic_name,
            "compat": self.compat,
            "alternative": self.alternative,
            "n_permutations": self.n_permutations,
            "exact": self.exact,
            "seed": self.seed,
            "bins": self.bins,
            "base": self.base,
            "pseudocount": self.pseudocount,
            "k": self.k,
            "backend": self.backend,
            "pvalue_rule": self.pvalue_rule,
            "n_true": self.n_true,
            "n_false": self.n_false,
            "n_bins": None if self.n_bins is None else [int(b) for b in self.n_bins],
            "statistic": _json_floats(self.statistic),
            "pvalue": _json_floats(self.pvalue),
            "pvalue_maxstat": _json_floats(self.pvalue_maxstat),
            "pvalue_holm": _json_floats(self.pvalue_holm),
            "pvalue_fdr": _json_floats(self.pvalue_fdr),
        }
        if include_null:
            out["null_distribution"] = _json_floats(self.null_distribution)
        json.dumps(out)  # fail here, not in a writer, if anything is not JSON-ready
        return out


def _json_floats(arr: np.ndarray) -> Any:
    def conv(x: float) -> float | str:
        if math.isfinite(x):
            return float(x)
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")

    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 0:
        return conv(float(a))
    if a.ndim == 1:
        return [conv(float(x)) for x in a]
    return [_json_floats(row) for row in a]


# ----------------------------------------------------------------------------- labellings


def random_labellings(
    n_tokens: int, n_true: int, n_permutations: int, seed: int
) -> Iterator[np.ndarray]:
    """Uniformly random labellings with ``n_true`` True labels, in blocks of :func:`block_rows`.

    Yields bool arrays of shape ``(rows, n_tokens)``; ``n_permutations`` rows in
    all, a deterministic function of ``(n_tokens, n_true, n_permutations, seed)``.

    Method: every token of a row joins the group with the same probability
    (one random byte compared with a threshold), then :func:`_fix_sizes` adds or
    removes uniformly chosen members until the group has its size. Both steps
    treat all tokens alike (relabelling the tokens does not change the
    distribution of the result), so every labelling with the right group size
    is equally likely, and rows are independent.
    """
    rng = np.random.default_rng(seed)
    # Speed only (any proposal gives uniform labellings): draw the smaller group,
    # so that adding members picks from at least half the tokens; when it is
    # small, aim the proposal about sqrt(k) below k, so that rows need members
    # added (cheap) rather than removed (rejection from a small pool).
    invert = n_true > n_tokens - n_true
    k = n_tokens - n_true if invert else n_true
    if k >= 0.1 * n_tokens:
        threshold = round(256 * k / n_tokens)  # P(byte < threshold) = threshold / 256
    else:
        threshold = math.floor(256 * max(0.0, k - math.sqrt(k)) / n_tokens)
    rows_per_block = block_rows(n_tokens)
    done = 0
    while done < n_permutations:
        rows = min(rows_per_block, n_permutations - done)
        # uniform random bytes, drawn 8 at a time (much faster than uint8 draws)
        words = rng.integers(
            0, 2**64 - 1, size=-(-rows * n_tokens // 8), dtype=np.uint64, endpoint=True
        )
        block = words.view(np.uint8)[: rows * n_tokens].reshape(rows, n_tokens) < threshold
        _fix_sizes(block, k, rng)
        if invert:
            np.logical_not(block, out=block)
        yield block
        done += rows


def _fix_sizes(block: np.ndarray, target: int, rng: np.random.Generator) -> None:
    """Flip uniformly chosen labels in each row of ``block`` until it has ``target`` True.

    A row with a surplus turns random True labels False (a deficit: random
    False labels True). The flips are found by rejection: draw positions
    uniformly, accept a draw if the position still holds the value to flip and
    was not drawn before in this round, and stop at the surplus. That is
    sampling without replacement from the positions holding that value, so the
    flipped set is a uniform subset of them. All rows are processed together,
    in rounds, with a batch of draws per row.
    """
    n_tokens = block.shape[1]
    sizes = np.count_nonzero(block, axis=1)
    need = np.abs(sizes - target)
    flip_true = sizes > target  # the value to flip, per row
    holding = np.where(flip_true, sizes, n_tokens - sizes)  # positions holding it
    active = np.flatnonzero(need)
    while active.size:
        # enough draws to finish most rows in one round
        draws = np.ceil(need[active] * n_tokens / holding[active] * 1.25).astype(np.int64) + 4
        rows = np.repeat(active, draws)
        pos = rng.integers(0, n_tokens, size=rows.size)
        valid = block[rows, pos] == flip_true[rows]
        # only the first draw of a position in this round counts
        code = rows * n_tokens + pos
        order = np.argsort(code, kind="stable")
        repeated = np.zeros(code.size, dtype=bool)
        repeated[order[1:]] = code[order[1:]] == code[order[:-1]]
        valid &= ~repeated
        # accept each row's first `need` valid draws (a row's draws are contiguous)
        seen = np.cumsum(valid)
        row_start = np.concatenate(([0], np.cumsum(draws)[:-1]))
        before_row = np.where(row_start > 0, seen[row_start - 1], 0)
        accept = valid & (seen - np.repeat(before_row, draws) <= np.repeat(need[active], draws))
        block[rows[accept], pos[accept]] = ~flip_true[rows[accept]]
        flipped = np.bincount(rows[accept], minlength=block.shape[0])
        need -= flipped
        holding -= flipped
        active = active[need[active] > 0]


def exact_labellings(n_tokens: int, n_true: int) -> Iterator[np.ndarray]:
    """Every labelling with ``n_true`` True labels (the observed one among them), in blocks."""
    rows_per_block = block_rows(n_tokens)
    combos = itertools.combinations(range(n_tokens), n_true)
    while True:
        chunk = list(itertools.islice(combos, rows_per_block))
        if not chunk:
            return
        block = np.zeros((len(chunk), n_tokens), dtype=bool)
        block[np.repeat(np.arange(len(chunk)), n_true), np.asarray(chunk).ravel()] = True
        yield block


# ----------------------------------------------------------------------------- count backends


_TORCH_INT_MM: bool | None = None


def _torch_int_mm_available() -> bool:
    """Whether torch's int8 matrix product runs here and gives exact counts (probed once)."""
    global _TORCH_INT_MM
    if _TORCH_INT_MM is None:
        try:
            import torch

            a = torch.tensor([[1, 0, 1], [0, 1, 1]], dtype=torch.int8)
            b = torch.tensor([[1, 0], [1, 1], [0, 1]], dtype=torch.int8)
            got = torch._int_mm(a, b)
            _TORCH_INT_MM = bool(got.dtype == torch.int32 and got.tolist() == [[1, 1], [1, 2]])
        except Exception:  # any failure (no torch, no CPU kernel) means: use numpy
            _TORCH_INT_MM = False
    return _TORCH_INT_MM


# Importing torch costs 1-2 s on a small CPU; its int8 product repays that only past about
# 2e11 multiply-adds (tokens x permutations x total bins; see bench_permutation.py, where
# 40,000 x 10,000 x 36 x 30 = 4.3e11 took 4.4 s with numpy and 1.4 s with torch).
AUTO_TORCH_MIN_WORK = 2e11


def _resolve_backend(backend: str, work: float | None = None) -> str:
    """The count backend to use; ``work`` is the number of multiply-adds of the counts.

    ``auto`` takes torch when it is already imported (as in ``lamina run``), or when
    the work is large enough to repay importing it, and numpy otherwise.
    """
    if backend not in BACKENDS:
        raise InputError(f"backend={backend!r} is unknown; pass 'auto', 'numpy' or 'torch'.")
    if backend == "auto":
        if "torch" not in sys.modules and (work is None or work < AUTO_TORCH_MIN_WORK):
            return "numpy"
        return "torch" if _torch_int_mm_available() else "numpy"
    if backend == "torch" and not _torch_int_mm_available():
        raise InputError(
            "backend='torch' needs torch with an int8 matrix product (torch._int_mm) on this "
            "CPU; pass backend='numpy' or 'auto'."
        )
    return backend


class _OneHotCounts:
    """``labels @ one_hot`` for groups of columns: exact per-bin counts of the True tokens.

    ``bins``: (n, L) int bin index per token and column; ``n_bins``: (L,).
    Columns are grouped so that one group's one-hot matrix stays within
    ``ONEHOT_BYTES``; the matrices are kept if all of them fit in that budget
    together, and otherwise rebuilt for every block of labellings (building
    one costs about 1 / rows of the product it feeds).
    """

    def __init__(self, bins: np.ndarray, n_bins: np.ndarray, backend: str) -> None:
        n, n_cols = bins.shape
        self.backend = backend
        self.bins = bins
        self.n_bins = n_bins
        if backend == "torch":
            self.dtype = np.int8
        else:  # float32 counts are exact below 2**24 tokens
            self.dtype = np.float32 if n < 2**24 else np.float64
        itemsize = np.dtype(self.dtype).itemsize
        self.groups: list[tuple[int, int]] = []
        start = 0
        while start < n_cols:
            width = 0
            end = start
            while end < n_cols and (
                end == start or (width + n_bins[end]) * n * itemsize <= ONEHOT_BYTES
            ):
                width += int(n_bins[end])
                end += 1
            self.groups.append((start, end))
            start = end
        fits = int(n_bins.sum()) * n * itemsize <= ONEHOT_BYTES
        self.cache = [self._one_hot(start, end) for start, end in self.groups] if fits else None

    def _one_hot(self, start: int, end: int) -> Any:
        n_bins = self.n_bins[start:end]
        offsets = np.concatenate(([0], np.cumsum(n_bins)[:-1]))
        n = self.bins.shape[0]
        one_hot = np.zeros((n, int(n_bins.sum())), dtype=self.dtype)
        one_hot[np.arange(n)[:, None], self.bins[:, start:end] + offsets] = 1
        if self.backend == "torch":
            import torch

            return torch.from_numpy(one_hot)
        return one_hot

    def __call__(self, block: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(first column, end column, counts)``; counts int32 (rows, group width)."""
        if self.backend == "torch":
            import torch

            if block.strides != (block.shape[1], 1):
                # e.g. labels[None, :] has a zero stride, which torch._int_mm misreads
                block = np.array(block, dtype=bool, order="C")
            lab = torch.from_numpy(block.view(np.int8))
            for g, (start, end) in enumerate(self.groups):
                one_hot = self.cache[g] if self.cache is not None else self._one_hot(start, end)
                yield start, end, torch._int_mm(lab, one_hot).numpy()
        else:
            lab = block.astype(self.dtype)
            for g, (start, end) in enumerate(self.groups):
                one_hot = self.cache[g] if self.cache is not None else self._one_hot(start, end)
                yield start, end, (lab @ one_hot).astype(np.int32)


# ----------------------------------------------------------------------------- kernels


class _Kernel:
    """Evaluates a statistic for a block of labellings: bool (rows, n) -> float64 (rows, L)."""

    bytes_per_row: int = 1

    def __call__(self, block: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class _HistogramKernel(_Kernel):
    """JS or KL of the two groups' histograms on each column's pooled edges, from exact counts."""

    def __init__(
        self,
        values: np.ndarray,
        labels: np.ndarray,
        statistic: str,
        bins: int | str,
        pseudocount: float,
        base_divisor: float,
        backend: str,
    ) -> None:
        n, n_cols = values.shape
        self.edges = tuple(bin_edges(values[:, j], bins) for j in range(n_cols))
        self.n_bins = np.array([e.size - 1 for e in self.edges], dtype=np.int64)
        index = np.stack([bin_indices(values[:, j], e) for j, e in enumerate(self.edges)], axis=1)
        self.pooled = np.concatenate(
            [np.bincount(index[:, j], minlength=b) for j, b in enumerate(self.n_bins)]
        ).astype(np.int32)
        self.counts = _OneHotCounts(index, self.n_bins, backend)
        self.statistic = statistic
        self.n_true = int(labels.sum())
        self.n_false = n - self.n_true
        self.pseudocount = pseudocount
        self.base_divisor = base_divisor
        # per labelling: its labels as matrix operand (a view with torch, a
        # float32 copy with numpy) and about six float64 values per bin
        label_bytes = 0 if backend == "torch" else 4 * n
        self.bytes_per_row = label_bytes + int(self.n_bins.sum()) * 8 * 6
        self.offsets = np.concatenate(([0], np.cumsum(self.n_bins)))
        # p log p for every possible count of each group (JS in entropy form)
        self.xlogx_true = _xlogx(np.arange(self.n_true + 1) / self.n_true)
        self.xlogx_false = _xlogx(np.arange(self.n_false + 1) / self.n_false)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        out = np.empty((block.shape[0], self.n_bins.size))
        for start, end, counts_true in self.counts(block):
            n_bins = self.n_bins[start:end]
            first, last = self.offsets[start], self.offsets[end]
            counts_false = self.pooled[first:last] - counts_true
            if self.statistic == "js":
                # JS = sum_i [p_i log p_i + q_i log q_i] / 2 - m_i log m_i, m = (p + q) / 2
                terms = np.take(self.xlogx_true, counts_true)
                terms += np.take(self.xlogx_false, counts_false)
                terms *= 0.5
                mix = counts_true * (0.5 / self.n_true)
                mix += counts_false * (0.5 / self.n_false)
                # log of max(m, tiny) so that empty bins give 0 * finite = 0
                terms -= mix * np.log(np.maximum(mix, np.finfo(np.float64).tiny))
            else:
                c = self.pseudocount
                width = np.repeat(n_bins, n_bins)
                p = (counts_true + c) / (self.n_true + c * width)
                q = (counts_false + c) / (self.n_false + c * width)
                terms = rel_entr(p, q) if self.statistic == "kl" else rel_entr(q, p)
            out[:, start:end] = np.add.reduceat(terms, self.offsets[start:end] - first, axis=1)
        if self.statistic == "js":
            np.maximum(out, 0.0, out=out)
        return out / self.base_divisor


def _xlogx(x: np.ndarray) -> np.ndarray:
    """``x log x`` with ``0 log 0 = 0``."""
    out = np.zeros_like(x, dtype=np.float64)
    positive = x > 0
    out[positive] = x[positive] * np.log(x[positive])
    return out


class _MomentKernel(_Kernel):
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


class _AurocKernel(_Kernel):
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


class _EcdfKernel(_Kernel):
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


class _KnnKernel(_Kernel):
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
                out[r, j] = _knn_kl_sorted(first, np.sort(first), np.sort(second), self.k)
        return out / self.base_divisor


def _evaluate(
    kernel: _Kernel, blocks: Iterator[np.ndarray], total: int, progress: bool
) -> np.ndarray:
    """Run ``kernel`` over labelling blocks, in chunks that keep working memory bounded."""
    from tqdm.auto import tqdm

    max_rows = max(1, CHUNK_BYTES // max(kernel.bytes_per_row, 1))
    parts = []
    with tqdm(total=total, disable=not progress, unit="perm", desc="permutations") as bar:
        for block in blocks:
            n_chunks = -(-block.shape[0] // max_rows)
            rows_per_chunk = -(-block.shape[0] // n_chunks)
            for start in range(0, block.shape[0], rows_per_chunk):
                chunk = block[start : start + rows_per_chunk]
                parts.append(kernel(chunk))
                bar.update(chunk.shape[0])
    return np.concatenate(parts, axis=0)


# ----------------------------------------------------------------------------- public


def permutation_test(
    values,
    labels,
    *,
    statistic: str = "js",
    bins: int | str = 30,
    n_permutations: int = 1000,
    alternative: str = "greater",
    seed: int = 0,
    base=None,
    compat: str | None = None,
    pseudocount: float = 0.0,
    k: int = 1,
    exact: bool | None = None,
    backend: str = "auto",
    progress: bool = False,
) -> PermutationResult:
    """Permutation test of a two-group statistic in every column of ``values`` at once.

    ``values``: (n,) or (n, L) finite numbers (e.g. log-norms per token and
    layer); ``labels``: (n,) bool, True = the first group P (correct tokens).
    ``statistic``: ``'js'`` (default; Jensen-Shannon divergence of the two
    histograms on shared edges), ``'kl'`` (KL(P || Q)), ``'kl_reverse'``
    (KL(Q || P)), ``'knn_kl'`` / ``'knn_kl_reverse'`` (binless kNN estimates,
    ``k`` neighbours; slow), ``'ks'``, ``'wasserstein'`` (unsigned: only
    ``alternative='greater'``), or the signed ``'mean_difference'``,
    ``'hedges_g'``, ``'auroc'`` (P relative to Q; ``'greater'``, ``'less'`` or
    ``'two-sided'`` about 0, 0 and 1/2). ``bins``: number of BINS per column or
    a rule (:func:`lamina.stats.bin_edges`), edges from each column's pooled
    data. ``pseudocount``: added to every bin's count for ``'kl'`` /
    ``'kl_reverse'`` (0: KL is inf where a bin is empty in one group only).
    ``base``: None (nats) or 2 (bits), divergences only.

    Runs the exact test over all ``C(n, n_P)`` labellings when that number is
    at most ``n_permutations`` (``exact=None``), always (``True``) or never
    (``False``). ``compat='seed'`` reproduces the reference notebook instead
    (:mod:`lamina.stats.seed`): its statistic with ``bins + 1`` linspace edges,
    its fresh per-layer permutations from ``RandomState(seed)`` and its p-value
    ``#(null > observed) / m``; ``pvalue_maxstat`` is then NaN.
    ``backend``: how histogram counts are multiplied (module docstring).

    Returns a :class:`PermutationResult`; arrays have one entry per column.
    """
    matrix = as_values_matrix(values)
    n = matrix.shape[0]
    lab = as_labels(labels, n)
    n_permutations = check_positive_int(n_permutations, "n_permutations")
    seed = check_seed(seed)
    mode = "none" if compat in (None, "none") else compat
    if mode not in ("none", "seed"):
        raise InputError(f"compat={compat!r} is unknown; pass None or 'seed'.")
    if alternative not in ALTERNATIVES:
        raise InputError(
            f"alternative={alternative!r} is unknown; pass 'greater', 'less' or 'two-sided'."
        )
    if backend not in BACKENDS:
        raise InputError(f"backend={backend!r} is unknown; pass 'auto', 'numpy' or 'torch'.")
    if mode == "seed":
        return _seed_permutation_test(
            matrix,
            lab,
            statistic,
            bins,
            n_permutations,
            alternative,
            seed,
            base,
            exact,
            _resolve_backend(backend),
            progress,
        )

    if statistic not in STATISTICS:
        raise InputError(
            f"statistic={statistic!r} is unknown; pass one of {', '.join(STATISTICS)}."
        )
    if statistic not in SIGNED_CENTERS and alternative != "greater":
        raise InputError(
            f"{statistic} is not signed, so only alternative='greater' applies; "
            "use a signed statistic (mean_difference, hedges_g, auroc) for 'less' or 'two-sided'."
        )
    if base is not None and statistic not in DIVERGENCES:
        raise InputError(f"base applies to divergences only, not to {statistic}; pass base=None.")
    base_divisor = log_base_divisor(base)
    pseudocount = _check_pseudocount(pseudocount)
    if pseudocount and statistic not in ("kl", "kl_reverse"):
        raise InputError(f"pseudocount applies to 'kl' and 'kl_reverse' only, not to {statistic}.")
    k = check_positive_int(k, "k")

    kernel: _Kernel
    backend_used = "numpy"  # the matrix products of the other statistics are numpy's
    if statistic in HISTOGRAM_STATISTICS:
        bins_per_column = bins if isinstance(bins, int) else 30  # a rule's count is unknown yet
        work = float(n) * n_permutations * matrix.shape[1] * bins_per_column
        backend_used = _resolve_backend(backend, work)
        kernel = _HistogramKernel(
            matrix, lab, statistic, bins, pseudocount, base_divisor, backend_used
        )
    elif statistic in ("mean_difference", "hedges_g"):
        kernel = _MomentKernel(matrix, lab, statistic)
    elif statistic == "auroc":
        kernel = _AurocKernel(matrix, lab)
    elif statistic in ("ks", "wasserstein"):
        kernel = _EcdfKernel(matrix, lab, statistic)
    else:
        n_min = min(int(lab.sum()), n - int(lab.sum()))
        if n_min < k + 1:
            raise InputError(f"k={k} needs at least {k + 1} tokens per group; use a smaller k.")
        kernel = _KnnKernel(matrix, statistic, k, base_divisor)

    n_true = int(lab.sum())
    log_labellings = math.lgamma(n + 1) - math.lgamma(n_true + 1) - math.lgamma(n - n_true + 1)
    few = log_labellings < math.log(max(n_permutations, EXACT_LIMIT)) + 1
    n_labellings = math.comb(n, n_true) if few else math.inf
    use_exact = n_labellings <= n_permutations if exact is None else bool(exact)
    if use_exact and n_labellings > EXACT_LIMIT:
        raise InputError(
            f"the exact test would enumerate more than {EXACT_LIMIT} labellings (C({n}, {n_true})); "
            "pass exact=None or False for a randomized test."
        )
    observed = kernel(lab[None, :])[0]
    if use_exact:
        null = _evaluate(kernel, exact_labellings(n, n_true), n_labellings, progress)
    else:
        null = _evaluate(
            kernel, random_labellings(n, n_true, n_permutations, seed), n_permutations, progress
        )
    center = SIGNED_CENTERS.get(statistic, 0.0)
    pvalue = permutation_pvalues(
        observed, null, alternative, center=center, includes_observed=use_exact
    )
    pvalue_maxstat = maxstat_pvalues(
        observed, null, alternative, center=center, includes_observed=use_exact
    )
    histogram = isinstance(kernel, _HistogramKernel)
    return PermutationResult(
        statistic=observed,
        null_distribution=null,
        pvalue=pvalue,
        pvalue_maxstat=pvalue_maxstat,
        pvalue_holm=holm(pvalue),
        pvalue_fdr=fdr_bh(pvalue),
        n_permutations=int(null.shape[0]),
        exact=use_exact,
        statistic_name=statistic,
        alternative=alternative,
        seed=seed,
        bins=bins if histogram else None,
        base=None if base is None else float(base),
        compat="none",
        n_true=n_true,
        n_false=n - n_true,
        n_bins=kernel.n_bins if histogram else None,
        edges=kernel.edges if histogram else None,
        pseudocount=pseudocount,
        k=k if statistic.startswith("knn") else None,
        backend=backend_used,
        pvalue_rule="b / M (exact)" if use_exact else "(b + 1) / (m + 1)",
    )


def _seed_permutation_test(
    matrix: np.ndarray,
    lab: np.ndarray,
    statistic: str,
    bins,
    n_permutations: int,
    alternative: str,
    seed: int,
    base,
    exact: bool | None,
    backend: str,
    progress: bool,
) -> PermutationResult:
    """The reference notebook's Part 5/6 permutation loop (compat='seed'), without the loop."""
    from tqdm.auto import tqdm

    if statistic not in ("js", "seed_symmetric_kl"):
        raise InputError(
            f"compat='seed' reproduces the notebook's symmetric KL only, not {statistic!r}; "
            "drop compat or pass statistic='js'."
        )
    if isinstance(bins, str):
        raise InputError(
            f"compat='seed' needs an integer bin count, not the rule {bins!r} (the notebook "
            "used 30 bins, i.e. 31 edges)."
        )
    n_bins = check_bin_count(bins)
    if alternative != "greater":
        raise InputError(
            "compat='seed' has only the notebook's one-sided p-value; drop alternative."
        )
    if base is not None:
        raise InputError("compat='seed' reports nats as the notebook does; pass base=None.")
    if exact:
        raise InputError("the notebook has no exact test; drop exact=True or compat='seed'.")
    n, n_cols = matrix.shape
    values32 = matrix.astype(np.float32)
    edges = []
    index = np.empty((n, n_cols), dtype=np.int64)
    for j in range(n_cols):
        e = seed_mode.seed_linspace(values32[:, j].min(), values32[:, j].max(), n_bins + 1)
        edges.append(e)
        index[:, j] = seed_mode.seed_bin_indices(values32[:, j], e)
    layer_counts = [
        _OneHotCounts(index[:, j : j + 1], np.array([n_bins]), backend) for j in range(n_cols)
    ]
    pooled = [np.bincount(index[:, j], minlength=n_bins) for j in range(n_cols)]

    def statistic_of(j: int, block: np.ndarray) -> np.ndarray:
        ((_, _, counts_true),) = list(layer_counts[j](block))
        return seed_mode.seed_symmetric_kl_from_counts(counts_true, pooled[j] - counts_true)

    observed = np.array([statistic_of(j, lab[None, :])[0] for j in range(n_cols)], dtype=np.float64)
    null = np.empty((n_permutations, n_cols))
    filled = np.zeros(n_cols, dtype=np.int64)
    blocks = seed_mode.seed_labellings(lab, n_permutations, n_cols, seed, block_rows=block_rows(n))
    with tqdm(total=n_permutations * n_cols, disable=not progress, unit="perm") as bar:
        for j, block in blocks:
            null[filled[j] : filled[j] + block.shape[0], j] = statistic_of(j, block)
            filled[j] += block.shape[0]
            bar.update(block.shape[0])
    pvalue = np.array([seed_mode.seed_pvalue(null[:, j], observed[j]) for j in range(n_cols)])
    return PermutationResult(
        statistic=observed,
        null_distribution=null,
        pvalue=pvalue,
        pvalue_maxstat=np.full(n_cols, np.nan),
        pvalue_holm=holm(pvalue),
        pvalue_fdr=fdr_bh(pvalue),
        n_permutations=n_permutations,
        exact=False,
        statistic_name="seed_symmetric_kl",
        alternative="greater",
        seed=seed,
        bins=n_bins,
        base=None,
        compat="seed",
        n_true=int(lab.sum()),
        n_false=n - int(lab.sum()),
        n_bins=np.full(n_cols, n_bins, dtype=np.int64),
        edges=tuple(e.astype(np.float64) for e in edges),
        backend=backend,
        pvalue_rule="#(null > observed) / m (the reference notebook's)",
    )
