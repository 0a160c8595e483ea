"""The study in words and tables: headline, console summary, ``layers.csv``.

Everything here reads a results dict (``results.json``), so ``lamina report``
and ``lamina analyze`` share it with ``lamina run``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lamina._format import csv_cell, format_p, layer_list
from lamina.stats.catalog import CORRECTION_LABELS, format_statistic, is_divergence, short


def format_summary(results: Mapping[str, Any], report_path: str | None = None) -> str:
    """The console summary: accuracy, the single-layer result, the per-layer table."""
    p1, p2, p3, p4, p5, p6 = (results[f"part{k}"] for k in range(1, 7))
    params = results["parameters"]
    statistic = params["statistic_computed"]
    divergence = is_divergence(statistic)
    lines = []
    if results.get("compat_note"):
        lines.append(f"NOTE: {results['compat_note']}.")
    model = p1["model"]
    windows = p1["windows"]
    lines.append(
        f"model  {model.get('name') or model.get('spec')} ({model.get('fingerprint')}); "
        f"text {p1['text'].get('spec')} (sha256 {str(p1['text'].get('sha256'))[:12]}…)"
    )
    lines.append(
        f"tokens {p1['n_tokens_scored']:,} scored in {p1['n_windows']} window(s) "
        f"({windows.get('mode')}, {windows.get('window')} tokens); site {p1['site']}, "
        f"{p1['n_layers']} layers"
    )
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
    lines += _part7_lines(results)
    lines += _sites_lines(results)
    lines += _exclusion_lines(results["exclusions"])
    timings = results.get("timings")
    if timings:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k != "total")
        lines.append(f"timings: {stages} (total {timings.get('total', 0.0):.1f} s)")
    if report_path is not None:
        lines.append(f"report: {report_path}")
    return "\n".join(lines)


def _part7_lines(results: Mapping[str, Any]) -> list[str]:
    """Part 7's console lines: the controls, and the layers significant after them."""
    p7 = results.get("part7")
    if not p7:
        return ["Part 7  controls: not run (--controls none, or the notebook mode)"]
    lines = [
        f"Part 7  controls {', '.join(p7['controls']) or 'none'}: {p7['strata']['n_strata']} "
        f"strata; {CORRECTION_LABELS[p7['correction']]}; negligible: |g| < {p7['min_effect']:g}"
    ]
    lines += [f"        note: {note}" for note in p7["notes"]]
    negligible = p7["negligible_layers"]
    lines.append(
        f"significant after controls ({p7['n_significant']} of {p7['n_layers']}): "
        f"{layer_list(p7['significant_layers'])}"
        + (f"; significant but negligible: {layer_list(negligible)}" if negligible else "")
        + (
            f"; explained by the controls: {layer_list(p7['explained_layers'])}"
            if p7["explained_layers"]
            else ""
        )
        + (
            f"; the two tests disagree: {layer_list(p7['disagree_layers'])}"
            if p7.get("disagree_layers")
            else ""
        )
    )
    return lines


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
    correction and compat mode are repeated on every row so the file stands
    alone; the site columns come last. Without a ``sites`` section (results
    written before it existed) the rows are Part 6's.
    """
    p6 = results["part6"]
    columns = [*LAYER_COLUMNS, "statistic_name", "statistic_unit", "correction", "compat"]
    p7_rows = {r["layer"]: r for r in (results.get("part7") or {}).get("layers", [])}
    p6_rows = {r["layer"]: r for r in p6["layers"]}
    lines = [",".join([*columns, *SITE_COLUMNS, *(name for name, _ in PART7_COLUMNS)])]
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


#: Columns after ``compat``: (CSV name, Part 7 layer field; "part6" for Part 6's cluster p).
PART7_COLUMNS = (
    ("pvalue_cluster", "part6"),
    ("controlled_pvalue", "pvalue"),
    ("controlled_pvalue_maxstat", "pvalue_maxstat"),
    ("controlled_pvalue_holm", "pvalue_holm"),
    ("controlled_pvalue_fdr", "pvalue_fdr"),
    ("controlled_pvalue_cluster", "pvalue_cluster"),
    ("controlled_pvalue_corrected", "pvalue_corrected"),
    ("controlled_significant", "significant"),
    ("controlled_hedges_g", "hedges_g"),
    ("controlled_hedges_g_ci_low", "hedges_g_ci_low"),
    ("controlled_hedges_g_ci_high", "hedges_g_ci_high"),
    ("controlled_negligible", "negligible"),
    ("controlled_verdict", "verdict"),
    ("odds_ratio_per_sd", "odds_ratio"),
    ("odds_ratio_ci_low", "odds_ratio_ci_low"),
    ("odds_ratio_ci_high", "odds_ratio_ci_high"),
    ("regression_pvalue", "pvalue_regression"),
    ("regression_pvalue_maxstat", "pvalue_regression_maxstat"),
    ("auroc_gain", "auroc_gain"),
    ("auroc_gain_ci_low", "auroc_gain_ci_low"),
    ("auroc_gain_ci_high", "auroc_gain_ci_high"),
)
