"""Circular shifts: a null that keeps the serial dependence of both series.

Tokens of a text are not independent: a token's label and its norms are
correlated with its neighbours' (on the default window the attn_out log-norm
has lag-1 autocorrelation 0.27-0.37 at deep layers). A permutation that scatters
labels over tokens destroys that dependence in the null while the observed
statistic keeps it, so the null is too narrow and the test rejects far more often
than alpha. A *circular shift* moves a whole series of labels by ``k``
positions against the values (``label[t] -> label[(t + k) mod size]``): each
series keeps its own autocorrelation exactly (up to the wrap-around), only their
alignment changes, so under the null that the two series are independent
(or, for residualised series, conditionally independent given the controls) the
observed alignment is one draw among the shifts.

Series are the blocks a shift stays within (windows by default: a window's
level is kept with it, so differences between windows cannot mimic an effect);
each series is shifted by its own uniformly random amount, independently of the
others, and every labelling is shared by all columns (layers), so the
max-statistic correction holds as with exchangeable permutations. The shift
group is a group: drawing shifts uniformly from it (the identity included) gives
the valid Monte-Carlo p-value ``(b + 1) / (m + 1)``; when there are at most
``n_permutations`` distinct shift combinations (``prod(sizes)``) every one is
enumerated, the observed alignment (all shifts 0) among them, and ``p = b / M``.

Tokens are taken in *series order* (:class:`ShiftLayout`): series 0's tokens
first, in table order (which is text order within a window), then series 1's.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator

import numpy as np

from lamina.errors import InputError

#: Shifted values written per block (bytes), whatever their dtype.
SHIFT_BLOCK_BYTES = 32 * 2**20


@dataclasses.dataclass(frozen=True)
class ShiftLayout:
    """Where each series' tokens lie once the tokens are sorted by series.

    ``order``: token indices in series order (stable: table order within a
    series); ``starts``/``sizes``: per series, ascending series code.
    """

    order: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray

    @property
    def n_tokens(self) -> int:
        return int(self.order.size)

    @property
    def n_series(self) -> int:
        return int(self.sizes.size)

    @property
    def log_n_shifts(self) -> float:
        """log of the number of distinct shift combinations, ``sum log(size)``."""
        return float(np.log(self.sizes.astype(np.float64)).sum())

    def n_shifts(self, cap: int) -> int | float:
        """``prod(sizes)`` when it is at most ``cap``, else inf."""
        if self.log_n_shifts > math.log(max(cap, 1)) + 1:
            return math.inf
        total = math.prod(int(s) for s in self.sizes)
        return total if total <= cap else math.inf


def shift_layout(series, n_tokens: int | None = None) -> ShiftLayout:
    """The layout of integer ``series`` codes (one per token); None: one series of ``n_tokens``."""
    if series is None:
        if n_tokens is None:
            raise InputError("pass series codes or the number of tokens.")
        codes = np.zeros(n_tokens, dtype=np.int64)
    else:
        codes = np.asarray(series)
        if codes.ndim != 1 or (n_tokens is not None and codes.size != n_tokens):
            raise InputError(
                f"shift series have shape {codes.shape} but there are {n_tokens} tokens; "
                "pass one integer series code per token."
            )
        if not np.issubdtype(codes.dtype, np.integer):
            raise InputError(f"shift series have dtype {codes.dtype}; pass integer codes.")
    order, starts, sizes = sorted_runs(codes)
    return ShiftLayout(order=order, starts=starts, sizes=sizes)


def sorted_runs(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens sorted by code (stable): their ``order``, and each code's ``starts`` and
    ``sizes`` in that order (ascending code)."""
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    sizes = np.diff(np.r_[starts, codes.size])
    return order, starts, sizes


def shift_rows(n_tokens: int, itemsize: int = 1) -> int:
    """Shifted rows per block: about :data:`SHIFT_BLOCK_BYTES` of output, 16 to 4096 rows;
    a function of the data size only (reproducibility)."""
    return int(min(4096, max(16, SHIFT_BLOCK_BYTES // max(n_tokens * itemsize, 1))))


def random_shifts(layout: ShiftLayout, n_permutations: int, seed: int) -> Iterator[np.ndarray]:
    """Uniform shift amounts, int64 blocks ``(rows, n_series)``, from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    rows_per_block = shift_rows(layout.n_tokens)
    done = 0
    while done < n_permutations:
        rows = min(rows_per_block, n_permutations - done)
        # floor(u * size) per series: uniform on 0 .. size - 1, one draw per row and series
        u = rng.random((rows, layout.n_series))
        yield np.minimum((u * layout.sizes).astype(np.int64), layout.sizes - 1)
        done += rows


def exact_shifts(layout: ShiftLayout) -> Iterator[np.ndarray]:
    """Every shift combination (the observed, all zeros, first), in blocks ``(rows, n_series)``."""
    combos = itertools.product(*(range(int(s)) for s in layout.sizes))
    rows_per_block = shift_rows(layout.n_tokens)
    while True:
        chunk = list(itertools.islice(combos, rows_per_block))
        if not chunk:
            return
        yield np.asarray(chunk, dtype=np.int64).reshape(len(chunk), layout.n_series)


def apply_shifts(series: np.ndarray, layout: ShiftLayout, shifts: np.ndarray) -> np.ndarray:
    """Row r: ``series`` (in series order) with series j shifted by ``shifts[r, j]``.

    ``series`` (n,) of any dtype; returns ``(rows, n)`` of that dtype, where
    ``out[r, start + t] = series[start + (t + k) mod size]`` for each series.
    """
    rows = shifts.shape[0]
    out = np.empty((rows, layout.n_tokens), dtype=series.dtype)
    pairs = zip(layout.starts.tolist(), layout.sizes.tolist(), strict=True)
    for j, (start, size) in enumerate(pairs):
        segment = series[start : start + size]
        doubled = np.concatenate((segment, segment[:-1])) if size > 1 else segment
        windows = np.lib.stride_tricks.sliding_window_view(doubled, size)
        out[:, start : start + size] = windows[shifts[:, j]]
    return out


def shift_labellings(
    layout: ShiftLayout, labels: np.ndarray, shifts: Iterator[np.ndarray]
) -> Iterator[np.ndarray]:
    """Bool blocks of shifted ``labels`` (in series order), one per block of ``shifts``."""
    lab = np.asarray(labels, dtype=bool)
    for block in shifts:
        yield apply_shifts(lab, layout, block)
