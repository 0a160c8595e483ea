"""The study in words and tables: headline, console summary, ``layers.csv``.

Everything here reads a results dict (``results.json``), so ``lamina report``
and ``lamina analyze`` share it with ``lamina run``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lamina.study import LN2, is_divergence

STATISTIC_LABELS = {
    "js": "Jensen-Shannon divergence",
    "kl": "KL divergence (correct ‖ incorrect)",
    "kl_reverse": "KL divergence (incorrect ‖ correct)",
    "knn_kl": "kNN KL divergence (correct ‖ incorrect)",
    "knn_kl_reverse": "kNN KL divergence (incorrect ‖ correct)",
    "ks": "Kolmogorov-Smirnov D",
    "wasserstein": "Wasserstein-1 distance",
    "mean_difference": "difference of means",
    "hedges_g": "Hedges' g",
    "auroc": "AUROC",
    "seed_symmetric_kl": "the notebook's symmetric KL",
}

STATISTIC_SHORT = {
    "js": "JS",
    "kl": "KL(C‖I)",
    "kl_reverse": "KL(I‖C)",
    "knn_kl": "kNN KL(C‖I)",
    "knn_kl_reverse": "kNN KL(I‖C)",
    "ks": "KS D",
    "wasserstein": "W1",
    "mean_difference": "Δ mean",
    "hedges_g": "g",
    "auroc": "AUROC",
    "seed_symmetric_kl": "symKL",
}

CORRECTION_LABELS = {
    "maxstat": "max-statistic family-wise correction",
    "holm": "Holm family-wise correction",
    "fdr": "Benjamini-Hochberg false discovery rate",
    "none": "no multiple-comparison correction",
}


def statistic_label(statistic: str) -> str:
    return STATISTIC_LABELS.get(statistic, statistic)


def statistic_short(statistic: str) -> str:
    return STATISTIC_SHORT.get(statistic, statistic)


def format_statistic(value: float | None, statistic: str) -> str:
    """A statistic for prose and tables: divergences in bits, others in their own unit."""
    if value is None:
        return "n/a"
    if is_divergence(statistic):
        return f"{value / LN2:.4g} bits"
    return f"{value:.4g}"


def format_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    # 1 / 1001, the smallest p of 1000 permutations, reads 0.001.
    if p < 0.0005:
        return f"{p:.1e}"
    return f"{p:.3f}"


def _layer_list(layers: Sequence[int]) -> str:
    if not layers:
        return "none"
    # Compress runs: 0-3, 7, 9-11.
    parts, start, prev = [], layers[0], layers[0]
    for layer in [*layers[1:], None]:
        if layer is not None and layer == prev + 1:
            prev = layer
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if layer is not None:
            start = prev = layer
    return ", ".join(parts)


def headline(results: Mapping[str, Any]) -> str:
    """The study's main result in two or three sentences (from a results dict)."""
    p1, p2, p5, p6 = (results[k] for k in ("part1", "part2", "part5", "part6"))
    params = results["parameters"]
    model = p1["model"].get("name") or p1["model"].get("spec") or "the model"
    text = p1["text"].get("spec") or "the text"
    statistic = params["statistic_computed"]
    site = p1["site"]
    row = next(r for r in p6["layers"] if r["layer"] == p5["layer"])
    direction = "larger" if row["difference"] > 0 else "smaller"
    sentences = [
        f"{model} predicted {p2['n_correct']:,} of {p2['n_tokens']:,} tokens of {text} "
        f"correctly (top-1 accuracy {p2['accuracy']:.1%}).",
        f"At layer {p5['layer']}, the {site} vectors of correctly predicted tokens have "
        f"{direction} log-norms on average (difference {row['difference']:+.3f}, "
        f"Hedges' g {row['hedges_g']:+.2f}, AUROC {row['auroc']:.3f}); "
        f"{statistic_short(statistic)} = {format_statistic(p5['statistic'], statistic)}, "
        f"permutation p = {format_p(p5['pvalue'])} ({p5['n_permutations']:,} permutations).",
    ]
    n_sig, n_layers = p6["n_significant"], p6["n_layers"]
    correction = CORRECTION_LABELS[p6["correction"]]
    if n_sig:
        sentences.append(
            f"Across all {n_layers} layers, {n_sig} differ at α = {p6['alpha']:g} "
            f"({correction}): layers {_layer_list(p6['significant_layers'])}; correct tokens "
            f"have the larger mean log-norm in {p6['n_significant_correct_higher']} of them "
            f"and the smaller in {p6['n_significant_correct_lower']}."
        )
    else:
        sentences.append(
            f"Across all {n_layers} layers, none differs at α = {p6['alpha']:g} ({correction})."
        )
    if results.get("compat") == "seed":
        sentences.append(
            "These numbers reproduce the reference notebook (seed compatibility mode)."
        )
    return " ".join(sentences)


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
    # In seed mode the "js" field holds the notebook's symmetric_KL, which is not JS.
    js_name = "symmetric_KL (notebook)" if results.get("compat") == "seed" else "JS"
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
        f"Part 5  {statistic_short(statistic)} = {format_statistic(p5['statistic'], statistic)}, "
        f"p = {format_p(p5['pvalue'])} ({p5['n_permutations']:,} permutations, "
        f"seed {params['seed']})"
    )
    unit = "bits" if divergence else p6["statistic_unit"]
    lines.append(
        f"Part 6  per layer: {statistic_short(statistic)} in {unit}; corrected p: "
        f"{CORRECTION_LABELS[p6['correction']]}; * = significant at α = {p6['alpha']:g}"
    )
    header = (
        f"{'layer':>5} {'ln‖·‖ C':>9} {'ln‖·‖ I':>9} {'diff':>8} {statistic_short(statistic):>10} "
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
        f"{_layer_list(p6['significant_layers'])}"
    )
    ex = results["exclusions"]
    if ex["n_tokens_excluded"]:
        lines.append(
            f"excluded {ex['n_tokens_excluded']} token(s) with a zero or non-finite norm "
            f"({ex['n_correct_excluded']} correct, {ex['n_incorrect_excluded']} incorrect)"
        )
    else:
        lines.append("zero-norm vectors: none")
    if report_path is not None:
        lines.append(f"report: {report_path}")
    return "\n".join(lines)


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


def layers_csv(results: Mapping[str, Any]) -> str:
    """``layers.csv``: one row per layer; floats as shortest round-trip decimals.

    The statistic's name, unit, correction and compat mode are repeated on every
    row so the file stands alone.
    """
    p6 = results["part6"]
    columns = [*LAYER_COLUMNS, "statistic_name", "statistic_unit", "correction", "compat"]
    lines = [",".join(columns)]
    for row in p6["layers"]:
        cells = []
        for col in LAYER_COLUMNS:
            value = row[col]
            if value is None:
                cells.append("")
            elif isinstance(value, bool):
                cells.append("true" if value else "false")
            else:
                cells.append(repr(value))
        cells += [
            p6["statistic_name"],
            p6["statistic_unit"],
            p6["correction"],
            results.get("compat", "none"),
        ]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"
