"""The labellings of a permutation test: uniformly random relabellings, or all of them.

Both generators yield bool blocks of shape ``(rows, n_tokens)``, one labelling
per row, in blocks of :func:`block_rows` rows (about 32 MiB of labels while
drawing), so that memory never grows with the number of permutations.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np


def block_rows(n_tokens: int) -> int:
    """Labellings drawn per random block: a function of the data size only (reproducibility)."""
    return int(min(4096, max(16, (32 * 2**20) // max(n_tokens, 1))))


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
