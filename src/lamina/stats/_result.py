"""The result of a permutation test of every column at once."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PermutationResult:
    """A permutation test of every column at once.

    Arrays are per column (layer): ``statistic`` (L,), ``null_distribution``
    (m, L) with one row per labelling (shared by all columns; in the exact test
    every labelling, the observed one included), ``pvalue`` (L,) uncorrected,
    ``pvalue_maxstat`` (L,) max-statistic family-wise, ``pvalue_holm`` (L,)
    Holm family-wise, ``pvalue_fdr`` (L,) Benjamini-Hochberg. Divergences are
    in nats, or in units of ``log(base)``. ``backend`` names where the counts
    ran (:mod:`lamina.backends`) and ``backend_reason`` says why, in a sentence
    without timings. ``binning``: ``'robust'`` when a histogram statistic's
    edges were the robust ones (``robust_bins=True`` with a bin count), else
    ``'range'``. ``companion_statistic`` and ``companion_null``: a
    companion kernel's values on the same labellings
    (``permutation_test(..., companion=...)``), else None.
    """

    statistic: np.ndarray
    null_distribution: np.ndarray
    pvalue: np.ndarray
    pvalue_maxstat: np.ndarray
    pvalue_holm: np.ndarray
    pvalue_fdr: np.ndarray
    n_permutations: int
    exact: bool
    statistic_name: str
    alternative: str
    seed: int
    bins: int | str | None
    base: float | None
    compat: str
    n_true: int = 0
    n_false: int = 0
    n_bins: np.ndarray | None = None
    edges: tuple[np.ndarray, ...] | None = field(default=None, repr=False)
    binning: str = "range"
    pseudocount: float = 0.0
    k: int | None = None
    backend: str = "numpy"
    pvalue_rule: str = "(b + 1) / (m + 1)"
    backend_reason: str = ""
    scheme: str = "exchangeable"
    companion_statistic: np.ndarray | None = field(default=None, repr=False)
    companion_null: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self, *, include_null: bool = False) -> dict[str, Any]:
        """A JSON-ready dict; non-finite numbers become the strings "inf", "-inf", "nan"."""
        out: dict[str, Any] = {
            "statistic_name": self.statistic_name,
            "compat": self.compat,
            "alternative": self.alternative,
            "n_permutations": self.n_permutations,
            "exact": self.exact,
            "seed": self.seed,
            "bins": self.bins,
            "binning": self.binning,
            "base": self.base,
            "pseudocount": self.pseudocount,
            "k": self.k,
            "backend": self.backend,
            "backend_reason": self.backend_reason,
            "pvalue_rule": self.pvalue_rule,
            "scheme": self.scheme,
            "n_true": self.n_true,
            "n_false": self.n_false,
            "n_bins": None if self.n_bins is None else [int(b) for b in self.n_bins],
            "statistic": _json_floats(self.statistic),
            "pvalue": _json_floats(self.pvalue),
            "pvalue_maxstat": _json_floats(self.pvalue_maxstat),
            "pvalue_holm": _json_floats(self.pvalue_holm),
            "pvalue_fdr": _json_floats(self.pvalue_fdr),
        }
        if include_null:
            out["null_distribution"] = _json_floats(self.null_distribution)
        json.dumps(out)  # fail here, not in a writer, if anything is not JSON-ready
        return out


def _json_floats(arr: np.ndarray) -> Any:
    def conv(x: float) -> float | str:
        if math.isfinite(x):
            return float(x)
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")

    a = np.asarray(arr, dtype=np.float64)
    if a.ndim == 0:
        return conv(float(a))
    if a.ndim == 1:
        return [conv(float(x)) for x in a]
    return [_json_floats(row) for row in a]
