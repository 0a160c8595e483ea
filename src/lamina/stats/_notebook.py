"""The ``notebook`` compatibility mode: the reference notebook's statistic and p-value, exactly.

It exists for regression against the reference study (notebook 37,
"Token prediction and attention KL divergences") and is never the default;
every result computed with it says ``compat="notebook"``. lamina's own statistics
are in :mod:`lamina.stats.two_sample` and :mod:`lamina.stats.permutation`.

The notebook's ``symmetric_KL(d1, d2, nbins=31)``, reproduced in numpy with the
notebook's float32 arithmetic:

1. edges ``torch.linspace(min, max, nbins)`` over the pooled data: ``nbins``
   EDGES, so ``nbins - 1`` bins (31 edges = 30 bins);
2. ``torch.histogram`` counts (a binary search on the edges: bins
   ``[e_i, e_{i+1})``, the last one closed), scaled to probabilities ``y1``, ``y2``;
3. ``F.kl_div(log(y1 + 1e-15), m, reduction='batchmean')`` and the same for
   ``y2``, with ``m = (y1 + y2) / 2``, averaged. ``F.kl_div(input, target)`` is
   ``sum target * (log target - input)``, so each term is KL(m || y) -- the
   reverse of the Jensen-Shannon divergence's KL(y || m) -- made finite by the
   1e-15, and ``'batchmean'`` on a 1-D tensor divides the sum by its length,
   the number of bins.

Flaws this reproduces on purpose (lamina's default mode has none of them):
the result is not the JS divergence and is not bounded by ln 2 (an empty bin
in one group contributes about ``m_i * 34.5 / n_bins``, because
``-log(1e-15) = 34.5``); it scales as 1/(number of bins), which confounds the
notebook's bin-count sweep; the bin count is one less than the ``nbins``
argument; and the p-value ``#(null > observed) / m`` can be 0 and ignores
ties. The notebook also draws fresh permutations for every layer, so no
max-statistic correction is possible, and it corrects nothing across layers.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator

import numpy as np

from lamina.backends import OneHotCounts, choose_backend
from lamina.errors import InputError
from lamina.stats._labellings import block_rows as labelling_block_rows
from lamina.stats._result import PermutationResult
from lamina.stats._validation import as_finite_1d, check_bin_count
from lamina.stats.corrections import fdr_bh, holm

#: What the notebook adds to every probability inside the log.
NOTEBOOK_EPSILON = 1e-15
#: The notebook's default ``nbins`` (edges, i.e. 30 bins).
NOTEBOOK_DEFAULT_EDGES = 31


def notebook_linspace(start, end, steps: int) -> np.ndarray:
    """``torch.linspace(start, end, steps)`` in float32, bit for bit, in numpy.

    torch computes ``step = (end - start) / (steps - 1)`` in float32, then
    ``start + step * i`` for the first half and ``end - step * (steps - 1 - i)``
    for the rest, each as one fused multiply-add rounded once to float32 (which
    float64 arithmetic reproduces exactly for any realistic range).
    Returns float32, shape ``(steps,)``.
    """
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 2:
        raise InputError(f"nbins={steps!r} is invalid; pass a number of EDGES >= 2 (31 = 30 bins).")
    start32 = np.float32(start)
    end32 = np.float32(end)
    step32 = np.float32((end32 - start32) / np.float32(steps - 1))
    i = np.arange(steps, dtype=np.float64)
    first = np.float64(step32) * i + np.float64(start32)
    last = np.float64(end32) - np.float64(step32) * (steps - 1 - i)
    return np.where(i < steps // 2, first, last).astype(np.float32)


def notebook_bin_indices(values32: np.ndarray, edges32: np.ndarray) -> np.ndarray:
    """``torch.histogram``'s bin of each float32 value (binary search, last bin closed).

    Values must lie within the edges (they do: the edges span the pooled data).
    """
    idx = np.searchsorted(edges32, values32, side="right") - 1
    return np.minimum(idx, edges32.size - 2)


def notebook_symmetric_kl_from_counts(counts1, counts2) -> np.ndarray:
    """The notebook's symmetric KL from two histograms' counts, in float32.

    ``counts1``, ``counts2``: arrays of shape ``(..., n_bins)`` (counts of the
    two groups on the same bins). Returns float32, shape ``(...)``, nats
    divided by ``n_bins`` (see the module docstring).
    """
    c1 = np.asarray(counts1, dtype=np.float32)
    c2 = np.asarray(counts2, dtype=np.float32)
    n_bins = np.float32(c1.shape[-1])
    y1 = c1 / c1.sum(axis=-1, keepdims=True, dtype=np.float32)
    y2 = c2 / c2.sum(axis=-1, keepdims=True, dtype=np.float32)
    mix = (y1 + y2) / np.float32(2)
    eps = np.float32(NOTEBOOK_EPSILON)
    with np.errstate(divide="ignore", invalid="ignore"):
        mix_log_mix = np.where(mix > 0, mix * np.log(mix), np.float32(0)).astype(np.float32)
    kl1 = (mix_log_mix - mix * np.log(y1 + eps)).sum(axis=-1, dtype=np.float32) / n_bins
    kl2 = (mix_log_mix - mix * np.log(y2 + eps)).sum(axis=-1, dtype=np.float32) / n_bins
    return ((kl1 + kl2) / np.float32(2)).astype(np.float32)


def notebook_kl_div(target, input_) -> float:
    """The notebook's ``F.kl_div(log(input_ + 1e-15), target, reduction='batchmean')`` on counts.

    ``target``, ``input_``: histogram counts (or probabilities) on the same
    bins, scaled to probabilities as the notebook does. Returns KL(target ||
    input_) in nats with 1e-15 added inside the log, divided by the number of
    bins (``batchmean`` on a 1-D tensor), computed in float32.
    """
    p = np.asarray(target, dtype=np.float32)
    q = np.asarray(input_, dtype=np.float32)
    p = p / p.sum(dtype=np.float32)
    q = q / q.sum(dtype=np.float32)
    eps = np.float32(NOTEBOOK_EPSILON)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q + eps)), np.float32(0))
    return float(terms.sum(dtype=np.float32) / np.float32(p.size))


def notebook_symmetric_kl(d1, d2, nbins: int = NOTEBOOK_DEFAULT_EDGES) -> float:
    """The reference notebook's ``symmetric_KL(d1, d2, nbins)``, exactly (see the module docstring).

    ``d1``, ``d2``: the two samples (converted to float32, as the notebook's
    tensors are); ``nbins``: the number of bin EDGES (31 = 30 bins), as in the
    notebook. Returns a float in nats / (nbins - 1). Not the Jensen-Shannon
    divergence: use :func:`lamina.stats.js_divergence` for that.
    """
    a = as_finite_1d(d1, "d1").astype(np.float32)
    b = as_finite_1d(d2, "d2").astype(np.float32)
    lo = min(a.min(), b.min())
    hi = max(a.max(), b.max())
    edges = notebook_linspace(lo, hi, nbins)
    n_bins = edges.size - 1
    c1 = np.bincount(notebook_bin_indices(a, edges), minlength=n_bins)
    c2 = np.bincount(notebook_bin_indices(b, edges), minlength=n_bins)
    return float(notebook_symmetric_kl_from_counts(c1, c2))


def notebook_pvalue(null, observed) -> float:
    """The notebook's p-value ``(null > observed).sum() / len(null)``: can be 0, ignores ties."""
    arr = np.asarray(null, dtype=np.float64).ravel()
    if arr.size == 0:
        raise InputError("the null distribution is empty; run at least one permutation.")
    return float((arr > float(observed)).sum() / arr.size)


def notebook_labellings(
    labels: np.ndarray, n_permutations: int, n_layers: int, seed: int, *, block_rows: int
) -> Iterator[tuple[int, np.ndarray]]:
    """The notebook's permutations: ``np.random.permutation(labels)``, fresh for every layer.

    Draws from ``numpy.random.RandomState(seed)`` in the notebook's order (for
    each layer, ``n_permutations`` permutations), so the notebook's loop run
    after ``np.random.seed(seed)`` sees the same labellings. Yields
    ``(layer, rows)`` with ``rows`` a bool block of at most ``block_rows``
    labellings, shape ``(rows, n)``.
    """
    state = np.random.RandomState(seed)
    for layer in range(n_layers):
        done = 0
        while done < n_permutations:
            rows = min(block_rows, n_permutations - done)
            block = np.empty((rows, labels.size), dtype=bool)
            for r in range(rows):
                block[r] = state.permutation(labels)
            yield layer, block
            done += rows


def _check_notebook_options(statistic: str, bins, alternative: str, base, exact) -> int:
    """Refuse what the notebook did not do; returns the number of bins."""
    if statistic not in ("js", "notebook_symmetric_kl"):
        raise InputError(
            f"compat='notebook' reproduces the notebook's symmetric KL only, not {statistic!r}; "
            "drop compat or pass statistic='js'."
        )
    if isinstance(bins, str):
        raise InputError(
            f"compat='notebook' needs an integer bin count, not the rule {bins!r} (the notebook "
            "used 30 bins, i.e. 31 edges)."
        )
    n_bins = check_bin_count(bins)
    if alternative != "greater":
        raise InputError(
            "compat='notebook' has only the notebook's one-sided p-value; drop alternative."
        )
    if base is not None:
        raise InputError("compat='notebook' reports nats as the notebook does; pass base=None.")
    if exact:
        raise InputError("the notebook has no exact test; drop exact=True or compat='notebook'.")
    return n_bins


def notebook_permutation_test(
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
    """The reference notebook's Part 5/6 permutation loop (compat='notebook'), without the loop.

    Takes the engine's validated values matrix and labels; returns a
    :class:`~lamina.stats.permutation.PermutationResult` whose ``pvalue_maxstat`` is NaN.
    """
    from tqdm.auto import tqdm

    n_bins = _check_notebook_options(statistic, bins, alternative, base, exact)
    n, n_cols = matrix.shape
    rows = min(n_permutations, labelling_block_rows(n))
    work = float(n) * n_permutations * n_cols * n_bins
    choice = choose_backend(backend, rows=rows, tokens=n, bins=n_bins, work=work)
    values32 = matrix.astype(np.float32)
    edges = []
    index = np.empty((n, n_cols), dtype=np.int64)
    for j in range(n_cols):
        e = notebook_linspace(values32[:, j].min(), values32[:, j].max(), n_bins + 1)
        edges.append(e)
        index[:, j] = notebook_bin_indices(values32[:, j], e)
    layer_counts = [
        OneHotCounts(index[:, j : j + 1], np.array([n_bins]), choice.name) for j in range(n_cols)
    ]
    pooled = [np.bincount(index[:, j], minlength=n_bins) for j in range(n_cols)]

    def statistic_of(j: int, block: np.ndarray) -> np.ndarray:
        counts_true = layer_counts[j](block)
        return notebook_symmetric_kl_from_counts(counts_true, pooled[j] - counts_true)

    observed = np.array([statistic_of(j, lab[None, :])[0] for j in range(n_cols)], dtype=np.float64)
    null = np.empty((n_permutations, n_cols))
    filled = np.zeros(n_cols, dtype=np.int64)
    blocks = notebook_labellings(
        lab, n_permutations, n_cols, seed, block_rows=labelling_block_rows(n)
    )
    with tqdm(total=n_permutations * n_cols, disable=not progress, unit="perm") as bar:
        for j, block in blocks:
            null[filled[j] : filled[j] + block.shape[0], j] = statistic_of(j, block)
            filled[j] += block.shape[0]
            bar.update(block.shape[0])
    pvalue = np.array([notebook_pvalue(null[:, j], observed[j]) for j in range(n_cols)])
    return PermutationResult(
        statistic=observed,
        null_distribution=null,
        pvalue=pvalue,
        pvalue_maxstat=np.full(n_cols, np.nan),
        pvalue_holm=holm(pvalue),
        pvalue_fdr=fdr_bh(pvalue),
        n_permutations=n_permutations,
        exact=False,
        statistic_name="notebook_symmetric_kl",
        alternative="greater",
        seed=seed,
        bins=n_bins,
        base=None,
        compat="notebook",
        n_true=int(lab.sum()),
        n_false=n - int(lab.sum()),
        n_bins=np.full(n_cols, n_bins, dtype=np.int64),
        edges=tuple(e.astype(np.float64) for e in edges),
        backend=choice.name,
        backend_reason=choice.reason,
        pvalue_rule="#(null > observed) / m (the reference notebook's)",
    )
