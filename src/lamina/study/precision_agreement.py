"""How far a study in half precision agrees with the same study in float32.

Two token tables of one plan (the same windows, rows in the same order), extracted in two
precisions, and their analyses with the same options: the labels (``correct``) and top-1
predictions that agree, per site and layer the distribution of the differences of the
log-norms set against the correct-vs-incorrect difference the study measures, and whether
Parts 6-8 reach the same verdicts (``docs/statistics.md``, "Half precision").

The agreement **holds** when at least ``MIN_LABEL_AGREEMENT`` of the labels agree, the
median |difference| of the log-norms is at most ``MAX_NOISE_RATIO`` of the float32 class
difference at every layer of the primary site where Part 6 finds that difference, and Parts
6, 7 and 8 (those that ran) find the same layers with the same verdicts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.errors import InputError
from lamina.table import layer_matrix, table_metadata, table_sites

if TYPE_CHECKING:
    import pyarrow as pa

#: Labels (``correct``) that must agree for the agreement to hold.
MIN_LABEL_AGREEMENT = 0.98
#: The largest median |difference of log-norms| allowed, as a share of the float32 class
#: difference, at a layer where Part 6 finds one.
MAX_NOISE_RATIO = 0.25

RULE = (
    f"at least {MIN_LABEL_AGREEMENT:.0%} of the labels agree; at every layer of the primary "
    f"site where Part 6 finds a difference, the median |difference of ln-norms| between the "
    f"precisions is at most {MAX_NOISE_RATIO:.0%} of the float32 class difference; and Parts "
    "6, 7 and 8 (those that ran) find the same layers with the same verdicts"
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
    significant = set(ref_result.part6.significant_layers)
    noisy = [
        row["layer"]
        for entry in sites
        if entry["site"] == primary
        for row in entry["layers"]
        if row["layer"] in significant and not row["noise_ratio"] <= MAX_NOISE_RATIO
    ]
    holds = (
        label_agreement >= MIN_LABEL_AGREEMENT
        and not noisy
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
        "noisy_layers": noisy,
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
    """Per layer: the median and 95th percentile of |ln-norm difference|, the float32 class
    difference and their ratio."""
    with np.errstate(divide="ignore"):
        a = np.log(layer_matrix(ref, site).astype(np.float64))
        b = np.log(layer_matrix(other, site).astype(np.float64))
    layers = [
        int(name.rsplit(".", 1)[1])
        for name in ref.column_names
        if name.startswith(f"{site}.") and name.count(".") == 1
    ]
    rows = []
    for j, layer in enumerate(sorted(layers)):
        finite = np.isfinite(a[:, j]) & np.isfinite(b[:, j])
        diff = np.abs(a[finite, j] - b[finite, j])
        ok = finite & correct
        bad = finite & ~correct
        gap = abs(float(a[ok, j].mean() - a[bad, j].mean())) if ok.any() and bad.any() else None
        median = float(np.median(diff)) if diff.size else None
        rows.append(
            {
                "layer": layer,
                "median_abs_diff": median,
                "q95_abs_diff": float(np.quantile(diff, 0.95)) if diff.size else None,
                "class_difference": gap,
                "noise_ratio": (median / gap) if gap and median is not None else None,
            }
        )
    return {"site": site, "layers": rows}


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
