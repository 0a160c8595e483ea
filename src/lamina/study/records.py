"""The typed results of each part: dataclasses whose fields are the part's JSON fields, in order.

``docs/results-format.md`` documents every field. :class:`Record` gives each
type its ``to_dict()`` (nested records as dicts) and ``from_dict()`` (the
reverse), so ``results.json`` can be read back into the same types.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any


class Record:
    """A dataclass whose ``to_dict()`` is its fields, nested records as dicts, in order."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """The record from its ``to_dict()`` form (unknown keys are ignored)."""
        hints = _hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                values[f.name] = _typed(hints[f.name], data[f.name])
        return cls(**values)


def plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _typed(hint: Any, value: Any) -> Any:
    """``value`` read as ``hint``: records and lists or dicts of records are rebuilt."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _typed(args[0], value)
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_dict(value)
    if origin is list and args and isinstance(args[0], type) and issubclass(args[0], Record):
        return [args[0].from_dict(v) for v in value]
    if (
        origin is dict
        and len(args) == 2
        and isinstance(args[1], type)
        and issubclass(args[1], Record)
    ):
        return {k: args[1].from_dict(v) for k, v in value.items()}
    return value


# ----------------------------------------------------------------------------- shared pieces


@dataclasses.dataclass
class NatsBits(Record):
    nats: float
    bits: float


@dataclasses.dataclass
class ClassSummary(Record):
    """One class's values: size, mean, SD (ddof 1), median and range."""

    n: int
    mean: float
    sd: float
    median: float
    min: float
    max: float


@dataclasses.dataclass
class NullSummary(Record):
    """A permutation null distribution: mean, SD (ddof 1), range and quantiles."""

    mean: float
    sd: float
    min: float
    max: float
    q025: float
    q95: float
    q975: float


# ----------------------------------------------------------------------------- Part 1


@dataclasses.dataclass
class Capture(Record):
    """Part 1: what was run on what (model, text, site, windows, tokens)."""

    model: dict[str, Any]
    text: dict[str, Any]
    site: str
    site_module: str | None
    sites_captured: list[str]
    n_layers: int
    layers: list[int]
    windows: dict[str, Any]
    n_windows: int | None
    n_tokens_scored: int
    n_text_tokens: int | None
    text_positions: list[int] | None
    table: str | None


# ----------------------------------------------------------------------------- Part 2


@dataclasses.dataclass
class PositionGroup(Record):
    ctx_pos_from: int
    ctx_pos_to: int
    n_tokens: int
    n_correct: int
    accuracy: float | None


@dataclasses.dataclass
class RunningMean(Record):
    width_tokens: int
    accuracy: Any  # (positions,) float


@dataclasses.dataclass
class SampleSummary(Record):
    n: int
    mean: float | None
    median: float | None
    sd: float | None


@dataclasses.dataclass
class TargetChars(Record):
    correct: SampleSummary
    incorrect: SampleSummary
    lengths: Any
    counts_correct: Any
    counts_incorrect: Any
    probability_correct: Any
    probability_incorrect: Any


@dataclasses.dataclass
class Accuracy(Record):
    """Part 2: top-1 accuracy overall, by position, and the targets' length."""

    n_tokens: int
    n_correct: int
    n_incorrect: int
    accuracy: float
    by_position: list[PositionGroup]
    running_mean: RunningMean
    target_chars: TargetChars


# ----------------------------------------------------------------------------- Part 3


@dataclasses.dataclass
class Normalisations(Record):
    """What the counts, densities and probabilities of one histogram sum to."""

    sum_counts: int
    sum_density: float
    sum_density_times_bin_width: float
    sum_probability: float


@dataclasses.dataclass
class LayerHistograms(Record):
    """Part 3: the classes' log-norm histograms at one layer, on shared bins.

    ``binning``: ``"robust"`` or ``"range"`` (the edges of a bin count);
    ``outlier_layers``: the analysed layers where the most extreme 1% of the
    tokens span more than half of the log-norm range, ``binning_note`` a
    sentence about them (None when there are none).
    """

    layer: int
    site: str
    n_bins: int
    bin_rule: str | None
    edges: Any
    counts_correct: Any
    counts_incorrect: Any
    probability_correct: Any
    probability_incorrect: Any
    correct: ClassSummary
    incorrect: ClassSummary
    difference: float
    normalisations: dict[str, Normalisations]
    # "range" for results written before robust bins existed (they used the range)
    binning: str = "range"
    outlier_layers: list[int] = dataclasses.field(default_factory=list)
    binning_note: str | None = None


# ----------------------------------------------------------------------------- Part 4


@dataclasses.dataclass
class AtBins(Record):
    n_bins: int
    kl_correct_incorrect: NatsBits
    kl_incorrect_correct: NatsBits
    kl_mean_of_both: NatsBits
    js: NatsBits
    kl_pseudocount: float | None
    note: str


@dataclasses.dataclass
class BinSweep(Record):
    """JS at every bin count of the sweep, each with its permutation null."""

    bins: list[int]
    edges: list[int]
    statistic: str
    js_nats: Any
    js_bits: Any
    null_mean_bits: Any
    null_q025_bits: Any
    null_q975_bits: Any
    standardised: Any
    pvalue: Any
    n_permutations: int


@dataclasses.dataclass
class Estimator(Record):
    """One binless estimator with its permutation null."""

    name: str
    label: str
    unit: str
    value: float
    value_bits: float | None
    null: NullSummary
    standardised: float | None
    pvalue: float
    n_permutations: int


@dataclasses.dataclass
class Divergences(Record):
    """Part 4: divergences at the chosen bins, the bin-count sweep, the binless estimators."""

    layer: int
    at_bins: AtBins
    js_sweep: BinSweep
    binless: list[Estimator]
    diagnostic_permutations: int
    diagnostic_note: str | None = None


# ----------------------------------------------------------------------------- Part 5


@dataclasses.dataclass
class Significance(Record):
    """Part 5: the permutation test of the chosen statistic at one layer."""

    layer: int
    statistic_name: str
    statistic_unit: str
    statistic: float
    statistic_bits: float | None
    alternative: str
    n_permutations: int
    exact: bool
    n_null_at_least_observed: int
    pvalue: float
    pvalue_rule: str
    pvalue_floor: float | None
    null: NullSummary
    null_distribution: Any
    null_distribution_bits: Any
    seed: int


# ----------------------------------------------------------------------------- Part 6


@dataclasses.dataclass
class LayerRow(Record):
    """One layer of the laminar profile."""

    layer: int
    n_correct: int
    n_incorrect: int
    n_zero_norm: int
    mean_log_norm_correct: float
    mean_log_norm_incorrect: float
    difference: float
    statistic: float
    statistic_bits: float | None
    null_mean: float
    null_min: float
    null_max: float
    null_q95: float
    pvalue: float
    pvalue_maxstat: float | None
    pvalue_holm: float
    pvalue_fdr: float
    pvalue_corrected: float
    significant: bool
    auroc: float
    hedges_g: float
    hedges_g_ci_low: float
    hedges_g_ci_high: float
    pvalue_cluster: float | None = None
    norm_autocorrelation: list[float | None] = dataclasses.field(default_factory=list)
    effective_tokens: float | None = None


@dataclasses.dataclass
class LaminarProfile(Record):
    """Part 6: every layer's statistic, null, corrected p-values and effect sizes."""

    site: str
    statistic_name: str
    statistic_unit: str
    alternative: str
    correction: str
    alpha: float
    n_permutations: int
    layers: list[LayerRow]
    backend: str = ""
    backend_reason: str = ""
    scheme: str = "shift"
    scheme_description: str = ""
    series: str = "window"
    n_series: int = 1
    exact: bool = False
    label_autocorrelation: list[float | None] = dataclasses.field(default_factory=list)
    block_length: int = 1
    n_blocks: int = 1
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def significant_layers(self) -> list[int]:
        return [row.layer for row in self.layers if row.significant]

    def to_dict(self) -> dict[str, Any]:
        rows = self.layers
        significant = self.significant_layers
        return {
            "site": self.site,
            "statistic_name": self.statistic_name,
            "statistic_unit": self.statistic_unit,
            "alternative": self.alternative,
            "correction": self.correction,
            "alpha": self.alpha,
            "n_permutations": self.n_permutations,
            "backend": self.backend,
            "backend_reason": self.backend_reason,
            "scheme": self.scheme,
            "scheme_description": self.scheme_description,
            "series": self.series,
            "n_series": self.n_series,
            "exact": self.exact,
            "label_autocorrelation": self.label_autocorrelation,
            "block_length": self.block_length,
            "n_blocks": self.n_blocks,
            "notes": self.notes,
            "significance_rule": f"p ({self.correction}) <= {self.alpha}",
            "n_layers": len(rows),
            "n_significant": len(significant),
            "significant_layers": significant,
            "n_significant_correct_higher": sum(
                1 for r in rows if r.significant and r.difference > 0
            ),
            "n_significant_correct_lower": sum(
                1 for r in rows if r.significant and r.difference < 0
            ),
            "layers": [row.to_dict() for row in rows],
        }


# ----------------------------------------------------------------------------- every site


@dataclasses.dataclass(kw_only=True)
class SiteRow(LayerRow):
    """One test of a site: a layer (``head`` None), or one head of a layer (``attn_head``).

    The fields of :class:`LayerRow` are the site's own analysis, corrected over
    the site's tests (the numbers a single-site run gives); the ``*_run``
    fields are corrected over every test of the run.
    """

    head: int | None
    pvalue_maxstat_run: float | None
    pvalue_holm_run: float
    pvalue_fdr_run: float
    pvalue_corrected_run: float
    significant_run: bool


@dataclasses.dataclass
class SiteProfile(Record):
    """One site's laminar profile (per layer), or per-head profile (layer x head)."""

    site: str
    kind: str
    n_layers: int
    n_heads: int | None
    n_tests: int
    n_tokens: int
    n_tokens_excluded: int
    statistic_name: str
    statistic_unit: str
    alternative: str
    correction: str
    correction_scope: str
    alpha: float
    n_permutations: int
    n_significant: int
    significant: list[Any]
    n_significant_site: int
    n_significant_run: int
    rows: list[SiteRow]


@dataclasses.dataclass
class SitesSection(Record):
    """Every analysed site: corrections per site and over all tests of the run."""

    primary: str
    sites: list[str]
    correction: str
    correction_scope: str
    alpha: float
    n_tests_run: int
    run_maxstat_method: str | None
    note: str
    profiles: list[SiteProfile]


# ----------------------------------------------------------------------------- Part 7


@dataclasses.dataclass
class BalanceRow(Record):
    """One covariate in correct vs incorrect tokens: means, SDs, standardised difference."""

    covariate: str
    kind: str
    control: bool
    source: str
    mean_correct: float
    mean_incorrect: float
    sd_correct: float
    sd_incorrect: float
    smd: float | None


@dataclasses.dataclass
class AdjustmentSummary(Record):
    """How the controls were adjusted for (``lamina.stats.adjustment``) and how the null and
    the intervals respect serial dependence."""

    controls: list[str]
    terms: list[str]
    knots: int
    n_columns: int
    rank: int
    rule: str
    test: str
    scheme: str
    scheme_description: str
    series: str
    n_series: int
    exact: bool
    block_length: int
    n_blocks: int
    n_bootstrap: int


@dataclasses.dataclass
class RegressionSummary(Record):
    """The logistic view: the model, how its odds ratio and errors are computed, and what the
    controls predict out of fold."""

    model: str
    method: str
    cv_folds: int
    cv_rule: str
    auroc_controls: float
    auroc_controls_ci_low: float
    auroc_controls_ci_high: float


@dataclasses.dataclass
class ControlledLayer(Record):
    """One layer: the raw effect, the test beyond the controls, controlled effects, verdict."""

    layer: int
    hedges_g_raw: float
    hedges_g_raw_ci_low: float
    hedges_g_raw_ci_high: float
    significant_raw: bool
    statistic: float
    null_sd: float
    null_q95: float
    pvalue: float
    pvalue_maxstat: float
    pvalue_holm: float
    pvalue_fdr: float
    pvalue_cluster: float
    pvalue_corrected: float
    significant: bool
    difference: float | None
    difference_ci_low: float | None
    difference_ci_high: float | None
    hedges_g: float | None
    hedges_g_ci_low: float | None
    hedges_g_ci_high: float | None
    negligible: bool
    verdict: str
    odds_ratio: float | None
    odds_ratio_ci_low: float | None
    odds_ratio_ci_high: float | None
    coef: float | None
    coef_se: float | None
    auroc_full: float
    auroc_full_ci_low: float
    auroc_full_ci_high: float
    logloss_gain: float
    logloss_gain_ci_low: float
    logloss_gain_ci_high: float
    effective_tokens: float | None


@dataclasses.dataclass
class Controls(Record):
    """Part 7: does the difference survive the confounds? (docs/results-format.md)."""

    site: str
    statistic_name: str
    alternative: str
    correction: str
    alpha: float
    n_permutations: int
    seed: int
    min_effect: float
    controls: list[str]
    controls_requested: list[str]
    notes: list[str]
    covariate_sources: dict[str, str]
    n_tokens: int
    n_correct: int
    n_incorrect: int
    adjustment: AdjustmentSummary
    balance: list[BalanceRow]
    regression: RegressionSummary
    layers: list[ControlledLayer]
    n_layers: int
    n_significant: int
    significant_layers: list[int]
    significant_raw_layers: list[int]
    survived_layers: list[int]
    small_layers: list[int]
    negligible_layers: list[int]
    explained_layers: list[int]
    undetermined_layers: list[int]
    summary: str
