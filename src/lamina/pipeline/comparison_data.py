"""Several finished runs as one comparison: series of profiles, a table, a relative-depth axis.

:func:`build_comparison` turns the ``results.json`` dicts of two or more runs
into the ``comparison.json`` dict (``docs/results-format.md``): one series per
run and per-layer site, each point a layer at its relative depth
``layer / (layers - 1)``, and one table row per series. Nothing here reads or
writes files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

from lamina import __version__
from lamina._format import layer_list
from lamina.report.comparison_page import POINT_COLUMNS, PROBE_POINT_FIELDS

COMPARE_FORMAT = "lamina.compare"
COMPARE_FORMAT_VERSION = 1

#: What a point of a series holds besides the run's per-layer numbers: set by the series
#: (``layer``, ``relative_depth``, ``significant``) or by the CSV (``label``, ``site``, ``n_layers``).
_NOT_FROM_ROWS = (
    "label",
    "site",
    "n_layers",
    "layer",
    "relative_depth",
    "significant",
    *PROBE_POINT_FIELDS,
)
#: The per-layer fields each point of a series carries from the run's site rows: the
#: comparison CSV's point columns (one list for both) less those above. Part 8's
#: (``PROBE_POINT_FIELDS``) come from the run's ``part8`` rows, on its primary site's series.
POINT_FIELDS = tuple(c for c in POINT_COLUMNS if c not in _NOT_FROM_ROWS)


def relative_depth(layer: int, n_layers: int) -> float:
    """``layer / (n_layers - 1)``: 0 at the first layer, 1 at the last (0 for one layer)."""
    return layer / (n_layers - 1) if n_layers > 1 else 0.0


def site_profiles(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A run's per-layer profiles as ``{site, scope, rows}``, each row marked ``marked``.

    Read from the ``sites`` section; results written before it existed give
    Part 6 alone. A row is ``marked`` when the run marked it significant (in
    its correction scope).
    """
    sites = results.get("sites")
    if not sites:
        p6 = results["part6"]
        rows = [{**r, "marked": bool(r["significant"])} for r in p6["layers"]]
        return [{"site": p6["site"], "scope": "site", "rows": rows}]
    scope = sites["correction_scope"]
    key = "significant_run" if scope == "run" else "significant"
    return [
        {
            "site": p["site"],
            "scope": scope,
            "rows": [{**r, "marked": bool(r[key])} for r in p["rows"]],
        }
        for p in sites["profiles"]
        if p["kind"] == "layers"
    ]


def run_summary(results: Mapping[str, Any], directory: str) -> dict[str, Any]:
    """What identifies a run in a comparison: model, text, windows, tokens, accuracy."""
    p1, p2 = results["part1"], results["part2"]
    model = p1["model"]
    return {
        "dir": directory,
        "model": model.get("name") or model.get("spec"),
        "model_spec": model.get("spec"),
        "fingerprint": model.get("fingerprint"),
        "n_layers": int(p1["n_layers"]),
        "text": p1["text"].get("spec"),
        "text_sha256": p1["text"].get("sha256"),
        "windows": p1["windows"].get("mode"),
        "window": p1["windows"].get("window"),
        "n_tokens": int(p1["n_tokens_scored"]),
        "accuracy": p2["accuracy"],
        "statistic": results["parameters"]["statistic_computed"],
    }


def run_labels(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Short labels that tell the runs apart: only what differs between them.

    Runs that differ in none of model, text and windows are named by their
    directory's name (its whole path when two names are the same).
    """
    parts: list[list[str]] = [[] for _ in runs]
    if len({r["fingerprint"] or r["model"] for r in runs}) > 1:
        for part, r in zip(parts, runs, strict=True):
            part.append(str(r["model"]))
    if len({r["text_sha256"] for r in runs}) > 1:
        for part, r in zip(parts, runs, strict=True):
            part.append(str(r["text"]))
    if len({(r["windows"], r["window"], r["n_tokens"]) for r in runs}) > 1:
        for part, r in zip(parts, runs, strict=True):
            part.append(f"{r['windows']} windows, {r['n_tokens']:,} tokens")
    labels = [", ".join(p) or PurePath(r["dir"]).name for p, r in zip(parts, runs, strict=True)]
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({r['dir']})" for label, r in zip(labels, runs, strict=True)]
    return labels


def build_comparison(
    results: Sequence[Mapping[str, Any]],
    directories: Sequence[str],
    *,
    reanalysed: Sequence[str | None],
    notes: Sequence[str],
    created: str,
    command_line: str | None = None,
) -> dict[str, Any]:
    """The ``comparison.json`` dict of runs ``results`` (read from ``directories``).

    ``reanalysed[i]`` is the sentence saying how run ``i`` was re-analysed, or
    None; ``notes`` are sentences about differences the comparison keeps.
    """
    runs = [run_summary(r, d) for r, d in zip(results, directories, strict=True)]
    labels = run_labels(runs)
    for run, label, how in zip(runs, labels, reanalysed, strict=True):
        run["label"] = label
        run["reanalysed"] = how
    depths = {run["n_layers"] for run in runs}
    axis = "relative_depth" if len(depths) > 1 else "layer"
    profiles = [site_profiles(r) for r in results]
    many_sites = len({p["site"] for ps in profiles for p in ps}) > 1
    series = []
    for k, (run, run_profiles) in enumerate(zip(runs, profiles, strict=True)):
        part8 = results[k].get("part8")
        for profile in run_profiles:
            label = f"{run['label']} · {profile['site']}" if many_sites else run["label"]
            probes = part8 if part8 and part8["site"] == profile["site"] else None
            series.append(_series(k, run, profile, label, axis, probes))
    first = results[0]["parameters"]
    return {
        "format": COMPARE_FORMAT,
        "format_version": COMPARE_FORMAT_VERSION,
        "lamina_version": __version__,
        "created": created,
        "command_line": command_line,
        "axis": axis,
        "axis_label": "Relative depth, layer / (layers − 1)"
        if axis == "relative_depth"
        else "Layer",
        "settings": {
            key: first.get(key)
            for key in (
                "statistic_computed",
                "bins",
                "bin_rule",
                "binning",
                "alternative",
                "correction",
                "alpha",
                "permutations",
                "seed",
                "compat",
            )
        },
        "notes": list(notes),
        "runs": runs,
        "series": series,
        "table": [_table_row(s, runs[s["run"]]) for s in series],
    }


def _series(
    k: int,
    run: Mapping[str, Any],
    profile: Mapping[str, Any],
    label: str,
    axis: str,
    probes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    n_layers = run["n_layers"]
    probe_rows = {r["layer"]: r for r in (probes or {}).get("layers", [])}
    points = []
    for row in profile["rows"]:
        depth = relative_depth(row["layer"], n_layers)
        probe = probe_rows.get(row["layer"], {})
        points.append(
            {
                "layer": row["layer"],
                "relative_depth": depth,
                "x": depth if axis == "relative_depth" else row["layer"],
                **{key: row.get(key) for key in POINT_FIELDS},
                "significant": row["marked"],
                **{key: probe.get(field) for key, field in PROBE_POINT_FIELDS.items()},
            }
        )
    return {
        "run": k,
        "label": label,
        "site": profile["site"],
        "n_layers": n_layers,
        "correction_scope": profile["scope"],
        "points": points,
        "probes": _probe_summary(probes, n_layers),
    }


def _probe_summary(probes: Mapping[str, Any] | None, n_layers: int) -> dict[str, Any]:
    """The series' Part 8 in the comparison table's columns (None everywhere without it)."""
    if not probes:
        return {
            "probe_method": None,
            "probe_n_significant": None,
            "probe_peak_layer": None,
            "probe_peak_relative_depth": None,
            "probe_peak_auroc": None,
            "probe_saturation_layer": None,
            "direction_not_norm_layers": None,
        }
    return {
        "probe_method": probes["method"],
        "probe_n_significant": probes["n_significant"],
        "probe_peak_layer": probes["peak_layer"],
        "probe_peak_relative_depth": relative_depth(probes["peak_layer"], n_layers),
        "probe_peak_auroc": probes["peak_auroc"],
        "probe_saturation_layer": probes["saturation_layer"],
        "direction_not_norm_layers": layer_list(probes["direction_not_norm_layers"]),
    }


def _table_row(series: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    points = series["points"]
    peak = max(points, key=lambda p: abs(p["hedges_g"]) if p["hedges_g"] is not None else -1.0)
    significant = [p["layer"] for p in points if p["significant"]]
    return {
        "label": series["label"],
        "model": run["model"],
        "n_layers": run["n_layers"],
        "text": run["text"],
        "windows": run["windows"],
        "n_tokens": run["n_tokens"],
        "accuracy": run["accuracy"],
        "site": series["site"],
        "statistic": run["statistic"],
        "n_tests": len(points),
        "n_significant": len(significant),
        "significant_layers": layer_list(significant),
        "peak_layer": peak["layer"],
        "peak_relative_depth": peak["relative_depth"],
        "peak_hedges_g": peak["hedges_g"],
        "reanalysed": run["reanalysed"] is not None,
        **series["probes"],
    }
