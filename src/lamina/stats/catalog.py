"""What each statistic is: one entry per statistic, the single source of its facts.

Every list of statistics in lamina (the permutation engine's, the study's, the
console's labels, the figures' axis labels, the report's) derives from
:data:`CATALOG`. This module imports nothing beyond the standard library, so the
command line can build its options without loading numpy or scipy.

Kinds:

``divergence``
    an information divergence, >= 0, in nats (every result also gives bits);
``distance``
    a distance between the two distributions, >= 0, in its own unit;
``signed``
    a signed effect of the first group (correct) relative to the second; its
    value under no effect is ``center`` (the centre of a two-sided test);
``notebook``
    the reference notebook's own statistic, computed only in the notebook
    compatibility mode (not selectable as a statistic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: ln 2: nats per bit.
LN2 = math.log(2.0)

NATS = "nats"
DIMENSIONLESS = "dimensionless"
LOG_NORM_UNITS = "natural-log units of the norm"


@dataclass(frozen=True)
class Statistic:
    """One statistic of two groups of values.

    ``label`` is the long name (prose, figure axes), ``short`` the compact one
    (tables, titles), ``estimator`` the name Part 4 gives it among the
    estimators; ``binned`` says whether it is computed on shared histogram bins.
    """

    name: str
    kind: str
    unit: str
    label: str
    short: str
    estimator: str
    binned: bool
    center: float | None = None

    @property
    def is_divergence(self) -> bool:
        return self.kind == "divergence"

    @property
    def is_signed(self) -> bool:
        return self.kind == "signed"


_ENTRIES = (
    Statistic("js", "divergence", NATS, "Jensen-Shannon divergence", "JS", "JS", True),
    Statistic(
        "kl", "divergence", NATS, "KL divergence (correct ‖ incorrect)", "KL(C‖I)",
        "KL(correct ‖ incorrect)", True,
    ),
    Statistic(
        "kl_reverse", "divergence", NATS, "KL divergence (incorrect ‖ correct)", "KL(I‖C)",
        "KL(incorrect ‖ correct)", True,
    ),
    Statistic(
        "knn_kl", "divergence", NATS, "kNN KL divergence (correct ‖ incorrect)", "kNN KL(C‖I)",
        "kNN KL(correct ‖ incorrect)", False,
    ),
    Statistic(
        "knn_kl_reverse", "divergence", NATS, "kNN KL divergence (incorrect ‖ correct)",
        "kNN KL(I‖C)", "kNN KL(incorrect ‖ correct)", False,
    ),
    Statistic(
        "ks", "distance", DIMENSIONLESS, "Kolmogorov-Smirnov D", "KS D", "Kolmogorov-Smirnov D",
        False,
    ),
    Statistic(
        "wasserstein", "distance", LOG_NORM_UNITS, "Wasserstein-1 distance", "W1",
        "Wasserstein-1", False,
    ),
    Statistic(
        "mean_difference", "signed", LOG_NORM_UNITS, "difference of means", "Δ mean",
        "difference of means", False, 0.0,
    ),
    Statistic("hedges_g", "signed", DIMENSIONLESS, "Hedges' g", "g", "Hedges' g", False, 0.0),
    Statistic("auroc", "signed", DIMENSIONLESS, "AUROC", "AUROC", "AUROC", False, 0.5),
    Statistic(
        "notebook_symmetric_kl", "notebook", "nats divided by the number of bins (the notebook's)",
        "the notebook's symmetric KL", "symKL", "symmetric KL (notebook)", True,
    ),
)  # fmt: skip

#: Every statistic, by name.
CATALOG: dict[str, Statistic] = {s.name: s for s in _ENTRIES}

#: The statistics a permutation test can use, in the order lamina lists them.
STATISTICS: tuple[str, ...] = tuple(s.name for s in _ENTRIES if s.kind != "notebook")
#: Divergences (reported in nats and bits).
DIVERGENCES: tuple[str, ...] = tuple(s for s in STATISTICS if CATALOG[s].is_divergence)
#: Divergences of two histograms on shared bins.
HISTOGRAM_STATISTICS: tuple[str, ...] = tuple(s for s in DIVERGENCES if CATALOG[s].binned)
#: Signed statistics and their value under no effect (the two-sided centre).
SIGNED_CENTERS: dict[str, float] = {
    s: float(CATALOG[s].center) for s in STATISTICS if CATALOG[s].is_signed
}
#: The binless estimators of a difference between distributions (Part 4 reports them all).
BINLESS_ESTIMATORS: tuple[str, ...] = tuple(
    s for s in STATISTICS if not CATALOG[s].binned and not CATALOG[s].is_signed
)

ALTERNATIVES: tuple[str, ...] = ("greater", "less", "two-sided")

#: Most bins a histogram may have (the one-hot matrices of the permutation engine grow with it).
MAX_BINS = 10_000
#: numpy's bin-width rules (:func:`numpy.histogram_bin_edges`), plus ``"knuth"``.
NUMPY_BIN_RULES: tuple[str, ...] = (
    "auto",
    "fd",
    "doane",
    "scott",
    "stone",
    "rice",
    "sturges",
    "sqrt",
)
BIN_RULES: tuple[str, ...] = (*NUMPY_BIN_RULES, "knuth")

#: Multiple-comparison corrections over layers, and how each is named in prose.
CORRECTION_LABELS: dict[str, str] = {
    "maxstat": "max-statistic family-wise correction",
    "holm": "Holm family-wise correction",
    "fdr": "Benjamini-Hochberg false discovery rate",
    "cluster": "cluster-mass correction over adjacent layers",
    "none": "no multiple-comparison correction",
}
CORRECTIONS: tuple[str, ...] = ("maxstat", "holm", "fdr", "cluster")


def get(name: str) -> Statistic | None:
    """The catalogue entry of ``name``, or None for a name lamina does not know."""
    return CATALOG.get(name)


def is_divergence(name: str) -> bool:
    """Whether ``name`` is a divergence (reported in nats and bits)."""
    entry = CATALOG.get(name)
    return entry is not None and entry.is_divergence


def is_signed(name: str) -> bool:
    """Whether the sign of ``name`` carries the direction (tested two-sided by default)."""
    entry = CATALOG.get(name)
    return entry is not None and entry.is_signed


def unit(name: str) -> str:
    """The unit of ``name``'s values as lamina computes them (divergences: nats)."""
    entry = CATALOG.get(name)
    return entry.unit if entry is not None else DIMENSIONLESS


def label(name: str) -> str:
    """The long name of a statistic (its own name if unknown)."""
    entry = CATALOG.get(name)
    return entry.label if entry is not None else name


def short(name: str) -> str:
    """The compact name of a statistic (its own name if unknown)."""
    entry = CATALOG.get(name)
    return entry.short if entry is not None else name


def axis_label(name: str) -> str:
    """A figure axis label in display units: divergences in bits, log-norm units named."""
    if is_divergence(name):
        return f"{label(name)} (bits)"
    if unit(name) == LOG_NORM_UNITS:
        return f"{label(name)} (ln-norm units)"
    return label(name)


def display_value(value: float, name: str) -> float:
    """A value in display units: bits for divergences, else unchanged."""
    return value / LN2 if is_divergence(name) else value


def format_statistic(value: float | None, name: str) -> str:
    """A statistic for prose and tables: divergences in bits, others in their own unit."""
    if value is None:
        return "n/a"
    if is_divergence(name):
        return f"{value / LN2:.4g} bits"
    return f"{value:.4g}"
