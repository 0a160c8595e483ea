"""The labellings of a permutation test: uniformly random relabellings, or all of them.

Both generators yield blocks of shape ``(rows, n_tokens)``, one labelling per
row: bool arrays of :func:`block_rows` rows (at most 32 MiB of labels), so that
memory never grows with the number of permutations. Above
:data:`STREAM_TOKENS` tokens a block is a :class:`StreamedBlock` instead, drawn
one range of tokens at a time (at most 32 MiB of labels at once), so that
memory does not grow with the number of tokens either.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np

#: Labels drawn at once (bytes): a block, or a range of tokens of a streamed block.
LABEL_BYTES = 32 * 2**20
#: Above this many tokens (where a block of 16 rows would pass LABEL_BYTES), random
#: labellings are drawn a range of tokens at a time.
STREAM_TOKENS = 2**21
#: Labellings per streamed block (each range then has LABEL_BYTES / STREAM_ROWS tokens).
STREAM_ROWS = 64


def labelling_rows(n_tokens: int) -> int:
    """Rows of a block of random labellings of ``n_tokens`` tokens."""
    return STREAM_ROWS if n_tokens > STREAM_TOKENS else block_rows(n_tokens)


def block_rows(n_tokens: int) -> int:
    """Labellings drawn per random block: a function of the data size only (reproducibility)."""
    return int(min(4096, max(16, LABEL_BYTES // max(n_tokens, 1))))


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
    is equally likely, and rows are independent. Above :data:`STREAM_TOKENS`
    tokens, see :func:`streamed_labellings`.
    """
    if n_tokens > STREAM_TOKENS:
        yield from streamed_labellings(n_tokens, n_true, n_permutations, seed)
        return
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
        del words  # memory: at most one block and its random bytes at once
        _fix_sizes(block, k, rng)
        if invert:
            np.logical_not(block, out=block)
        yield block
        del block
        done += rows


def streamed_labellings(
    n_tokens: int, n_true: int, n_permutations: int, seed: int
) -> Iterator[StreamedBlock]:
    """Uniformly random labellings as :class:`StreamedBlock` s of :data:`STREAM_ROWS` rows.

    The tokens are cut into consecutive ranges of ``LABEL_BYTES / STREAM_ROWS``. Per
    row, how many of the ``n_true`` True labels fall in each range is drawn from
    the multivariate hypergeometric distribution (the law of those numbers for
    a uniformly random subset of ``n_true`` tokens); then each range's labels
    are a uniformly random subset of that size (as in :func:`random_labellings`:
    coin flips, then :func:`_fix_sizes`), independently of the other ranges.
    So every labelling with ``n_true`` True labels is equally likely and rows
    are independent; each range is drawn from its own seed, so a block can be
    drawn again, identically, a range at a time.
    """
    rng = np.random.default_rng(seed)
    starts = np.arange(0, n_tokens, LABEL_BYTES // STREAM_ROWS, dtype=np.int64)
    sizes = np.diff(np.append(starts, n_tokens))
    done = 0
    while done < n_permutations:
        rows = min(STREAM_ROWS, n_permutations - done)
        per_piece = rng.multivariate_hypergeometric(sizes, n_true, size=rows)
        key = int(rng.integers(0, 2**63))
        yield StreamedBlock(n_tokens, starts, per_piece, key)
        done += rows


class StreamedBlock:
    """A block of labellings, shape ``(rows, n_tokens)``, drawn one range of tokens at a time.

    ``per_piece``: (all rows, ranges) True labels of each row in each range;
    ``key``: the block's seed; ``rows``: the rows of the block this one is.
    """

    def __init__(
        self,
        n_tokens: int,
        starts: np.ndarray,
        per_piece: np.ndarray,
        key: int,
        rows: tuple[int, int] | None = None,
    ) -> None:
        self.n_tokens = n_tokens
        self.starts = starts
        self.per_piece = per_piece
        self.key = key
        self.rows = rows or (0, per_piece.shape[0])
        self.shape = (self.rows[1] - self.rows[0], n_tokens)

    def token_pieces(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first token, bool (rows, range length))`` for each range, in order."""
        ends = np.append(self.starts[1:], self.n_tokens)
        for j, (start, end) in enumerate(zip(self.starts, ends, strict=True)):
            rng = np.random.default_rng([self.key, j])
            piece = _labels_with_sizes(self.per_piece[:, j], int(end - start), rng)
            yield int(start), piece[self.rows[0] : self.rows[1]]
            del piece  # memory: not kept while the next range is drawn

    def row_range(self, start: int, stop: int) -> StreamedBlock:
        """Rows ``start:stop`` of this block (drawing them draws the whole block's ranges)."""
        first = self.rows[0]
        return StreamedBlock(
            self.n_tokens, self.starts, self.per_piece, self.key, (first + start, first + stop)
        )

    def full(self) -> np.ndarray:
        """The block as one bool array (rows, n_tokens)."""
        out = np.empty(self.shape, dtype=bool)
        for start, piece in self.token_pieces():
            out[:, start : start + piece.shape[1]] = piece
        return out


def _labels_with_sizes(targets: np.ndarray, n_tokens: int, rng: np.random.Generator) -> np.ndarray:
    """Rows of ``n_tokens`` labels, row r a uniformly random subset of size ``targets[r]``."""
    rows = targets.size
    thresholds = np.minimum(255, np.round(256 * targets / n_tokens)).astype(np.uint8)
    words = rng.integers(
        0, 2**64 - 1, size=-(-rows * n_tokens // 8), dtype=np.uint64, endpoint=True
    )
    block = words.view(np.uint8)[: rows * n_tokens].reshape(rows, n_tokens) < thresholds[:, None]
    del words
    _fix_sizes(block, targets, rng)
    return block


def _fix_sizes(block: np.ndarray, target, rng: np.random.Generator) -> None:
    """Flip uniformly chosen labels in each row of ``block`` until it has ``target`` True.

    ``target``: one size for all rows, or one per row.

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
