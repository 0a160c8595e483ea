"""The study's own words: the units of its numbers and its headline.

Both are part of ``results.json``, so the report and the console show what the
study wrote rather than recomputing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lamina._format import format_p, layer_list
from lamina.stats.catalog import CORRECTION_LABELS, format_statistic, short, unit


def units(statistic: str) -> dict[str, str]:
    """The ``units`` section of ``results.json`` for a study of ``statistic``."""
    return {
        "log_norm": "natural log of the L2 norm of the site's output vector "
        "(the norm is in the model's activation units)",
        "difference": "difference of mean log-norms (correct minus incorrect), natural-log units",
        "divergence": "nats (natural logarithm); every *_bits field is the same value in bits "
        "(nats / ln 2)",
        "ks": "dimensionless (largest gap between the two empirical CDFs)",
        "wasserstein": "natural-log units of the norm (same as log_norm)",
        "pvalue": "Monte-Carlo permutation p-value (b + 1) / (m + 1), b = #(null >= observed) "
        "for alternative 'greater'",
        "accuracy": "fraction of scored tokens whose top-1 prediction is the target",
        "target_chars": "characters of the decoded target token",
        "auroc": "P(log-norm of a correct token > that of an incorrect token), ties count 1/2",
        "probe_auroc": "Part 8: P(held-out probe score of a correct token > that of an "
        "incorrect token), ties count 1/2; 1/2 is chance",
        "hedges_g": "standardised mean difference (correct minus incorrect), "
        "small-sample corrected",
        "statistic": unit(statistic),
    }


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
        f"{short(statistic)} = {format_statistic(p5['statistic'], statistic)}, "
        f"permutation p = {format_p(p5['pvalue'])} ({p5['n_permutations']:,} permutations).",
    ]
    n_sig, n_layers = p6["n_significant"], p6["n_layers"]
    correction = CORRECTION_LABELS[p6["correction"]]
    if n_sig:
        sentences.append(
            f"Across all {n_layers} layers, {n_sig} differ at α = {p6['alpha']:g} "
            f"({correction}): layers {layer_list(p6['significant_layers'])}; correct tokens "
            f"have the larger mean log-norm in {p6['n_significant_correct_higher']} of them "
            f"and the smaller in {p6['n_significant_correct_lower']}."
        )
    else:
        sentences.append(
            f"Across all {n_layers} layers, none differs at α = {p6['alpha']:g} ({correction})."
        )
    p8 = results.get("part8")
    if p8:
        sentences.append(_probe_sentence(p8))
    if results.get("compat") == "notebook":
        sentences.append(
            "These numbers reproduce the reference notebook (notebook compatibility mode)."
        )
    return " ".join(sentences)


def _probe_sentence(p8: Mapping[str, Any]) -> str:
    """Part 8 in one sentence: where the direction carries correctness, and where not the norm."""
    n_sig, n_layers = p8["n_significant"], p8["n_layers"]
    if not n_sig:
        return (
            f"A linear probe of the direction of the vectors tells correct from incorrect "
            f"tokens at none of the {n_layers} layers (peak held-out AUROC "
            f"{p8['peak_auroc']:.3f} at layer {p8['peak_layer']})."
        )
    only = p8["direction_not_norm_layers"]
    return (
        f"A linear probe of the direction of the vectors tells correct from incorrect tokens "
        f"at {n_sig} of {n_layers} layers (peak held-out AUROC {p8['peak_auroc']:.3f} at layer "
        f"{p8['peak_layer']}); "
        + (
            f"in direction but not in norm at layers {layer_list(only)}."
            if only
            else "at each of them the norm differs too, or may."
        )
    )
