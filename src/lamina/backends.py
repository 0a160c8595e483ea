"""Exact count products for the permutation engine, on numpy or torch.

The permutation engine (:mod:`lamina.stats.permutation`) reduces every histogram
statistic to one product per block of labellings: labels (rows x tokens, 0/1)
times the one-hot bin matrix of all columns (tokens x total bins), an exact
integer count. This module is the one place that decides where that product
runs, and the only module below the pipeline, besides capture, that may use
torch (imported lazily, only when its backend is chosen), so :mod:`lamina.stats`
stays pure numpy and scipy.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from lamina.errors import InputError

BACKENDS = ("auto", "numpy", "torch")
#: One-hot matrix memory per group of columns (bytes).
ONEHOT_BYTES = 256 * 2**20

_TORCH_INT_MM: bool | None = None


def torch_int_mm_available() -> bool:
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


def resolve_backend(backend: str, work: float | None = None) -> str:
    """The count backend to use; ``work`` is the number of multiply-adds of the counts.

    ``auto`` takes torch when it is already imported (as in ``lamina run``), or when
    the work is large enough to repay importing it, and numpy otherwise.
    """
    if backend not in BACKENDS:
        raise InputError(f"backend={backend!r} is unknown; pass 'auto', 'numpy' or 'torch'.")
    if backend == "auto":
        if "torch" not in sys.modules and (work is None or work < AUTO_TORCH_MIN_WORK):
            return "numpy"
        return "torch" if torch_int_mm_available() else "numpy"
    if backend == "torch" and not torch_int_mm_available():
        raise InputError(
            "backend='torch' needs torch with an int8 matrix product (torch._int_mm) on this "
            "CPU; pass backend='numpy' or 'auto'."
        )
    return backend


class OneHotCounts:
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
