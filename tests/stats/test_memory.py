"""The engine's memory bound on big tables, and the streamed labellings that make it hold.

Peak memory is measured with :mod:`tracemalloc`, to which numpy reports every
array it allocates (torch does not: these tests use the numpy backend).
"""

from __future__ import annotations

import itertools
import math
import tracemalloc

import numpy as np
import pytest
import scipy.stats

from lamina.backends import counts as backend_counts
from lamina.stats import _kernels, _labellings, _validation, permutation, permutation_test
from lamina.stats._labellings import StreamedBlock, random_labellings


@pytest.fixture
def small_streams(monkeypatch):
    """Streaming from 8 tokens on, in ranges of 3 tokens, 7 labellings per block."""
    monkeypatch.setattr(_labellings, "STREAM_TOKENS", 7)
    monkeypatch.setattr(_labellings, "STREAM_ROWS", 7)
    monkeypatch.setattr(_labellings, "LABEL_BYTES", 21)


def _rows(blocks) -> np.ndarray:
    return np.concatenate([b.full() if isinstance(b, StreamedBlock) else b for b in blocks])


def test_streamed_labellings_are_uniform(small_streams):
    n, k, m = 8, 3, 28_000
    blocks = list(random_labellings(n, k, m, seed=5))
    assert all(isinstance(b, StreamedBlock) and b.shape[1] == n for b in blocks)
    rows = _rows(blocks)
    assert rows.shape == (m, n) and (rows.sum(axis=1) == k).all()
    index = {c: i for i, c in enumerate(itertools.combinations(range(n), k))}
    codes = [index[tuple(np.flatnonzero(r))] for r in rows]
    counts = np.bincount(codes, minlength=math.comb(n, k))
    assert scipy.stats.chisquare(counts).pvalue > 1e-3
    # each token is True with probability k / n, ranges alike
    np.testing.assert_allclose(rows.mean(axis=0), k / n, atol=0.01)


def test_a_streamed_block_is_drawn_again_identically(small_streams):
    first = list(random_labellings(20, 9, 30, seed=1))
    again = list(random_labellings(20, 9, 30, seed=1))
    np.testing.assert_array_equal(_rows(first), _rows(again))
    block = first[0]
    np.testing.assert_array_equal(block.row_range(2, 5).full(), block.full()[2:5])
    pieces = list(block.token_pieces())
    assert [start for start, _ in pieces] == list(range(0, 20, 3))
    np.testing.assert_array_equal(np.concatenate([p for _, p in pieces], axis=1), block.full())
    other = _rows(random_labellings(20, 9, 30, seed=2))
    assert not np.array_equal(_rows(first), other)


@pytest.mark.parametrize("statistic", ["js", "kl", "mean_difference", "ks"])
def test_streamed_blocks_give_the_null_of_whole_arrays(small_streams, statistic):
    """Streamed blocks (histograms: range by range; others: made whole) against plain arrays."""
    rng = np.random.default_rng(3)
    values, labels = rng.normal(size=(40, 3)), rng.random(40) < 0.5
    kwargs = {"statistic": statistic, "n_permutations": 50, "seed": 4}
    if statistic == "kl":
        kwargs["pseudocount"] = 0.5
    res = permutation_test(values, labels, **kwargs)
    rows = _rows(random_labellings(40, int(labels.sum()), 50, seed=4))
    kernel, _ = permutation._make_kernel(
        values, labels, statistic, 30, kwargs.get("pseudocount", 0.0), None, 1, "auto", 50
    )
    np.testing.assert_allclose(res.null_distribution, kernel(rows), rtol=1e-13, atol=1e-15)


def test_x_log_x_without_a_table_equals_the_table(monkeypatch):
    rng = np.random.default_rng(8)
    values, labels = rng.normal(size=(300, 2)), rng.random(300) < 0.4
    table = permutation_test(values, labels, n_permutations=60, seed=1)
    monkeypatch.setattr(_kernels, "LOOKUP_MAX", 10)
    direct = permutation_test(values, labels, n_permutations=60, seed=1)
    np.testing.assert_allclose(direct.null_distribution, table.null_distribution, rtol=1e-14)


def _peak(values, labels, **kwargs) -> tuple[int, object]:
    """Peak traced bytes of one permutation test, inputs excluded (made before tracing)."""
    tracemalloc.start()
    try:
        res = permutation_test(values, labels, backend="numpy-float32", **kwargs)
        return tracemalloc.get_traced_memory()[1], res
    finally:
        tracemalloc.stop()


def _bound(n: int, n_cols: int, m: int) -> int:
    """The module docstring's bound: bin index, null (and as much again), working memory."""
    return n * n_cols + 2 * 8 * m * n_cols + permutation.working_bytes() + 2**20


def test_the_budgets_add_up_to_the_stated_bound():
    assert permutation.working_bytes() <= permutation.WORKING_BYTES


def test_memory_stays_within_the_bound_when_every_budget_is_small(monkeypatch):
    """Budgets shrunk 30-250x, so that any allocation growing with n would break the bound."""
    for module, name, value in [
        (_labellings, "LABEL_BYTES", 2**20),
        (_labellings, "STREAM_TOKENS", 2**15),
        (_labellings, "STREAM_ROWS", 16),
        (_kernels, "CHUNK_BYTES", 2 * 2**20),
        (_kernels, "BIN_CHUNK", 2**14),
        (_kernels, "LOOKUP_MAX", 2**12),
        (_validation, "FINITE_CHUNK_ROWS", 2**12),
        (backend_counts, "ONEHOT_BYTES", 4 * 2**20),
        (backend_counts, "SCRATCH_BYTES", 2**20),
        (backend_counts, "TILE_TOKENS", 2**14),
    ]:
        monkeypatch.setattr(module, name, value)
    rng = np.random.default_rng(9)
    n, n_cols, m = 400_000, 4, 40
    labels = rng.random(n) < 0.4
    values = rng.normal(size=(n, n_cols)) + 0.02 * labels[:, None]
    peak, res = _peak(values, labels, n_permutations=m, seed=2)
    assert peak <= _bound(n, n_cols, m)
    assert peak > 2**20  # it did hold working memory
    assert res.null_distribution.shape == (m, n_cols)


@pytest.mark.slow
def test_three_million_tokens_stay_within_the_stated_bound():
    rng = np.random.default_rng(10)
    n, n_cols, m = 3_000_000, 3, 12
    labels = rng.random(n) < 0.45
    values = rng.normal(size=(n, n_cols))
    values[:, 1] += 0.05 * labels
    peak, res = _peak(values, labels, n_permutations=m, seed=0)
    assert peak <= _bound(n, n_cols, m)
    assert res.pvalue[1] == pytest.approx(1 / (m + 1))  # the planted shift is found
    assert res.backend == "numpy-float32"
