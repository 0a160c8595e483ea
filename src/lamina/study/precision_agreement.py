"""How far a study in half precision agrees with the same study in float32.

Two token tables of one plan (the same windows, rows in the same order), extracted in two
precisions, and their analyses with the same options: the labels (``correct``) and top-1
predictions that agree, per site and layer the distribution of the differences of the
log-norms set against the correct-vs-incorrect difference the study measures, and whether
Parts 6-8 reach the same verdicts (``docs/statistics.md``, "Half precision").

The agreement **holds** when at least ``MIN_LABEL_AGREEMENT`` of the labels agree, at every
layer of the primary site the class difference of mean log-norms (each precision with its
own labels) moves by at most ``MAX_SHIFT_SE`` of its float32 standard error, and Parts 6, 7
and 8 (those that ran) find the same layers with the same verdicts. (The tokens' own
differences are reported but not judged: rounding noise that is independent of correctness
averages out of the class means, which are what the study compares.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.errors import InputError
from lamina.table import layer_matrix, site_layers, table_metadata, table_sites

if TYPE_CHECKING:
    import pyarrow as pa

#: Labels (``correct``) that must agree for the agreement to hold.
MIN_LABEL_AGREEMENT = 0.98
#: The largest move of a layer's class difference (mean ln-norm of correct minus incorrect
#: tokens) between the precisions, in standard errors of the float32 difference.
MAX_SHIFT_SE = 0.25

RULE = (
    f"at least {MIN_LABEL_AGREEMENT:.0%} of the labels agree; at every layer of the primary "
    f"site the class difference of mean ln-norms moves by at most {MAX_SHIFT_SE} of its "
    "float32 standard error; and Parts 6, 7 and 8 (those that ran) find the same layers with "
    "the same verdicts"
)


def precision_agreement(
    reference: pa.Table, other: pa.Table, ref_result: Any, other_result: Any
) -> dict[str, Any]:
    """The agreement of ``other`` (half precision) with ``reference`` (float32): a dict for
    ``precision.json`` (module docstring). Both tables must hold the same rows."""
    _require_same_rows(reference, other)
    ref_meta, other_meta = table_metadata(reference), table_metadata(other)
    correct_ref = reference.column("correct").to_numpy(zero_copy_only=False)
    correct_other = other.column("correct").to_numpy(zero_copy_only=False)
    predictions = None
    if "pred_id" in reference.column_names and "pred_id" in other.column_names:
        same = reference.column("pred_id").to_numpy() == other.column("pred_id").to_numpy()
        predictions = float(same.mean())
    label_agreement = float((correct_ref == correct_other).mean())
    sites = [
        _site_rows(reference, other, site, correct_ref)
        for site in table_sites(reference)
        if site != "attn_head"
    ]
    verdicts = _verdicts(ref_result, other_result)
    primary = ref_result.part6.site
    moved = [
        row["layer"]
        for entry in sites
        if entry["site"] == primary
        for row in entry["layers"]
        if row["shift_se"] is not None and row["shift_se"] > MAX_SHIFT_SE
    ]
    holds = (
        label_agreement >= MIN_LABEL_AGREEMENT
        and not moved
        and all(v["same"] for v in verdicts.values() if v is not None)
    )
    return {
        "reference_dtype": _dtype(ref_meta),
        "dtype": _dtype(other_meta),
        "n_tokens": int(reference.num_rows),
        "label_agreement": label_agreement,
        "labels_differing": int((correct_ref != correct_other).sum()),
        "prediction_agreement": predictions,
        "accuracy": {
            _dtype(ref_meta): float(correct_ref.mean()),
            _dtype(other_meta): float(correct_other.mean()),
        },
        "sites": sites,
        "verdicts": verdicts,
        "moved_layers": moved,
        "holds": bool(holds),
        "rule": RULE,
    }


def _dtype(meta: dict) -> str:
    return str((meta.get("model") or {}).get("dtype") or "unknown")


def _require_same_rows(a: pa.Table, b: pa.Table) -> None:
    same = a.num_rows == b.num_rows and all(
        np.array_equal(a.column(name).to_numpy(), b.column(name).to_numpy())
        for name in ("text_pos", "target_id")
    )
    if not same:
        raise InputError(
            "the two token tables do not hold the same tokens (another text, windows or "
            "tokenizer): extract both from one model spec, text and windows."
        )


def _site_rows(ref: pa.Table, other: pa.Table, site: str, correct: np.ndarray) -> dict:
    """Per layer: the median and 95th percentile of the tokens' |ln-norm difference|, and the
    study's own number, the class difference of mean ln-norms, in each precision: how far it
    moved, in standard errors of the float32 one (each precision with its own labels)."""
    with np.errstate(divide="ignore"):
        a = np.log(layer_matrix(ref, site).astype(np.float64))
        b = np.log(layer_matrix(other, site).astype(np.float64))
    other_correct = other.column("correct").to_numpy(zero_copy_only=False)
    layers = site_layers(ref, site)  # layer_matrix's columns, in its order
    rows = []
    for j, layer in enumerate(layers):
        finite = np.isfinite(a[:, j]) & np.isfinite(b[:, j])
        diff = np.abs(a[finite, j] - b[finite, j])
        gap, se = _class_difference(a[finite, j], correct[finite])
        gap_other, _ = _class_difference(b[finite, j], other_correct[finite])
        shift = None if gap is None or gap_other is None else abs(gap_other - gap)
        rows.append(
            {
                "layer": layer,
                "median_abs_diff": float(np.median(diff)) if diff.size else None,
                "q95_abs_diff": float(np.quantile(diff, 0.95)) if diff.size else None,
                "class_difference": gap,
                "class_difference_other": gap_other,
                "shift_se": (shift / se) if shift is not None and se else None,
            }
        )
    return {"site": site, "layers": rows}


def _class_difference(x: np.ndarray, labels: np.ndarray) -> tuple[float | None, float | None]:
    """Mean of ``x`` over correct minus over incorrect tokens, and its (Welch) standard error."""
    ok, bad = x[labels], x[~labels]
    if ok.size < 2 or bad.size < 2:
        return None, None
    se = float(np.sqrt(ok.var(ddof=1) / ok.size + bad.var(ddof=1) / bad.size))
    return float(ok.mean() - bad.mean()), se


def _verdicts(ref: Any, other: Any) -> dict[str, dict | None]:
    """Parts 6-8's layers and verdicts in each precision, and whether they are the same."""
    out: dict[str, dict | None] = {}
    a, b = ref.part6.significant_layers, other.part6.significant_layers
    out["part6"] = {"reference": a, "other": b, "same": a == b}
    if ref.part7 is not None and other.part7 is not None:
        pairs = list(zip(ref.part7.layers, other.part7.layers, strict=True))
        changes = [
            {"layer": a.layer, "reference": a.verdict, "other": b.verdict}
            for a, b in pairs
            if a.verdict != b.verdict
        ]
        out["part7"] = {
            "changed_layers": [c["layer"] for c in changes],
            "changes": changes,
            "max_g_shift_se": _max_shift_se(pairs),
            "same": not changes,
        }
    else:
        out["part7"] = None
    if ref.part8 is not None and other.part8 is not None:
        a, b = ref.part8.significant_layers, other.part8.significant_layers
        out["part8"] = {"reference": a, "other": b, "same": a == b}
    else:
        out["part8"] = None
    return out


def _max_shift_se(pairs: list) -> float | None:
    """The largest move of Part 7's controlled g between the precisions, in standard errors
    of the float32 estimate (its 95% interval's width / 3.92)."""
    shifts = []
    for a, b in pairs:
        values = (a.hedges_g, b.hedges_g, a.hedges_g_ci_low, a.hedges_g_ci_high)
        if any(v is None for v in values):
            continue
        se = (a.hedges_g_ci_high - a.hedges_g_ci_low) / 3.92
        if se > 0:
            shifts.append(abs(b.hedges_g - a.hedges_g) / se)
    return max(shifts) if shifts else None
