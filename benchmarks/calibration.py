"""Calibration of Parts 6-7 by simulation at the scale of real runs.

Synthetic token tables (``lamina.stats.simulation``: 1,000 and 40,000 tokens,
30 layers, windows of 1,024 tokens, AR(1) norms and serially dependent labels,
the confound shapes linear / early / step / first / U-shape, window effects)
go through the tests as a study runs them (``lamina.stats.calibration``). For
every condition the script reports, with Monte-Carlo standard errors:

- Part 6: the family-wise error of the circular-shift test (max-statistic,
  raw and studentised) and of the exchangeable test, where nothing is planted;
  the power at the planted layers; the coverage of the raw g interval;
- Part 7: the family-wise error (any layer rejected) and the per-layer
  rejection rate with no direct effect, the power to find a planted controlled
  effect of either sign with the right sign, the coverage of the controlled g
  interval.

Writes ``benchmarks/results/calibration.json`` (each condition as it finishes)
and prints a Markdown table for ``docs/statistics.md``. ``--quick`` runs a few
tables per condition. Never asserts anything.

``--probes`` runs Part 8's cases instead (``lamina.stats.calibration.run_probe_cell``:
40,000 tokens, 30 layers of 32-dimensional vectors independent of serially dependent labels,
cross-fitted probes over 5 folds of whole windows): the family-wise error and per-layer
rejection of the probe's test, the coverage of 1/2 by its AUROC interval and the log-norm's,
the same before the widening for cross-fitting, and the share of layers whose log-loss gain
interval lies above 0; written to ``benchmarks/results/calibration_probes.json``.

    .venv/bin/python benchmarks/calibration.py [--quick] [--tables-large 100]
    .venv/bin/python benchmarks/calibration.py --probes [--tables-large 100]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from lamina.stats.calibration import PROBE_RATES, run_cell, run_probe_cell  # noqa: E402
from machine import machine_info  # noqa: E402

CONFOUNDS = ("none", "linear", "early", "step", "first", "ushape")
EFFECT_LAYERS = (20, 21, 22, 23, 24)


def conditions(n_tokens: int) -> list[dict]:
    """Every simulated condition at one size: the nulls, then the planted effects."""
    cells = [{"confound": c, "rho": 0.5} for c in CONFOUNDS]
    cells += [{"confound": "none", "rho": 0.9}, {"confound": "linear", "rho": 0.9}]
    cells += [{"confound": "none", "rho": 0.5, "window_sd": 0.5}]
    for effect in (0.1, -0.1, 0.2, -0.2):
        cells.append({"confound": "linear", "rho": 0.5, "effect": effect})
    # Part 6's power under each scheme, where the raw difference is the planted one
    for effect in (0.2, -0.2):
        cells.append({"confound": "none", "rho": 0.5, "effect": effect})
    for cell in cells:
        cell["n_tokens"] = n_tokens
        cell["exchangeable"] = cell["confound"] == "none"
        if "effect" in cell:
            cell["effect_layers"] = EFFECT_LAYERS
    return cells


def _cell_line(result: dict) -> str:
    r = result["rates"]

    def show(key: str) -> str:
        if key not in r:
            return ""
        return f"{r[key]['rate']:.3f} ± {r[key]['se']:.3f}"

    name = f"{result['confound']}, ρ {result['rho']}"
    if result["window_sd"]:
        name += f", window SD {result['window_sd']}"
    effect = f"{result['effect']:+.1f}" if result["effect"] else "0"
    part7 = show("part7_fwer") or show("part7_effect_layers_found")
    return (
        f"| {result['n_tokens']:,} | {name} | {effect} | {result['n_tables']} | "
        f"{show('part6_shift_fwer') or show('part6_effect_layers_found')} | "
        f"{show('part6_shift_fwer_studentised') or show('part6_effect_layers_found_studentised')}"
        f" | {show('part6_exchangeable_fwer') or show('part6_exchangeable_effect_layers_found')}"
        f" | {show('part6_g_coverage')} | {part7} | "
        f"{show('part7_layer_rejection')} | {show('part7_g_coverage')} |"
    )


HEADER = (
    "| tokens | condition | planted g | tables | Part 6 shift: FWER or power | "
    "studentised max | exchangeable: FWER or power | raw g coverage | Part 7: FWER or power | "
    "Part 7 per-layer rejection | controlled g coverage |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


#: Part 8's cases: (method, rho, share of the large table count, log-loss gain too).
PROBE_CELLS = (
    ("diffmeans", 0.5, 1.0, True),
    ("lda", 0.5, 0.5, False),
    ("diffmeans", 0.9, 0.5, False),
)
PROBE_HEADER = (
    "| method | ρ | tables | FWER | per-layer rejection | AUROC coverage of 1/2 | "
    "log-norm AUROC coverage | FWER, scores fixed | per-layer, scores fixed | "
    "coverage, scores fixed | gain CI above 0 |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def _probe_line(result: dict) -> str:
    r = result["rates"]

    def show(key: str) -> str:
        return f"{r[key]['rate']:.3f} ± {r[key]['se']:.3f}" if key in r else ""

    cells = " | ".join(show(k) for k in PROBE_RATES)
    return f"| {result['method']} | {result['rho']} | {result['n_tables']} | {cells} |"


def _save(out: Path, results: list, started: float) -> None:
    """Every cell so far, with the machine and the command (rewritten after each cell)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": machine_info(),
                "command": " ".join(sys.argv),
                "seconds": round(time.perf_counter() - started, 1),
                "cells": results,
            },
            indent=1,
        )
    )


def probes_main(args) -> None:
    """Part 8's calibration (module docstring)."""
    out = args.out if args.out != DEFAULT_OUT else HERE / "results" / "calibration_probes.json"
    results = []
    started = time.perf_counter()
    for method, rho, share, gain in PROBE_CELLS:
        tables = 3 if args.quick else max(1, round(share * args.tables_large))
        t0 = time.perf_counter()
        result = run_probe_cell(
            method=method, rho=rho, n_tables=tables, n_permutations=args.permutations, gain=gain
        )
        result["seconds"] = round(time.perf_counter() - t0, 1)
        results.append(result)
        print(_probe_line(result), flush=True)
        _save(out, results, started)
    print()
    print(PROBE_HEADER)
    for result in results:
        print(_probe_line(result))


DEFAULT_OUT = HERE / "results" / "calibration.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 tables per condition")
    parser.add_argument("--tables-small", type=int, default=200)
    parser.add_argument("--tables-large", type=int, default=100)
    parser.add_argument("--permutations", type=int, default=199)
    parser.add_argument("--sizes", default="1000,40000")
    parser.add_argument(
        "--only", help="run only the conditions whose 'confound,rho,effect' match this regex"
    )
    parser.add_argument("--probes", action="store_true", help="Part 8's cases instead")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    if args.probes:
        probes_main(args)
        return
    results = []
    started = time.perf_counter()
    for n_tokens in (int(s) for s in args.sizes.split(",")):
        tables = args.tables_small if n_tokens <= 5000 else args.tables_large
        for cell in conditions(n_tokens):
            key = f"{cell['confound']},{cell['rho']},{cell.get('effect', 0)}"
            if args.only and not re.search(args.only, key):
                continue
            t0 = time.perf_counter()
            result = run_cell(
                **cell, n_tables=3 if args.quick else tables, n_permutations=args.permutations
            )
            result["seconds"] = round(time.perf_counter() - t0, 1)
            results.append(result)
            print(_cell_line(result), flush=True)
            _save(args.out, results, started)
    print()
    print(HEADER)
    for result in results:
        print(_cell_line(result))


if __name__ == "__main__":
    main()
