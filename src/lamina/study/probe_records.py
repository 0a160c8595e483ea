"""Part 8's typed result: what a cross-fitted linear probe finds in the direction of each layer's
vectors, beside the norm, the controls and the model's own confidence
(``docs/results-format.md``, ``part8``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from lamina.study.records import Record


@dataclasses.dataclass
class ProbeBaselines(Record):
    """What predicts correctness without the layer's vectors, each an AUROC with its 95%
    block-bootstrap interval: the controls alone and the controls plus the model's confidence
    (out of fold, the probe's folds), the confidence alone (no fitting: ``-entropy``)."""

    confidence: str | None
    auroc_confidence: float | None
    auroc_confidence_ci_low: float | None
    auroc_confidence_ci_high: float | None
    controls: list[str]
    auroc_controls: float | None
    auroc_controls_ci_low: float | None
    auroc_controls_ci_high: float | None
    baseline_terms: list[str]
    auroc_baseline: float
    auroc_baseline_ci_low: float
    auroc_baseline_ci_high: float


@dataclasses.dataclass
class ProbeLayer(Record):
    """One layer: the probe's held-out AUROC and test, the norm's AUROC beside it, the probe's
    gain over controls and confidence, and Part 7's test applied to the probe score."""

    layer: int
    auroc: float
    auroc_ci_low: float
    auroc_ci_high: float
    null_mean: float
    null_q95: float
    pvalue: float
    pvalue_maxstat: float
    pvalue_holm: float
    pvalue_fdr: float
    pvalue_cluster: float
    pvalue_corrected: float
    significant: bool
    norm_auroc: float
    norm_auroc_ci_low: float
    norm_auroc_ci_high: float
    norm_significant: bool
    direction_not_norm: bool
    auroc_full: float
    auroc_full_ci_low: float
    auroc_full_ci_high: float
    logloss_gain: float
    logloss_gain_ci_low: float
    logloss_gain_ci_high: float
    gain_over_controls: float | None
    gain_over_controls_ci_low: float | None
    gain_over_controls_ci_high: float | None
    controlled_statistic: float | None
    controlled_pvalue: float | None
    controlled_pvalue_corrected: float | None
    controlled_significant: bool | None
    controlled_hedges_g: float | None
    controlled_hedges_g_ci_low: float | None
    controlled_hedges_g_ci_high: float | None
    controlled_verdict: str | None


@dataclasses.dataclass
class Probes(Record):
    """Part 8: does the direction of a layer's vectors carry correctness where the norm does
    not? (``docs/results-format.md``)."""

    site: str
    method: str
    folds: int
    fold_unit: str | None
    probe: dict[str, Any]
    n_tokens: int
    n_correct: int
    n_incorrect: int
    statistic_name: str
    alternative: str
    correction: str
    alpha: float
    n_permutations: int
    seed: int
    scheme: str
    scheme_description: str
    series: str
    n_series: int
    exact: bool
    block_length: int
    n_blocks: int
    n_bootstrap: int
    crossfit_variance: float
    crossfit_rule: str
    norm_orientation: str
    direction_not_norm_rule: str
    saturation_rule: str
    baselines: ProbeBaselines
    layers: list[ProbeLayer]
    n_layers: int
    n_significant: int
    significant_layers: list[int]
    direction_not_norm_layers: list[int]
    norm_not_direction_layers: list[int]
    gain_layers: list[int]
    controlled_significant_layers: list[int] | None
    peak_layer: int
    peak_auroc: float
    saturation_layer: int | None
    notes: list[str]
    summary: str
