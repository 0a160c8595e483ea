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
:func:`lamina.stats._labellings.random_labellings`).
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
count, computed by :mod:`lamina.backends` (float32 BLAS in numpy or torch,
torch's int8 product, or torch on a CUDA device; ``backend='auto'`` picks the
fastest here by a cached calibration, ``LAMINA_PERM_BACKEND`` or ``backend=``
override it); every backend gives the same counts, and the result records
which one ran and why. Mean differences, Hedges' g and AUROC use a float64
product with the (centred) values, their squares or their pooled midranks; KS
and Wasserstein use per-column cumulative sums of the labels in sorted order.
The kNN KL estimator has no such form and loops over labellings (slow).

Memory
------
For the histogram statistics (``js``, ``kl``, ``kl_reverse``; not
``compat='notebook'``), beyond its inputs (``values`` as float64, ``8 n L``
bytes, and the labels) a test holds

* each token's bin in each column, ``n L`` bytes (``2 n L`` if a column has
  more than 256 bins);
* the null distribution, ``8 m L`` bytes, and about as much again while the
  p-values are computed;
* at most :data:`WORKING_BYTES` (512 MiB) of working memory, whatever ``n`` and
  ``m``: labels drawn 32 MiB at a time (blocks of ``clamp(32 MiB / n, 16,
  4096)`` labellings; above 2^21 tokens, blocks of 64 labellings drawn 2^19
  tokens at a time), with their random bytes and size fixing (96 MiB); working
  arrays of at most 128 MiB per chunk of labellings (``CHUNK_BYTES``); the
  one-hot matrices, kept while they fit in 256 MiB, else one 32 MiB scratch
  tile reused for every 2^17 tokens or fewer; ``x log x`` tables of at most
  16 MiB; small arrays of a few values per bin.

:func:`working_bytes` adds these budgets up; ``tests/stats/test_memory.py``
checks the peak with tracemalloc on 3 million tokens. Binning with a rule
(``bins='fd'`` etc., not a count) or robust bins (``robust_bins=True``: the
quantiles) reads a copy of a column. The other
statistics keep per-token arrays of their own (``8-24 n L`` bytes: centred
values, ranks, sort orders) and evaluate whole labellings (a block of 64 of
them, ``64 n`` bytes, above 2^21 tokens).
"""

from __future__ import annotations

import math

import numpy as np

from lamina.backends import check_backend
from lamina.backends import counts as backend_counts
from lamina.errors import InputError
from lamina.stats import _kernels, _labellings
from lamina.stats._kernels import (
    AurocKernel,
    EcdfKernel,
    HistogramKernel,
    Kernel,
    KnnKernel,
    MomentKernel,
    PairKernel,
    evaluate,
)
from lamina.stats._labellings import exact_labellings, random_labellings
from lamina.stats._notebook import notebook_permutation_test
from lamina.stats._result import PermutationResult
from lamina.stats._stratified import (
    StrataLayout,
    exact_stratified_labellings,
    strata_layout,
    stratified_labellings,
)
from lamina.stats._validation import (
    as_labels,
    as_values_matrix,
    check_positive_int,
    check_pseudocount,
    check_seed,
    log_base_divisor,
)
from lamina.stats.catalog import (
    DIVERGENCES,
    HISTOGRAM_STATISTICS,
    SIGNED_CENTERS,
    STATISTICS,
)
from lamina.stats.corrections import (
    check_alternative,
    fdr_bh,
    holm,
    maxstat_pvalues,
    permutation_pvalues,
)
from lamina.stats.shifts import (
    ShiftLayout,
    exact_shifts,
    random_shifts,
    shift_labellings,
    shift_layout,
)

__all__ = ["EXACT_LIMIT", "WORKING_BYTES", "PermutationResult", "permutation_test"]

#: Largest exact test enumerated.
EXACT_LIMIT = 2_000_000
#: The working memory a histogram test stays within (bytes; module docstring, Memory).
WORKING_BYTES = 512 * 2**20


def working_bytes() -> int:
    """The budgets of a histogram test's working memory added up (at most WORKING_BYTES)."""
    labels = 3 * _labellings.LABEL_BYTES  # a block, its random bytes, fixing its sizes
    one_hot = max(backend_counts.ONEHOT_BYTES, backend_counts.SCRATCH_BYTES)
    one_hot += 16 * backend_counts.TILE_TOKENS  # the index of one tile's ones
    tables = 2 * 8 * _kernels.LOOKUP_MAX
    return labels + _kernels.CHUNK_BYTES + one_hot + tables


def permutation_test(
    values,
    labels,
    *,
    statistic: str = "js",
    bins: int | str = 30,
    robust_bins: bool = False,
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
    strata=None,
    shift_within=None,
    companion=None,
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
    data. ``robust_bins``: for a bin count, equal-width inner bins over each
    column's central 99% and two open end bins (:mod:`lamina.stats.histograms`;
    up to 2 bins fewer), else equal-width over ``[min, max]``; the result's
    ``binning`` says which (``'robust'`` or ``'range'``); a rule, the other
    statistics and ``compat='notebook'`` ignore it. ``pseudocount``: added to every bin's count for ``'kl'`` /
    ``'kl_reverse'`` (0: KL is inf where a bin is empty in one group only).
    ``base``: None (nats) or 2 (bits), divergences only.

    Runs the exact test over all ``C(n, n_P)`` labellings when that number is
    at most ``n_permutations`` (``exact=None``), always (``True``) or never
    (``False``). ``compat='notebook'`` reproduces the reference notebook instead
    (:mod:`lamina.stats._notebook`): its statistic with ``bins + 1`` linspace edges,
    its fresh per-layer permutations from ``RandomState(seed)`` and its p-value
    ``#(null > observed) / m``; ``pvalue_maxstat`` is then NaN.
    ``backend``: how histogram counts are multiplied (module docstring).
    ``strata``: one integer code per row: labels permuted only within each
    stratum (:mod:`lamina.stats._stratified`). ``shift_within``: one series code
    per row (rows in text order within a series): labels circularly shifted
    within each series, which keeps serial dependence (:mod:`lamina.stats.shifts`).
    The exact test enumerates the product of the strata's labellings or shifts.
    ``companion``: None, or a callable ``order -> kernel`` (see
    :mod:`lamina.stats._kernels`) of a second statistic evaluated on the same
    labellings, with its per-token arrays indexed by ``order`` (the tokens'
    order inside the engine); its observed values and null are the result's
    ``companion_statistic`` and ``companion_null``.

    Returns a :class:`PermutationResult`; arrays have one entry per column.
    """
    matrix = as_values_matrix(values)
    lab = as_labels(labels, matrix.shape[0])
    n_permutations = check_positive_int(n_permutations, "n_permutations")
    seed = check_seed(seed)
    if _check_mode(compat, alternative, backend) == "notebook":
        args = (statistic, bins, n_permutations, alternative, seed, base, exact)
        return notebook_permutation_test(matrix, lab, *args, backend, progress)
    pseudocount, k = _check_statistic_options(statistic, alternative, base, pseudocount, k)
    # The kernels see the tokens in stratum (series) order; no statistic depends on it.
    layout, matrix, lab = _layout(strata, shift_within, matrix, lab)
    kernel, record = _make_kernel(
        matrix, lab, statistic, bins, pseudocount, base, k, backend, n_permutations, robust_bins
    )
    record.update(statistic_name=statistic, alternative=alternative, seed=seed)
    if companion is not None:
        kernel = PairKernel(
            kernel, companion(np.arange(lab.size) if layout is None else layout.order)
        )
    return _test(kernel, lab, n_permutations, exact, progress, record, layout)


def _layout(strata, shift_within, matrix: np.ndarray, lab: np.ndarray):
    """The layout of stratified or shifted labellings (None: exchangeable), and the values
    and labels in its order."""
    if strata is not None and shift_within is not None:
        raise InputError("pass strata or shift_within, not both.")
    if strata is not None:
        layout = strata_layout(strata, lab)
    elif shift_within is not None:
        layout = shift_layout(shift_within, lab.size)
    else:
        return None, matrix, lab
    return layout, matrix[layout.order], lab[layout.order]


def _check_mode(compat: str | None, alternative: str, backend: str) -> str:
    """The compatibility mode ('none' or 'notebook'), after checking the shared options."""
    mode = "none" if compat in (None, "none") else compat
    if mode not in ("none", "notebook"):
        raise InputError(f"compat={compat!r} is unknown; pass None or 'notebook'.")
    check_alternative(alternative)
    check_backend(backend)
    return mode


def _test(
    kernel: Kernel,
    lab: np.ndarray,
    n_permutations: int,
    exact: bool | None,
    progress: bool,
    record: dict,
    layout: StrataLayout | None = None,
) -> PermutationResult:
    """The observed statistic, its null over the labellings, and the p-values."""
    n, n_true = lab.size, int(lab.sum())
    observed = kernel(lab[None, :])[0]
    if isinstance(layout, ShiftLayout):
        use_exact, n_labellings = _use_exact_shifts(layout, n_permutations, exact)
        shifts = (
            exact_shifts(layout)
            if use_exact
            else random_shifts(layout, n_permutations, record["seed"])
        )
        total = n_labellings if use_exact else n_permutations
        null = evaluate(kernel, shift_labellings(layout, lab, shifts), total, progress)
        record["scheme"] = "circular shifts"
        return _finish(kernel, lab, observed, null, use_exact, record)
    use_exact, n_labellings = _use_exact(n, n_true, n_permutations, exact, layout)
    record["scheme"] = "exchangeable" if layout is None else "exchangeable within strata"
    if use_exact:
        every = (
            exact_labellings(n, n_true) if layout is None else exact_stratified_labellings(layout)
        )
        null = evaluate(kernel, every, n_labellings, progress)
    else:
        if layout is None:
            labellings = random_labellings(n, n_true, n_permutations, record["seed"])
        else:
            labellings = stratified_labellings(layout, n_permutations, record["seed"])
        null = evaluate(kernel, labellings, n_permutations, progress)
    return _finish(kernel, lab, observed, null, use_exact, record)


def _finish(kernel, lab, observed, null, use_exact: bool, record: dict) -> PermutationResult:
    """The p-values and the result from the observed statistic and its null."""
    n, n_true = lab.size, int(lab.sum())
    companion = {}
    if isinstance(kernel, PairKernel):
        width = kernel.width
        companion = {"companion_statistic": observed[width:], "companion_null": null[:, width:]}
        observed, null = observed[:width], null[:, :width]
    alternative = record["alternative"]
    center = SIGNED_CENTERS.get(record["statistic_name"], 0.0)
    pvalue = permutation_pvalues(
        observed, null, alternative, center=center, includes_observed=use_exact
    )
    pvalue_maxstat = maxstat_pvalues(
        observed, null, alternative, center=center, includes_observed=use_exact
    )
    return PermutationResult(
        statistic=observed,
        null_distribution=null,
        pvalue=pvalue,
        pvalue_maxstat=pvalue_maxstat,
        pvalue_holm=holm(pvalue),
        pvalue_fdr=fdr_bh(pvalue),
        n_permutations=int(null.shape[0]),
        exact=use_exact,
        compat="none",
        n_true=n_true,
        n_false=n - n_true,
        pvalue_rule="b / M (exact)" if use_exact else "(b + 1) / (m + 1)",
        **record,
        **companion,
    )


def _check_statistic_options(
    statistic: str, alternative: str, base, pseudocount, k
) -> tuple[float, int]:
    """Validate the options that depend on the statistic; returns (pseudocount, k)."""
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
    log_base_divisor(base)
    pseudocount = check_pseudocount(pseudocount)
    if pseudocount and statistic not in ("kl", "kl_reverse"):
        raise InputError(f"pseudocount applies to 'kl' and 'kl_reverse' only, not to {statistic}.")
    return pseudocount, check_positive_int(k, "k")


def _make_kernel(
    matrix: np.ndarray,
    lab: np.ndarray,
    statistic: str,
    bins,
    pseudocount: float,
    base,
    k: int,
    backend: str,
    n_permutations: int,
    robust_bins: bool = False,
) -> tuple[Kernel, dict]:
    """The kernel of ``statistic``, and the parameters the result records about it."""
    n = matrix.shape[0]
    base_divisor = log_base_divisor(base)
    record = {
        "bins": None,
        "base": None if base is None else float(base),
        "pseudocount": pseudocount,
        "k": k if statistic.startswith("knn") else None,
        # the sums of the statistics other than histograms are numpy's float64 products
        "backend": "numpy",
        "backend_reason": f"{statistic} has no count product; it runs in numpy (float64)",
        "binning": "range",
    }
    if statistic in HISTOGRAM_STATISTICS:
        kernel = HistogramKernel(
            matrix,
            lab,
            statistic,
            bins,
            pseudocount,
            base_divisor,
            backend,
            n_permutations,
            robust_bins,
        )
        record.update(
            bins=bins,
            binning="robust" if robust_bins and not isinstance(bins, str) else "range",
            n_bins=kernel.n_bins,
            edges=kernel.edges,
            backend=kernel.choice.name,
            backend_reason=kernel.choice.reason,
        )
        return kernel, record
    if statistic in ("mean_difference", "hedges_g"):
        return MomentKernel(matrix, lab, statistic), record
    if statistic == "auroc":
        return AurocKernel(matrix, lab), record
    if statistic in ("ks", "wasserstein"):
        return EcdfKernel(matrix, lab, statistic), record
    n_min = min(int(lab.sum()), n - int(lab.sum()))
    if n_min < k + 1:
        raise InputError(f"k={k} needs at least {k + 1} tokens per group; use a smaller k.")
    return KnnKernel(matrix, statistic, k, base_divisor), record


def _use_exact_shifts(
    layout: ShiftLayout, n_permutations: int, exact: bool | None
) -> tuple[bool, float]:
    """Whether to enumerate every shift combination, and how many there are (inf if many)."""
    n_shifts = layout.n_shifts(max(n_permutations, EXACT_LIMIT))
    return _exact_choice(n_shifts, n_permutations, exact, "shift combinations"), n_shifts


def _exact_choice(count: float, n_permutations: int, exact: bool | None, what: str) -> bool:
    """Whether to enumerate ``count`` labellings; refuses more than :data:`EXACT_LIMIT`."""
    use_exact = count <= n_permutations if exact is None else bool(exact)
    if use_exact and count > EXACT_LIMIT:
        raise InputError(
            f"the exact test would enumerate more than {EXACT_LIMIT} {what}; "
            "pass exact=None or False for a randomized test."
        )
    return use_exact


def _use_exact(
    n: int, n_true: int, n_permutations: int, exact: bool | None, layout=None
) -> tuple[bool, float]:
    """Whether to enumerate every labelling, and how many there are (inf if very many).

    With a strata ``layout`` the labellings are prod_s C(n_s, k_s), not C(n, n_true).
    """
    if layout is None:
        sizes, counts = [n], [n_true]
    else:
        sizes, counts = layout.sizes.tolist(), layout.n_true.tolist()
    log_labellings = sum(
        math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)
        for a, b in zip(sizes, counts, strict=True)
    )
    few = log_labellings < math.log(max(n_permutations, EXACT_LIMIT)) + 1
    n_labellings = (
        math.prod(math.comb(a, b) for a, b in zip(sizes, counts, strict=True)) if few else math.inf
    )
    return _exact_choice(n_labellings, n_permutations, exact, "labellings"), n_labellings
