"""Part 4: divergences at the chosen bins, their dependence on the bin count, binless checks.

At the bins of Part 3: KL both ways (with a pseudocount, since empty bins make
plug-in KL infinite) and JS, in nats and bits. The bin-count sweep gives JS at
every count of ``sweep_bins`` with its permutation null, so the reader sees how
much of a divergence the binning alone produces. The binless estimators (kNN KL
both ways, KS, Wasserstein-1) each come with their own permutation null.
"""

from __future__ import annotations

import numpy as np

from lamina.stats.catalog import BINLESS_ESTIMATORS, CATALOG, LN2, NATS
from lamina.stats.histograms import bin_edges, bin_indices, histogram_counts
from lamina.stats.permutation import permutation_test
from lamina.stats.two_sample import js_divergence, kl_divergence
from lamina.study.options import StudyOptions
from lamina.study.parts import notebook
from lamina.study.parts._common import bits, nats_bits, null_summary, standardised
from lamina.study.records import AtBins, BinSweep, Divergences, Estimator


def divergences(
    x: np.ndarray, labels: np.ndarray, options: StudyOptions, edges: np.ndarray
) -> Divergences:
    """Part 4 for the layer's log-norms ``x`` (kept tokens) on Part 3's ``edges``."""
    m = options.n_diagnostic_permutations
    lo, hi = options.sweep_bins
    if options.notebook:
        sweep = notebook.sweep(x[labels], x[~labels], lo, hi)
    else:
        bin_counts = list(range(lo, hi + 1))
        sweep = js_sweep(x, labels, bin_counts, m, options.seed, robust=options.robust_bins)
    return Divergences(
        layer=options.layer,
        at_bins=at_bins(x, labels, options, edges),
        js_sweep=sweep,
        binless=[
            binless_estimator(x, labels, name, m, options.seed) for name in BINLESS_ESTIMATORS
        ],
        diagnostic_permutations=m,
        diagnostic_note=diagnostic_note(options),
    )


def diagnostic_note(options: StudyOptions) -> str | None:
    """A sentence when the diagnostics run fewer permutations than asked, else None."""
    asked, m = options.diagnostic_permutations, options.n_diagnostic_permutations
    if asked <= m:
        return None
    return (
        f"the Part 4 diagnostics used {m} permutations, not --diagnostic-permutations {asked}: "
        f"they never use more than --permutations ({options.permutations})."
    )


def at_bins(x: np.ndarray, labels: np.ndarray, options: StudyOptions, edges: np.ndarray) -> AtBins:
    """KL both ways and JS of the two classes' histograms on ``edges``."""
    if options.notebook:
        kl_ci, kl_ic, js, note = notebook.divergences_at_bins(x, labels, edges)
    else:
        counts_c = histogram_counts(x[labels], edges)
        counts_i = histogram_counts(x[~labels], edges)
        pc = options.kl_pseudocount
        kl_ci = float(kl_divergence(counts_c, counts_i, pseudocount=pc))
        kl_ic = float(kl_divergence(counts_i, counts_c, pseudocount=pc))
        js = float(js_divergence(counts_c, counts_i))
        note = f"plug-in KL of the two histograms with {pc:g} added to every bin's count"
    return AtBins(
        n_bins=int(edges.size - 1),
        kl_correct_incorrect=nats_bits(kl_ci),
        kl_incorrect_correct=nats_bits(kl_ic),
        kl_mean_of_both=nats_bits((kl_ci + kl_ic) / 2),
        js=nats_bits(js),
        kl_pseudocount=None if options.notebook else options.kl_pseudocount,
        note=note,
    )


def binless_estimator(
    x: np.ndarray, labels: np.ndarray, name: str, n_permutations: int, seed: int
) -> Estimator:
    """One binless estimator of the difference between the classes, with its null."""
    entry = CATALOG[name]
    result = permutation_test(x, labels, statistic=name, n_permutations=n_permutations, seed=seed)
    observed = float(np.ravel(result.statistic)[0])
    null = np.ravel(result.null_distribution).astype(np.float64)
    return Estimator(
        name=name,
        label=entry.estimator,
        unit=entry.unit,
        value=observed,
        value_bits=bits(observed) if entry.unit == NATS else None,
        null=null_summary(null),
        standardised=standardised(observed, null),
        pvalue=float(np.ravel(result.pvalue)[0]),
        n_permutations=int(result.n_permutations),
    )


def js_sweep(
    x: np.ndarray,
    labels: np.ndarray,
    bin_counts: list[int],
    n_permutations: int,
    seed: int,
    *,
    robust: bool = False,
) -> BinSweep:
    """JS divergence at every bin count, each with its permutation null, in one test.

    A histogram divergence depends only on which tokens share a bin. So the
    column ``codes_b`` (each token's bin index with ``b`` bins) histogrammed
    with ``B = max(bin_counts)`` equal-width bins over its range ``[0, b - 1]``
    puts the tokens of every bin in a bin of their own (the bin width
    ``(b - 1) / B`` is below 1), and the extra bins stay empty, which adds
    nothing to JS. One permutation test of all the code columns with ``B`` bins
    therefore gives the JS of every bin count, under the same labellings.
    ``robust``: each count's edges are the robust ones (:mod:`lamina.stats.histograms`;
    up to 2 bins fewer than the count); the codes' own bins stay equal-width.
    """
    codes = np.empty((x.size, len(bin_counts)), dtype=np.float64)
    for j, b in enumerate(bin_counts):
        codes[:, j] = bin_indices(x, bin_edges(x, b, robust=robust))
    result = permutation_test(
        codes,
        labels,
        statistic="js",
        bins=max(bin_counts),
        n_permutations=n_permutations,
        seed=seed,
    )
    observed = np.asarray(result.statistic, dtype=np.float64)
    null = np.asarray(result.null_distribution, dtype=np.float64)
    null_sd = null.std(axis=0, ddof=1) if null.shape[0] > 1 else np.zeros(len(bin_counts))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(null_sd > 0, (observed - null.mean(axis=0)) / null_sd, np.nan)
    return BinSweep(
        bins=bin_counts,
        edges=[b + 1 for b in bin_counts],
        statistic="js",
        js_nats=observed,
        js_bits=observed / LN2,
        null_mean_bits=null.mean(axis=0) / LN2,
        null_q025_bits=np.quantile(null, 0.025, axis=0) / LN2,
        null_q975_bits=np.quantile(null, 0.975, axis=0) / LN2,
        standardised=z,
        pvalue=np.asarray(result.pvalue, dtype=np.float64),
        n_permutations=int(result.n_permutations),
    )
