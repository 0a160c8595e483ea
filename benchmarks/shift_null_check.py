"""A check of the circular-shift null on its own: pure AR(1) series against the simulator.

The calibration table (``benchmarks/calibration.py``) shows Part 7's per-layer
rejection rate slightly above alpha (about 0.06) at rho = 0.5 and 40,000
tokens. This script separates the shift test from the rest:

1. ``pure``: norms an AR(1) series and labels a thresholded AR(1) latent series
   (``label_sd`` 1.5), independent, 40 windows of 1,024 tokens, no covariates;
   the correlation of the centred series against circular shifts within windows.
2. ``simulator``: one layer of ``lamina.stats.simulation.simulate_table`` with no
   confound and no effect, through ``partial_association`` with no controls
   (``simulator``) and with the default ones (``simulator+controls``).

For each: the rejection rate at alpha 0.05 (two-sided, 199 shifts) with its
Monte-Carlo SE, and the SD of ``statistic / SD(null)`` (1 when the null has the
observed statistic's spread). Writes ``benchmarks/results/shift_null_check.json``.

    .venv/bin/python benchmarks/shift_null_check.py [--tables 600] [--rho 0.5]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from lamina.stats.calibration import CONTROLS  # noqa: E402
from lamina.stats.conditional import partial_association  # noqa: E402
from lamina.stats.shifts import apply_shifts, random_shifts, shift_layout  # noqa: E402
from lamina.stats.simulation import simulate_table  # noqa: E402
from machine import machine_info  # noqa: E402

WINDOWS, WINDOW = 40, 1024


def _ar(rng, rho: float) -> np.ndarray:
    e = rng.standard_normal((WINDOWS, WINDOW))
    e[:, 0] /= math.sqrt(1 - rho * rho)
    return lfilter([math.sqrt(1 - rho * rho)], [1, -rho], e, axis=1).ravel()


def pure(tables: int, rho: float, permutations: int) -> list[float]:
    rng = np.random.default_rng(1)
    layout = shift_layout(np.repeat(np.arange(WINDOWS), WINDOW))
    z = []
    for t in range(tables):
        x = _ar(rng, rho)
        u = 1.5 * _ar(rng, rho)
        y = (rng.random(x.size) < 1 / (1 + np.exp(-(u - 0.2)))).astype(float)
        a, b = x - x.mean(), y - y.mean()
        null = np.concatenate(
            [apply_shifts(b, layout, s) @ a for s in random_shifts(layout, permutations, t)]
        )
        z.append((a @ b) / null.std())
    return z


def simulator(tables: int, rho: float, permutations: int, controls: bool) -> list[float]:
    z = []
    for t in range(tables):
        table = simulate_table(WINDOWS * WINDOW, 1, rho=rho, label_rho=rho, seed=20_000 + t)
        covariates = table.covariates()
        found = partial_association(
            table.values,
            table.labels,
            {c: covariates[c] for c in (CONTROLS if controls else ())},
            table.window,
            n_permutations=permutations,
            seed=t,
            n_bootstrap=10,
        )
        z.append(float(found.test.statistic[0] / found.test.null_sd[0]))
    return z


def summary(z: list[float]) -> dict:
    arr = np.asarray(z)
    rate = float((np.abs(arr) > 1.959964).mean())
    return {
        "tables": arr.size,
        "rejection_rate": rate,
        "rejection_rate_se": math.sqrt(0.05 * 0.95 / arr.size),
        "z_sd": float(arr.std()),
        "z_sd_se": float(arr.std() / math.sqrt(2 * arr.size)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=600)
    parser.add_argument("--rho", type=float, default=0.5)
    parser.add_argument("--permutations", type=int, default=199)
    args = parser.parse_args()
    results = {
        "pure": summary(pure(args.tables, args.rho, args.permutations)),
        "simulator": summary(simulator(args.tables, args.rho, args.permutations, False)),
        "simulator+controls": summary(simulator(args.tables, args.rho, args.permutations, True)),
    }
    for name, r in results.items():
        print(
            f"{name:<20} rate {r['rejection_rate']:.3f} ± {r['rejection_rate_se']:.3f}  "
            f"SD(z) {r['z_sd']:.3f} ± {r['z_sd_se']:.3f}  ({r['tables']} tables)"
        )
    out = {"machine": machine_info(), "command": " ".join(sys.argv), "rho": args.rho, **results}
    path = HERE / "results" / "shift_null_check.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
