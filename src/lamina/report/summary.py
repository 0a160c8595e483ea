"""The study in words and tables: headline, console summary, ``layers.csv``.

Everything here reads a results dict (``results.json``), so ``lamina report``
and ``lamina analyze`` share it with ``lamina run``.
"""

from __future__ import annotations

from collections.abc import Mapping
from statistics import median
from typing import Any

from lamina._format import csv_cell, format_p, layer_list
from lamina.stats.catalog import CORRECTION_LABELS, format_statistic, is_divergence, short


def format_summary(results: Mapping[str, Any], report_path: str | None = None) -> str:
    """The console summary: accuracy, the single-layer result, the per-layer table."""
    p1, p2, p3, p4, p5, p6 = (results[f"part{k}"] for k in range(1, 7))
    params = results["parameters"]
    statistic = params["statistic_computed"]
    divergence = is_divergence(statistic)
    lines = [f"NOTE: {results['compat_note']}."] if results.get("compat_note") else []
    model = p1["model"]
    windows = p1["windows"]
    lines.append(
        f"model  {model.get('name') or model.get('spec')} ({model.get('fingerprint')}; "
        f"{model.get('dtype')} on {model.get('device')}); text {p1['text'].get('spec')} "
        f"(sha256 {str(p1['text'].get('sha256'))[:12]}…)"
    )
    lines.append(
        f"tokens {p1['n_tokens_scored']:,} scored in {p1['n_windows']} window(s) "
        f"({windows.get('mode')}, {windows.get('window')} tokens); site {p1['site']}, "
        f"{p1['n_layers']} layers"
    )
    # the middle window of a short text: the whole text, or fewer tokens than the window
    lines += [f"        note: {note}." for note in windows.get("notes") or []]
    lines.append(
        f"Part 2  accuracy: {p2['n_correct']:,} / {p2['n_tokens']:,} correct "
        f"({p2['accuracy']:.2%}); target length {p2['target_chars']['correct']['mean']:.2f} "
        f"chars (correct) vs {p2['target_chars']['incorrect']['mean']:.2f} (incorrect)"
    )
    ab = p4["at_bins"]
    # In the notebook mode the "js" field holds the notebook's symmetric_KL, which is not JS.
    js_name = "symmetric_KL (notebook)" if results.get("compat") == "notebook" else "JS"
    lines.append(
        f"Part 3  layer {p3['layer']}: mean ln-norm {p3['correct']['mean']:.4f} correct "
        f"(n={p3['correct']['n']}) vs {p3['incorrect']['mean']:.4f} incorrect "
        f"(n={p3['incorrect']['n']}), difference {p3['difference']:+.4f}"
    )
    lines.append(
        f"Part 4  {ab['n_bins']} bins: KL(C‖I) {ab['kl_correct_incorrect']['bits']:.4g} bits, "
        f"KL(I‖C) {ab['kl_incorrect_correct']['bits']:.4g} bits, "
        f"{js_name} {ab['js']['bits']:.4g} bits ({ab['js']['nats']:.4g} nats)"
    )
    if p4.get("diagnostic_note"):  # fewer diagnostic permutations than asked
        lines.append(f"        note: {p4['diagnostic_note']}")
    lines.append(
        f"Part 5  {short(statistic)} = {format_statistic(p5['statistic'], statistic)}, "
        f"p = {format_p(p5['pvalue'])} ({p5['n_permutations']:,} permutations, "
        f"seed {params['seed']})"
    )
    unit = "bits" if divergence else p6["statistic_unit"]
    lines.append(
        f"Part 6  per layer: {short(statistic)} in {unit}; corrected p: "
        f"{CORRECTION_LABELS[p6['correction']]}; * = significant at α = {p6['alpha']:g}"
    )
    lines += _serial_lines(p6)
    header = (
        f"{'layer':>5} {'ln‖·‖ C':>9} {'ln‖·‖ I':>9} {'diff':>8} {short(statistic):>10} "
        f"{'p raw':>8} {'p corr':>8} {'AUROC':>6} {'g':>6}"
    )
    lines.append(header)
    for r in p6["layers"]:
        stat = r["statistic_bits"] if divergence else r["statistic"]
        lines.append(
            f"{r['layer']:>5} {r['mean_log_norm_correct']:>9.4f} "
            f"{r['mean_log_norm_incorrect']:>9.4f} {r['difference']:>+8.4f} {stat:>10.4g} "
            f"{format_p(r['pvalue']):>8} {format_p(r['pvalue_corrected']):>8} "
            f"{r['auroc']:>6.3f} {r['hedges_g']:>+6.2f}" + (" *" if r["significant"] else "")
        )
    lines.append(
        f"significant layers ({p6['n_significant']} of {p6['n_layers']}): "
        f"{layer_list(p6['significant_layers'])}"
    )
    lines += _part7_lines(results) + _part8_lines(results)
    lines += _sites_lines(results)
    lines += _exclusion_lines(results["exclusions"])
    timings = results.get("timings")
    if timings:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k != "total")
        lines.append(f"timings: {stages} (total {timings.get('total', 0.0):.1f} s)")
    if report_path is not None:
        lines.append(f"report: {report_path}")
    return "\n".join(lines)


def _serial_lines(p6: Mapping[str, Any]) -> list[str]:
    """How Part 6's null and intervals respect serial dependence, and its notes."""
    scheme = p6.get("scheme")
    if scheme is None:  # results written before the schemes existed
        return []
    if scheme == "notebook":
        lines = ["        null: the reference notebook's permutations (tokens as independent)"]
    else:
        lines = [f"        null: {p6.get('scheme_description') or scheme}"]
        label_acf = (p6.get("label_autocorrelation") or [None])[0]
        effective = [r.get("effective_tokens") for r in p6["layers"]]
        effective = [e for e in effective if e is not None]
        n = p6["layers"][0]["n_correct"] + p6["layers"][0]["n_incorrect"] if p6["layers"] else 0
        parts = [f"{p6['n_series']:,} {_series_words(p6)}"]
        if label_acf is not None:
            parts.append(f"label autocorrelation at lag 1 {label_acf:+.3f}")
        if effective:
            parts.append(f"effective tokens (median over layers) {median(effective):,.0f} of {n:,}")
        parts.append(
            f"g intervals: block bootstrap, {p6['n_blocks']:,} blocks of "
            f"{p6['block_length']:,} tokens"
        )
        lines.append("        " + "; ".join(parts))
    lines += [f"        note: {note}" for note in p6.get("notes", [])]
    return lines


def _series_words(section: Mapping[str, Any]) -> str:
    """The series the labellings stay within, counted: "windows", "documents", "series"."""
    plural = {"window": "windows", "doc": "documents"}.get(section.get("series"), "series")
    return plural[:-1] if section.get("n_series") == 1 and plural != "series" else plural


def _part7_lines(results: Mapping[str, Any]) -> list[str]:
    """Part 7's console lines: the adjustment, the null, the verdicts and the gain."""
    p7 = results.get("part7")
    if not p7:
        return ["Part 7  controls: not run (--controls none, or the notebook mode)"]
    adj, reg = p7["adjustment"], p7["regression"]
    lines = [
        f"Part 7  controls {', '.join(p7['controls']) or 'none'}: both the log-norm and the "
        f"label adjusted on {adj['n_columns']} basis columns (rank {adj['rank']}); "
        f"{CORRECTION_LABELS[p7['correction']]}; negligible: 95% CI of g within "
        f"±{p7['min_effect']:g}",
        f"        null: {adj['scheme_description'] or adj['scheme']}, "
        f"{p7['n_permutations']:,} labellings; intervals: block bootstrap "
        f"({adj['n_blocks']:,} blocks of {adj['block_length']:,} tokens)",
    ]
    lines += [f"        note: {note}" for note in p7["notes"]]
    # indented under Part 6's table, so that only Part 6's rows start with a layer number
    lines.append(
        f"    {'layer':>5} {'g raw':>7} {'g ctrl':>7} {'95% CI of g ctrl':>17} {'p ctrl':>8} "
        f"{'OR/SD':>6} {'Δ logloss':>10}  verdict"
    )
    for r in p7["layers"]:
        lines.append(
            f"    {r['layer']:>5} {r['hedges_g_raw']:>+7.3f} {_signed(r['hedges_g'], 7)} "
            f"{_interval(r['hedges_g_ci_low'], r['hedges_g_ci_high']):>17} "
            f"{format_p(r['pvalue_corrected']):>8} {_plain(r['odds_ratio'], 6)} "
            f"{_signed(_milli(r['logloss_gain']), 10, 2)}  {r['verdict']}"
        )
    delta = p7["min_effect"]
    undetermined = [k for k in p7["undetermined_layers"] if k in p7["significant_raw_layers"]]
    groups = (
        (f"controlled |g| >= {delta:g}", p7["survived_layers"]),
        (f"small (|g| < {delta:g})", p7["small_layers"]),
        ("negligible (CI of g within the band)", p7["negligible_layers"]),
        ("explained by the controls", p7["explained_layers"]),
        ("significant before, undetermined after", undetermined),
    )
    lines.append(
        f"significant after controls ({p7['n_significant']} of {p7['n_layers']}): "
        f"{layer_list(p7['significant_layers'])}"
        + "".join(f"; {name}: {layer_list(layers)}" for name, layers in groups if layers)
    )
    lines.append(
        f"controls alone: out-of-fold AUROC {reg['auroc_controls']:.3f} "
        f"[{reg['auroc_controls_ci_low']:.3f}, {reg['auroc_controls_ci_high']:.3f}] "
        f"({reg['cv_folds']} folds); Δ logloss: the held-out log-loss gain of adding the "
        "layer, millinats per token (> 0: the layer helps); g ctrl: Hedges' g at equal controls"
    )
    return lines


def _part8_lines(results: Mapping[str, Any]) -> list[str]:
    """Part 8's console lines: where the direction carries correctness, beside the norm."""
    p8 = results.get("part8")
    if not p8:
        reason = results.get("part8_reason") or "the token table holds no probe scores"
        return [f"Part 8  probes: not run ({reason})"]
    b = p8["baselines"]
    peak = next(r for r in p8["layers"] if r["layer"] == p8["peak_layer"])
    saturation = p8["saturation_layer"]
    unit = f" of whole {p8['fold_unit']}s" if p8.get("fold_unit") else ""
    lines = [
        f"Part 8  probes ({p8['method']}, {p8['folds']} folds{unit}): the direction tells "
        f"correct from incorrect at {p8['n_significant']} of {p8['n_layers']} layers "
        f"({CORRECTION_LABELS[p8['correction']]}): {layer_list(p8['significant_layers'])}; "
        f"in direction but not in norm: {layer_list(p8['direction_not_norm_layers'])}",
        f"        held-out AUROC peak {peak['auroc']:.3f} [{peak['auroc_ci_low']:.3f}, "
        f"{peak['auroc_ci_high']:.3f}] at layer {peak['layer']}"
        + (f", saturated from layer {saturation}" if saturation is not None else "")
        + "; without the vectors: "
        + ", ".join(
            f"{name} {value:.3f}"
            for name, value in (
                ("confidence (-entropy)", b["auroc_confidence"]),
                ("controls", b["auroc_controls"]),
                ("both", b["auroc_baseline"]),
            )
            if value is not None
        )
        + f"; the probe adds to them at {layer_list(p8['gain_layers'])}",
    ]
    lines += [f"        note: {note}" for note in p8["notes"]]
    return lines


def _milli(value: float | None) -> float | None:
    return None if value is None else 1000.0 * value


def _signed(value: float | None, width: int, decimals: int = 3) -> str:
    return f"{'–':>{width}}" if value is None else f"{value:>+{width}.{decimals}f}"


def _plain(value: float | None, width: int, decimals: int = 3) -> str:
    return f"{'–':>{width}}" if value is None else f"{value:>{width}.{decimals}f}"


def _interval(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "–"
    return f"[{low:+.3f}, {high:+.3f}]"


def _exclusion_lines(ex: Mapping[str, Any]) -> list[str]:
    """What was excluded: on request (--exclude), for zero or non-finite norms, and for
    NaN or inf outputs, each counted apart."""
    lines: list[str] = []
    if ex.get("n_requested_excluded"):
        kinds = ", ".join(f"{n:,} {k}" for k, n in ex["requested_by_kind"].items())
        lines.append(
            f"excluded on request (--exclude): {ex['n_requested_excluded']:,} token(s) "
            f"({kinds}) from every part"
        )
    if ex["n_tokens_excluded"]:
        lines.append(
            f"excluded {ex['n_tokens_excluded']} token(s) with a zero or non-finite norm "
            f"({ex['n_correct_excluded']} correct, {ex['n_incorrect_excluded']} incorrect)"
        )
    else:
        lines.append("zero-norm vectors: none")
    if ex.get("n_nonfinite_excluded"):
        lines.append(
            f"excluded {ex['n_nonfinite_excluded']} token(s) whose logits or norms were NaN or "
            "infinite (kept by --allow-nonfinite, marked in the table's nonfinite column)"
        )
    return lines


LAYER_COLUMNS = (
    "layer",
    "n_correct",
    "n_incorrect",
    "n_zero_norm",
    "mean_log_norm_correct",
    "mean_log_norm_incorrect",
    "difference",
    "statistic",
    "statistic_bits",
    "null_mean",
    "null_min",
    "null_max",
    "null_q95",
    "pvalue",
    "pvalue_maxstat",
    "pvalue_holm",
    "pvalue_fdr",
    "pvalue_corrected",
    "significant",
    "auroc",
    "hedges_g",
    "hedges_g_ci_low",
    "hedges_g_ci_high",
)


#: Columns after the ones above: the site and head of the row, and the run-wide corrections.
SITE_COLUMNS = (
    "site",
    "head",
    "pvalue_maxstat_run",
    "pvalue_holm_run",
    "pvalue_fdr_run",
    "pvalue_corrected_run",
    "significant_run",
    "correction_scope",
)


def layers_csv(results: Mapping[str, Any]) -> str:
    """``layers.csv``: one row per layer of every site (per head of ``attn_head``).

    Floats are shortest round-trip decimals. The statistic's name, unit,
    correction, compat mode and the model's dtype are repeated on every row so the file stands
    alone; then the site columns, the serial columns (every row) and last
    Part 6's cluster p and Part 7's columns (the primary site's layers). Without
    a ``sites`` section (results written before it existed) the rows are Part 6's.
    """
    p6 = results["part6"]
    columns = [*LAYER_COLUMNS, "statistic_name", "statistic_unit", "correction", "compat"]
    p7_rows = {r["layer"]: r for r in (results.get("part7") or {}).get("layers", [])}
    p6_rows = {r["layer"]: r for r in p6["layers"]}
    p8_rows = {r["layer"]: r for r in (results.get("part8") or {}).get("layers", [])}
    lines = [
        ",".join(
            [
                *columns,
                *SITE_COLUMNS,
                *SERIAL_COLUMNS,
                *(name for name, _ in PART7_COLUMNS),
                *(name for name, _ in PART8_COLUMNS),
                "dtype",  # last: the columns of before keep their places
            ]
        )
    ]
    sites = results.get("sites")
    if sites:
        rows = [(p, row) for p in sites["profiles"] for row in p["rows"]]
    else:
        rows = [(None, {**row, "site": p6["site"], "head": None}) for row in p6["layers"]]
    for profile, row in rows:
        site = profile["site"] if profile else row["site"]
        cells = [csv_cell(row[col]) for col in LAYER_COLUMNS]
        cells += [
            p6["statistic_name"],
            p6["statistic_unit"],
            p6["correction"],
            results.get("compat", "none"),
            site,
            csv_cell(row["head"]),
        ]
        cells += [csv_cell(row.get(col)) for col in SITE_COLUMNS[2:-1]]
        cells.append(sites["correction_scope"] if sites else "")
        cells += _serial_cells(row)
        # Part 6's cluster p-value and Part 7's columns belong to the primary site's layers.
        primary = site == p6["site"] and row["head"] is None
        cells += [
            csv_cell(
                (
                    p6_rows.get(row["layer"], {})
                    if key == "part6"
                    else p7_rows.get(row["layer"], {})
                ).get("pvalue_cluster" if key == "part6" else key)
                if primary
                else None
            )
            for _, key in PART7_COLUMNS
        ]
        probe = p8_rows.get(row["layer"], {}) if primary else {}
        cells += [csv_cell(probe.get(key)) for _, key in PART8_COLUMNS]
        cells.append(str((results["part1"].get("model") or {}).get("dtype") or ""))
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def _sites_lines(results: Mapping[str, Any]) -> list[str]:
    """One line per site when the run analysed more than its primary site."""
    sites = results.get("sites")
    profiles = (sites or {}).get("profiles", [])
    if len(profiles) < 2 and not any(p["kind"] == "heads" for p in profiles):
        return []
    where = "the run" if sites["correction_scope"] == "run" else "each site"
    lines = [
        f"sites  significant ({CORRECTION_LABELS[sites['correction']]} over {where}, "
        f"{sites['n_tests_run']:,} tests in the run):"
    ]
    for p in profiles:
        if p["kind"] == "heads":
            listed = ", ".join(f"{layer}.{head}" for layer, head in p["significant"][:12])
            more = p["n_significant"] - min(12, p["n_significant"])
            listed = (listed + (f" and {more} more" if more else "")) or "none"
            lines.append(
                f"  {p['site']:<10} {p['n_significant']:>4} of {p['n_tests']} heads: "
                f"{listed} (layer.head)"
            )
        else:
            lines.append(
                f"  {p['site']:<10} {p['n_significant']:>4} of {p['n_tests']} layers: "
                f"{layer_list(p['significant'])}"
            )
    return lines


#: Columns after the site columns, on every row: the log-norm's autocorrelation at lags
#: 1..5 within the series and Bartlett's effective number of tokens (Part 6's fields).
SERIAL_COLUMNS = (
    *(f"norm_acf_lag{k}" for k in range(1, 6)),
    "effective_tokens",
)


def _serial_cells(row: Mapping[str, Any]) -> list[str]:
    acf = list(row.get("norm_autocorrelation") or [])
    acf += [None] * (5 - len(acf))
    return [csv_cell(v) for v in acf[:5]] + [csv_cell(row.get("effective_tokens"))]


#: The last columns, on the primary site's layers only: (CSV name, Part 7 layer field;
#: "part6" for Part 6's cluster p).
PART7_COLUMNS = (
    ("pvalue_cluster", "part6"),
    ("controlled_statistic", "statistic"),
    ("controlled_pvalue", "pvalue"),
    ("controlled_pvalue_maxstat", "pvalue_maxstat"),
    ("controlled_pvalue_holm", "pvalue_holm"),
    ("controlled_pvalue_fdr", "pvalue_fdr"),
    ("controlled_pvalue_cluster", "pvalue_cluster"),
    ("controlled_pvalue_corrected", "pvalue_corrected"),
    ("controlled_significant", "significant"),
    ("controlled_difference", "difference"),
    ("controlled_difference_ci_low", "difference_ci_low"),
    ("controlled_difference_ci_high", "difference_ci_high"),
    ("controlled_hedges_g", "hedges_g"),
    ("controlled_hedges_g_ci_low", "hedges_g_ci_low"),
    ("controlled_hedges_g_ci_high", "hedges_g_ci_high"),
    ("controlled_negligible", "negligible"),
    ("controlled_verdict", "verdict"),
    ("odds_ratio_per_sd", "odds_ratio"),
    ("odds_ratio_ci_low", "odds_ratio_ci_low"),
    ("odds_ratio_ci_high", "odds_ratio_ci_high"),
    ("logloss_gain", "logloss_gain"),
    ("logloss_gain_ci_low", "logloss_gain_ci_low"),
    ("logloss_gain_ci_high", "logloss_gain_ci_high"),
    ("auroc_full", "auroc_full"),
    ("auroc_full_ci_low", "auroc_full_ci_low"),
    ("auroc_full_ci_high", "auroc_full_ci_high"),
)


#: After Part 7's, on the primary site's layers only: Part 8's (CSV name, Part 8 layer field).
PART8_COLUMNS = (
    ("probe_auroc", "auroc"),
    ("probe_auroc_ci_low", "auroc_ci_low"),
    ("probe_auroc_ci_high", "auroc_ci_high"),
    ("probe_pvalue", "pvalue"),
    ("probe_pvalue_maxstat", "pvalue_maxstat"),
    ("probe_pvalue_holm", "pvalue_holm"),
    ("probe_pvalue_fdr", "pvalue_fdr"),
    ("probe_pvalue_cluster", "pvalue_cluster"),
    ("probe_pvalue_corrected", "pvalue_corrected"),
    ("probe_significant", "significant"),
    ("norm_auroc", "norm_auroc"),
    ("norm_auroc_ci_low", "norm_auroc_ci_low"),
    ("norm_auroc_ci_high", "norm_auroc_ci_high"),
    ("direction_not_norm", "direction_not_norm"),
    ("probe_auroc_full", "auroc_full"),
    ("probe_auroc_full_ci_low", "auroc_full_ci_low"),
    ("probe_auroc_full_ci_high", "auroc_full_ci_high"),
    ("probe_logloss_gain", "logloss_gain"),
    ("probe_logloss_gain_ci_low", "logloss_gain_ci_low"),
    ("probe_logloss_gain_ci_high", "logloss_gain_ci_high"),
    ("probe_gain_over_controls", "gain_over_controls"),
    ("probe_gain_over_controls_ci_low", "gain_over_controls_ci_low"),
    ("probe_gain_over_controls_ci_high", "gain_over_controls_ci_high"),
    ("probe_controlled_statistic", "controlled_statistic"),
    ("probe_controlled_pvalue", "controlled_pvalue"),
    ("probe_controlled_pvalue_corrected", "controlled_pvalue_corrected"),
    ("probe_controlled_significant", "controlled_significant"),
    ("probe_controlled_hedges_g", "controlled_hedges_g"),
    ("probe_controlled_hedges_g_ci_low", "controlled_hedges_g_ci_low"),
    ("probe_controlled_hedges_g_ci_high", "controlled_hedges_g_ci_high"),
    ("probe_controlled_verdict", "controlled_verdict"),
)
