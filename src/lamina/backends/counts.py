"""Exact per-bin counts of blocks of labellings, in tiles of tokens and groups of columns.

:class:`OneHotCounts` multiplies a block of labellings (rows x tokens, 0/1) by
the one-hot bin matrix of all columns (tokens x total bins) on one backend
(:mod:`lamina.backends.products`), without ever holding more than
:data:`ONEHOT_BYTES` of one-hot matrix: tokens are taken in tiles of at most
:data:`TILE_TOKENS` (which also keeps every float32 partial count far below
2^24, where float32 stops being exact) and columns in groups, and the partial
counts of successive tiles are summed in int64. The one-hot tiles are kept
while all of them fit in :data:`ONEHOT_BYTES`; otherwise one scratch tile of
:data:`SCRATCH_BYTES` is reused: its ones are set for a tile of tokens, used,
and cleared (one write per token and column, not per bin).

A block is a bool array ``(rows, tokens)`` or any object with ``shape`` and
``token_pieces()`` yielding ``(first token, bool (rows, piece tokens))`` in
order (labellings drawn a range of tokens at a time,
:mod:`lamina.stats._labellings`); the counts are the same either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from lamina.backends.products import make_product

#: One-hot matrix memory kept for all tiles, if they fit (bytes).
ONEHOT_BYTES = 256 * 2**20
#: One-hot matrix memory of the scratch tile used when they do not (small: it is written
#: at random places, fastest while it stays in the CPU's caches).
SCRATCH_BYTES = 32 * 2**20
#: Most tokens in one product: every partial count stays <= this, far below 2^24.
TILE_TOKENS = 2**17
#: Columns are grouped so that a tile of a group holds at least this many tokens.
MIN_TILE_TOKENS = 4096


class OneHotCounts:
    """``labels @ one_hot`` for every column: exact int64 counts (rows, total bins).

    ``bins``: (n, L) bin index per token and column (any integer type);
    ``n_bins``: (L,); ``backend``: a name of :data:`lamina.backends.products.NAMES`
    that runs here.
    """

    def __init__(self, bins: np.ndarray, n_bins: np.ndarray, backend: str) -> None:
        n = bins.shape[0]
        self.backend = backend
        self.product = make_product(backend)
        self.bins = bins
        self.offsets = np.concatenate(([0], np.cumsum(n_bins))).astype(np.int64)
        itemsize = self.product.itemsize
        self.groups = _groups(np.asarray(n_bins), SCRATCH_BYTES // (MIN_TILE_TOKENS * itemsize))
        self.widest = max(self._width(g) for g in range(len(self.groups)))
        keep = n * int(self.offsets[-1]) * itemsize <= ONEHOT_BYTES
        budget = ONEHOT_BYTES if keep else SCRATCH_BYTES
        self.tile = int(max(1, min(TILE_TOKENS, budget // (self.widest * itemsize))))
        self.scratch: Any = None
        self.cache = None
        if keep:
            self.cache = [
                [self._cached(first, min(first + self.tile, n), g) for g in range(len(self.groups))]
                for first in range(0, n, self.tile)
            ]

    def _width(self, group: int) -> int:
        start, end = self.groups[group]
        return int(self.offsets[end] - self.offsets[start])

    def _put(self, buffer: Any, first: int, stop: int, group: int, value: int) -> None:
        """Set the one-hot entries of tokens ``first:stop`` and ``group`` in ``buffer`` to value."""
        start, end = self.groups[group]
        base = np.arange(stop - first, dtype=np.int64) * self._width(group)
        for j in range(start, end):  # a column at a time: 16 bytes per token of index
            column = self.bins[first:stop, j].astype(np.int64)
            column += base + int(self.offsets[j] - self.offsets[start])
            self.product.put(buffer, column, value)

    def _cached(self, first: int, stop: int, group: int) -> Any:
        buffer = self.product.zeros((stop - first) * self._width(group))
        self._put(buffer, first, stop, group, 1)
        return self.product.matrix(buffer, stop - first, self._width(group))

    def segments(self, block: Any) -> Iterator[tuple[int, int, np.ndarray]]:
        """``(first token, stop, labels of those tokens)``, never crossing a tile boundary."""
        pieces = block.token_pieces() if hasattr(block, "token_pieces") else [(0, block)]
        for start, piece in pieces:
            stop = start + piece.shape[1]
            first = start
            while first < stop:
                end = min(stop, (first // self.tile + 1) * self.tile)
                yield first, end, piece[:, first - start : end - start]
                first = end
            del piece  # memory: a streamed range is not kept while the next one is drawn

    def __call__(self, block: Any) -> np.ndarray:
        """The P-group count of every bin of every column: int64 (rows, total bins)."""
        product = self.product
        sums: list[Any] = [None] * len(self.groups)
        for first, stop, labels in self.segments(block):
            operand = product.labels(labels)
            for g in range(len(self.groups)):
                if self.cache is not None:
                    tile_start = (first // self.tile) * self.tile
                    one_hot = self.cache[first // self.tile][g][
                        first - tile_start : stop - tile_start
                    ]
                    counts = product.multiply(operand, one_hot)
                else:  # set this tile's ones in the scratch buffer, multiply, clear them
                    if self.scratch is None:
                        self.scratch = product.zeros(self.tile * self.widest)
                    self._put(self.scratch, first, stop, g, 1)
                    one_hot = product.matrix(self.scratch, stop - first, self._width(g))
                    counts = product.multiply(operand, one_hot)
                    self._put(self.scratch, first, stop, g, 0)
                if sums[g] is None:
                    sums[g] = counts
                else:
                    sums[g] += counts
            del operand, labels
        parts = [product.to_numpy(s) for s in sums]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def _groups(n_bins: np.ndarray, max_width: int) -> list[tuple[int, int]]:
    """Consecutive columns whose bins add up to at most ``max_width`` (a wider column alone)."""
    groups = []
    start = 0
    while start < n_bins.size:
        end, width = start, 0
        while end < n_bins.size and (end == start or width + n_bins[end] <= max_width):
            width += int(n_bins[end])
            end += 1
        groups.append((start, end))
        start = end
    return groups
