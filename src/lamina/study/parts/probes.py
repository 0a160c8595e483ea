"""Part 8: does the direction of a layer's vectors carry correctness where the norm does not?

Parts 6-7 read one number per vector, its norm. Two classes can have the same norms and still
point different ways; a linear probe sees that. The extraction writes, per layer, every token's
**held-out probe score** (``probe.{site}.{layer}``: the token's vector projected on a direction
learned from the other folds of the text, :mod:`lamina.stats.linear_probes`; ``fold`` says which fold)
and Part 8 reads only the table, so ``lamina analyze`` recomputes it. Per layer:

- the probe's held-out AUROC with its block-bootstrap interval, and its one-sided permutation
  test (AUROC above 1/2; the labellings of Parts 5-7: circular shifts within each series by
  default), corrected over the layers as Part 6 (max-statistic by default);
- beside it the AUROC of the log-norm, oriented toward correct by the sign of its class
  difference on the other folds (so that it is as held-out as the probe and comparable), of the
  controls alone and of the controls plus the model's confidence (out of fold), and of the
  confidence alone (``-entropy``);
- the probe's out-of-fold log-loss gain over the controls plus the confidence;
- Part 7's test and controlled effect applied to the probe score as to the log-norm.

The headline: the layers that carry correctness **in direction but not in norm**, and the
layer where decodability saturates. Part 8 is None, with a reason, when the table has no probe
scores for the analysed site.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lamina._format import layers_phrase
from lamina.stats.adjustment import control_basis
from lamina.stats.catalog import CORRECTION_LABELS
from lamina.stats.conditional import partial_association
from lamina.stats.discrimination import out_of_fold
from lamina.stats.linear_probes import (
    CROSSFIT_VARIANCE,
    block_auroc,
    held_out_auroc,
    oriented_by_fold,
    saturation_index,
    widened_conditional,
    widened_interval,
    widened_permutation,
)
from lamina.stats.permutation import permutation_test
from lamina.stats.resampling import N_BOOTSTRAP, bootstrap_blocks
from lamina.study.options import StudyOptions
from lamina.study.parts._controls_words import verdict
from lamina.study.parts.controls import conditional_pvalues
from lamina.study.parts.profile import layer_cluster_pvalues
from lamina.study.prepare import Prepared
from lamina.study.probe_records import ProbeBaselines, ProbeLayer, Probes
from lamina.study.records import LaminarProfile
from lamina.study.serial import serial_structure

if TYPE_CHECKING:
    import pyarrow as pa

#: The prefix of a probe score column: ``probe.{site}.{layer}`` (docs/token-table.md).
PROBE_PREFIX = "probe."
CONFIDENCE = "-entropy: the negative entropy of the model's next-token distribution"
NORM_ORIENTATION = (
    "per fold, the log-norm minus the midpoint of its class means on the other folds, times "
    "the sign of their difference (correct minus incorrect): a one-dimensional probe, held "
    "out as the probe is"
)
DIRECTION_NOT_NORM_RULE = (
    "the probe's test is significant (after the correction) while Part 6's test of the "
    "log-norm is not and the oriented log-norm's 95% AUROC interval contains 1/2"
)
CROSSFIT_RULE = (
    "each fold's probe was trained on the other folds' tokens, so under no effect the folds' "
    "held-out AUROCs correlate by 1/(K - 1) and their mean has twice the variance that "
    "relabelling or resampling with the scores fixed sees: every null of a held-out score is "
    "widened about its mean, and every interval's half-width, by sqrt(2) (conservative under "
    "an effect)"
)
SATURATION_RULE = (
    "the first layer whose probe AUROC reaches the lower end of the 95% interval of the "
    "largest probe AUROC (none when no layer is significant)"
)


def probe_columns(table: pa.Table, site: str) -> dict[int, str]:
    """``{layer: column}`` of the table's probe scores of ``site``."""
    prefix = f"{PROBE_PREFIX}{site}."
    found = {}
    for name in table.column_names:
        rest = name[len(prefix) :] if name.startswith(prefix) else ""
        if rest.isdigit():
            found[int(rest)] = name
    return dict(sorted(found.items()))


def probes(
    table: pa.Table, data: Prepared, profile: LaminarProfile, options: StudyOptions
) -> tuple[Probes | None, str | None]:
    """Part 8 and None, or None and the one-line reason it did not run."""
    site = options.site
    if options.notebook:
        return None, "the notebook compatibility mode reproduces the notebook's parts only"
    columns = probe_columns(table, site)
    if not columns:
        return None, (
            f"the token table has no probe scores for {site} (columns probe.{site}.<layer>); "
            "extract it with a probe to run Part 8"
        )
    if list(columns) != list(data.layers):
        return None, (
            f"the table's probe scores cover {site} layers {', '.join(map(str, columns))}, "
            f"not its analysed layers {data.layers[0]}-{data.layers[-1]}"
        )
    if "fold" not in table.column_names or data.rows is None:
        return None, "the token table has probe scores but no fold column"
    rows = data.rows[data.keep]
    scores = np.column_stack(
        [table.column(c).to_numpy(zero_copy_only=False)[rows] for c in columns.values()]
    ).astype(np.float64)
    folds = table.column("fold").to_numpy(zero_copy_only=False)[rows].astype(np.int64)
    bad = int((~np.isfinite(scores).all(axis=1)).sum())
    if bad:
        return None, f"the probe scores are not finite at {bad:,} analysed tokens"
    return _part8(table, data, profile, options, scores, folds), None


def _part8(table, data, profile, options, scores, folds) -> Probes:
    from lamina.table import table_metadata

    meta = table_metadata(table).get("probe") or {}
    labels = data.labels
    serial = serial_structure(data, options)
    order = serial.layout.order
    perm = widened_permutation(
        permutation_test(
            scores,
            labels,
            statistic="auroc",
            alternative="greater",
            n_permutations=options.permutations,
            seed=options.seed,
            **serial.test_arguments(),
        )
    )
    pvalues = {
        "none": perm.pvalue,
        "maxstat": perm.pvalue_maxstat,
        "holm": perm.pvalue_holm,
        "fdr": perm.pvalue_fdr,
        "cluster": layer_cluster_pvalues(perm, options),
    }
    s, y, f = scores[order], labels[order], folds[order]
    norms, _ = oriented_by_fold(data.values[order], y, f)
    centred = (y - y.mean())[:, None]
    products = np.hstack(((s - s.mean(axis=0)) * centred, (norms - norms.mean(axis=0)) * centred))
    blocks = bootstrap_blocks(products, serial.layout)
    boot = {"n_bootstrap": N_BOOTSTRAP, "seed": options.seed + 3}
    probe_auc = held_out_auroc(s, y, blocks, **boot)
    norm_auc = held_out_auroc(norms, y, blocks, **boot)
    used, controls, entropy = _inputs(data, options)
    baselines, gains = _baselines(s, y, f, blocks, used, controls, entropy, order, options)
    controlled = None
    if used:
        controlled = partial_association(
            scores,
            labels,
            controls,
            serial.codes,
            n_permutations=options.permutations,
            seed=options.seed,
            scheme=options.scheme,
        )
    layers = _layers(data, profile, options, perm, pvalues, probe_auc, norm_auc, gains, controlled)
    notes = [] if meta else ["the token table's metadata does not describe its probe"]
    return _record(data, options, meta, folds, serial, blocks, baselines, layers, perm, notes)


def _inputs(data: Prepared, options: StudyOptions):
    """The controls Part 7 uses (names and kept tokens' values, table order) and the entropy."""
    covariates = data.covariates
    if covariates is None:
        return [], {}, None
    keep = data.keep
    used = [c for c in options.controls if c in covariates.values] if options.controls_on else []
    entropy = covariates.values.get("entropy")
    return (
        used,
        {c: covariates.values[c][keep] for c in used},
        (None if entropy is None else entropy[keep]),
    )


def _baselines(s, y, folds, blocks, used, controls, entropy, order, options):
    """The baselines' AUROCs and the probe's out-of-fold gains (over the controls and
    confidence; over the controls alone when there are controls). Arrays in series order."""
    n = y.size
    boot = {"n_bootstrap": N_BOOTSTRAP, "seed": options.seed + 4, "folds": folds}
    ordered = {c: v[order] for c, v in controls.items()}
    with_confidence = dict(ordered)
    if entropy is not None:
        with_confidence["entropy"] = entropy[order]
    basis = control_basis(with_confidence, n)
    full = out_of_fold(basis.residuals(s), y, basis.q * np.sqrt(n), blocks, **boot)
    alone = None
    if used:
        controls_basis = control_basis(ordered, n)
        alone = out_of_fold(
            controls_basis.residuals(s), y, controls_basis.q * np.sqrt(n), blocks, **boot
        )
    confidence = None
    if entropy is not None:
        confidence = block_auroc(
            -entropy[order], y, blocks, n_bootstrap=N_BOOTSTRAP, seed=options.seed + 5
        )
    baselines = ProbeBaselines(
        confidence=CONFIDENCE if entropy is not None else None,
        auroc_confidence=_first(confidence, 0),
        auroc_confidence_ci_low=_first(confidence, 1, 0),
        auroc_confidence_ci_high=_first(confidence, 1, 1),
        controls=list(used),
        auroc_controls=None if alone is None else alone.auroc_controls,
        auroc_controls_ci_low=None if alone is None else float(alone.auroc_controls_ci[0]),
        auroc_controls_ci_high=None if alone is None else float(alone.auroc_controls_ci[1]),
        baseline_terms=list(basis.terms),
        auroc_baseline=full.auroc_controls,
        auroc_baseline_ci_low=float(full.auroc_controls_ci[0]),
        auroc_baseline_ci_high=float(full.auroc_controls_ci[1]),
    )
    return baselines, (full, alone)


def _first(found, k: int, j: int | None = None) -> float | None:
    """The first column's value of ``found`` (``block_auroc``'s pair) or None."""
    if found is None:
        return None
    value = found[k][0] if j is None else found[k][0, j]
    return float(value)


def _finite(value) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def _layers(data, profile, options, perm, pvalues, probe_auc, norm_auc, gains, controlled):
    """One :class:`ProbeLayer` per layer."""
    chosen = pvalues[options.resolved_correction]
    null = np.asarray(perm.null_distribution, dtype=np.float64)
    full, alone = gains
    cond = _controlled(controlled, options)
    rows = []
    for j, (layer, raw) in enumerate(zip(data.layers, profile.layers, strict=True)):
        significant = bool(chosen[j] <= options.alpha)
        norm_low, norm_high = (float(v) for v in norm_auc[1][j])
        covers = norm_low <= 0.5 <= norm_high
        c = cond(j, significant)
        rows.append(
            ProbeLayer(
                layer=int(layer),
                auroc=float(probe_auc[0][j]),
                auroc_ci_low=float(probe_auc[1][j, 0]),
                auroc_ci_high=float(probe_auc[1][j, 1]),
                null_mean=float(null[:, j].mean()),
                null_q95=float(np.quantile(null[:, j], 0.95)),
                pvalue=float(pvalues["none"][j]),
                pvalue_maxstat=float(pvalues["maxstat"][j]),
                pvalue_holm=float(pvalues["holm"][j]),
                pvalue_fdr=float(pvalues["fdr"][j]),
                pvalue_cluster=float(pvalues["cluster"][j]),
                pvalue_corrected=float(chosen[j]),
                significant=significant,
                norm_auroc=float(norm_auc[0][j]),
                norm_auroc_ci_low=norm_low,
                norm_auroc_ci_high=norm_high,
                norm_significant=bool(raw.significant),
                direction_not_norm=significant and not raw.significant and covers,
                auroc_full=float(full.auroc_full[j]),
                auroc_full_ci_low=float(full.auroc_full_ci[j, 0]),
                auroc_full_ci_high=float(full.auroc_full_ci[j, 1]),
                logloss_gain=float(full.logloss_gain[j]),
                logloss_gain_ci_low=float(full.logloss_gain_ci[j, 0]),
                logloss_gain_ci_high=float(full.logloss_gain_ci[j, 1]),
                gain_over_controls=None if alone is None else float(alone.logloss_gain[j]),
                gain_over_controls_ci_low=None
                if alone is None
                else float(alone.logloss_gain_ci[j, 0]),
                gain_over_controls_ci_high=None
                if alone is None
                else float(alone.logloss_gain_ci[j, 1]),
                **c,
            )
        )
    return rows


def _controlled(found, options: StudyOptions):
    """A function ``(layer index, probe significant) -> the controlled fields`` of a row."""
    names = (
        "controlled_statistic",
        "controlled_pvalue",
        "controlled_pvalue_corrected",
        "controlled_significant",
        "controlled_hedges_g",
        "controlled_hedges_g_ci_low",
        "controlled_hedges_g_ci_high",
        "controlled_verdict",
    )
    if found is None:
        return lambda j, raw: dict.fromkeys(names)
    test = widened_conditional(found.test)
    pvalues = conditional_pvalues(test)
    chosen = pvalues[options.resolved_correction]
    g = found.effects.hedges_g
    g_ci = widened_interval(g, found.effects.hedges_g_ci)

    def fields(j: int, raw: bool) -> dict:
        significant = bool(chosen[j] <= options.alpha)
        low, high = g_ci[j]
        negligible = bool(
            np.isfinite(low) and -options.min_effect < low and high < options.min_effect
        )
        values = (
            float(test.statistic[j]),
            float(pvalues["none"][j]),
            float(chosen[j]),
            significant,
            _finite(g[j]),
            _finite(low),
            _finite(high),
            verdict(significant, raw, negligible, g[j], options),
        )
        return dict(zip(names, values, strict=True))

    return fields


def _record(data, options, meta, folds, serial, blocks, baselines, layers, perm, notes):
    significant = [r.layer for r in layers if r.significant]
    auroc = np.array([r.auroc for r in layers])
    peak = int(np.argmax(auroc))
    saturation = saturation_index(auroc, [r.auroc_ci_low for r in layers])
    controlled = None
    if layers and layers[0].controlled_significant is not None:
        controlled = [r.layer for r in layers if r.controlled_significant]
    record = Probes(
        site=options.site,
        method=str(meta.get("method", "unknown")),
        folds=int(np.unique(folds).size),
        fold_unit=meta.get("fold_unit"),
        probe=dict(meta),
        n_tokens=int(data.labels.size),
        n_correct=int(data.labels.sum()),
        n_incorrect=int((~data.labels).sum()),
        statistic_name="held-out AUROC of the probe score",
        alternative="greater",
        correction=options.resolved_correction,
        alpha=options.alpha,
        n_permutations=int(perm.n_permutations),
        seed=options.seed,
        scheme=options.scheme,
        scheme_description=serial.description,
        series=serial.series,
        n_series=serial.n_series,
        exact=bool(perm.exact),
        block_length=blocks.length,
        n_blocks=blocks.n_blocks,
        n_bootstrap=N_BOOTSTRAP,
        crossfit_variance=CROSSFIT_VARIANCE,
        crossfit_rule=CROSSFIT_RULE,
        norm_orientation=NORM_ORIENTATION,
        direction_not_norm_rule=DIRECTION_NOT_NORM_RULE,
        saturation_rule=SATURATION_RULE,
        baselines=baselines,
        layers=layers,
        n_layers=len(layers),
        n_significant=len(significant),
        significant_layers=significant,
        direction_not_norm_layers=[r.layer for r in layers if r.direction_not_norm],
        norm_not_direction_layers=[
            r.layer for r in layers if r.norm_significant and not r.significant
        ],
        gain_layers=[r.layer for r in layers if r.logloss_gain_ci_low > 0],
        controlled_significant_layers=controlled,
        peak_layer=layers[peak].layer,
        peak_auroc=float(auroc[peak]),
        saturation_layer=layers[saturation].layer
        if significant and saturation is not None
        else None,
        notes=notes,
        summary="",
    )
    record.summary = summary_sentence(record)
    return record


def summary_sentence(record: Probes) -> str:
    """Part 8 in plain words."""
    correction = CORRECTION_LABELS[record.correction]
    site, n_layers = record.site, record.n_layers
    peak = next(r for r in record.layers if r.layer == record.peak_layer)
    probe = f"a linear probe ({record.method}, cross-fitted over {record.folds} folds)"
    if record.n_significant:
        first = (
            f"Read from the direction of the {site} vectors, {probe} tells correct from "
            f"incorrect tokens at {record.n_significant} of {n_layers} layers (α = "
            f"{record.alpha:g}, {correction}): {layers_phrase(record.significant_layers)}."
        )
    else:
        first = (
            f"Read from the direction of the {site} vectors, {probe} tells correct from "
            f"incorrect tokens at no layer of {n_layers} (α = {record.alpha:g}, {correction})."
        )
    sentences = [
        first,
        f"Its held-out AUROC peaks at {peak.auroc:.3f} [{peak.auroc_ci_low:.3f}, "
        f"{peak.auroc_ci_high:.3f}] at layer {peak.layer}"
        + (
            f" and first reaches that interval at layer {record.saturation_layer}."
            if record.saturation_layer is not None
            else "."
        ),
    ]
    if record.direction_not_norm_layers:
        sentences.append(
            "In direction but not in norm (the norm's test finds nothing and its AUROC "
            f"interval contains 1/2): {layers_phrase(record.direction_not_norm_layers)}."
        )
    elif record.n_significant:
        sentences.append(
            "At every layer the probe finds, the norm differs too or may (Part 6's test or "
            "the norm's AUROC interval), so none carries correctness in direction alone."
        )
    return " ".join([*sentences, _baseline_sentence(record)])


def _baseline_sentence(record: Probes) -> str:
    """What predicts correctness without the vectors, and where the probe adds to it."""
    b = record.baselines
    known = []
    if b.auroc_confidence is not None:
        known.append(f"the model's confidence (-entropy) alone {b.auroc_confidence:.3f}")
    if b.auroc_controls is not None:
        known.append(f"the controls alone {b.auroc_controls:.3f}")
    if b.auroc_confidence is not None and b.auroc_controls is not None:
        known.append(f"both together {b.auroc_baseline:.3f}")
    baseline = "the controls and the confidence" if len(known) == 3 else "them"
    if not known:
        known.append(f"nothing ({b.auroc_baseline:.3f})")
        baseline = "an intercept"
    gain = record.gain_layers
    where = layers_phrase(gain) if gain else "no layer"
    return (
        "Without the vectors, the held-out AUROC of "
        + ", ".join(known)
        + f"; the probe adds to {baseline} at {where} (held-out log-loss gain, 95% CI above 0)."
    )
