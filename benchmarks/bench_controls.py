"""Benchmark Part 7 (controls) at the size of a whole book.

Part 7 on 40,000 tokens x 30 layers with 10,000 permutations and the 5 default
controls (the size of ``lamina run --windows all --permutations 10000`` on Alice
with the embedded model; target: at most 30 s on the 2-core reference machine),
and at the default run's size (1,024 tokens x 30 layers x 1,000 permutations).
The table is synthetic (covariates with the shapes of the real ones: positions,
target lengths, log frequencies, repeats; norms that depend on them and, at a few
layers, on correctness), or a real token table with ``--table PATH``. Part 6's
test is computed first (Part 7 takes it as input), then timed again in every
repeat as the baseline: Part 7's cost is reported as a ratio to it. The study's
options are the defaults with ``permutations`` set. Each size runs in a fresh
process and reports the time of every stage, medians of ``--repeats`` runs.

Prints a table and writes JSON to ``benchmarks/results/bench_controls.json``
(``--quick``: 4,000 tokens and 500 permutations, one repeat, written to
``bench_controls_quick.json``). Never asserts timings.

    .venv/bin/python benchmarks/bench_controls.py [--quick] [--table tokens.parquet]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from machine import machine_info  # noqa: E402

SIZES = {
    "whole book": {"n_tokens": 40_000, "n_layers": 30, "permutations": 10_000},
    "default run": {"n_tokens": 1_024, "n_layers": 30, "permutations": 1_000},
}
QUICK = {"quick": {"n_tokens": 4_000, "n_layers": 30, "permutations": 500}}


def synthetic_table(n_tokens: int, n_layers: int, seed: int = 0):
    """A token table whose covariates look like a book's, with confounded norms."""
    from study.token_tables import token_table

    rng = np.random.default_rng(seed)
    ctx = np.arange(n_tokens) % 1024
    chars = rng.integers(1, 12, n_tokens)
    freq = -rng.gamma(3.0, 2.0, n_tokens)
    repeat = rng.random(n_tokens) < 0.4
    logit = -1.0 + 0.5 * np.log1p(ctx) / 7 - 0.15 * chars + 0.2 * (freq + 6) + 0.8 * repeat
    correct = rng.random(n_tokens) < 1 / (1 + np.exp(-logit))
    log_norms = rng.normal(0, 0.5, (n_tokens, n_layers)) + np.linspace(1, 4, n_layers)
    log_norms += 0.05 * chars[:, None] + 0.1 * np.log1p(ctx)[:, None] / 7
    log_norms[correct, n_layers // 2] += 0.1
    table = token_table(correct, np.exp(log_norms), ctx_pos=ctx, target_chars=chars)
    import pyarrow as pa

    table = table.append_column("target_freq", pa.array(freq.astype(np.float32)))
    return table.append_column("target_repeat", pa.array(repeat))


def _timed(times: dict[str, list[float]], name: str, call, *args, **kwargs):
    """``call(*args, **kwargs)``, its wall time appended to ``times[name]``."""
    started = time.perf_counter()
    result = call(*args, **kwargs)
    times.setdefault(name, []).append(time.perf_counter() - started)
    return result


def measure(size: dict, table_path: str | None, repeats: int) -> dict:
    """Time Part 7's stages on one table (run inside a fresh process)."""
    from lamina.stats.adjustment import control_basis
    from lamina.stats.conditional import conditional_test, residualise
    from lamina.study.options import StudyOptions
    from lamina.study.parts.controls import controls
    from lamina.study.parts.profile import all_layers_test, laminar_profile
    from lamina.study.prepare import prepare_table
    from lamina.study.serial import serial_structure
    from lamina.table import read_table

    if table_path:
        table = read_table(table_path)
    else:
        table = synthetic_table(size["n_tokens"], size["n_layers"])
    layer = 4 if size["n_layers"] > 4 else 0
    options = StudyOptions(permutations=size["permutations"], layer=layer)
    data = prepare_table(table, options)
    profile = laminar_profile(all_layers_test(data, options), data, options)
    serial = serial_structure(data, options)
    order = serial.layout.order
    chosen = {c: data.covariates.values[c][data.keep][order] for c in options.controls}
    times: dict[str, list[float]] = {}
    for _ in range(repeats):
        _timed(times, "Part 6 (baseline)", all_layers_test, data, options)
        basis = _timed(times, "basis", control_basis, chosen, data.labels.size)
        res = _timed(times, "residuals", residualise, data.values[order], data.labels[order], basis)
        _timed(
            times,
            "conditional test",
            conditional_test,
            res,
            serial.layout,
            n_permutations=options.permutations,
        )
        record = _timed(times, "Part 7 (all of it)", controls, profile, data, options)
    seconds = {k: statistics.median(v) for k, v in times.items()}
    baseline = seconds["Part 6 (baseline)"]
    return {
        "n_tokens": int(data.labels.size),
        "n_layers": int(data.values.shape[1]),
        "permutations": options.permutations,
        "basis_columns": record.adjustment.rank,
        "seconds": seconds,
        "over_part6": {k: v / baseline for k, v in seconds.items() if k != "Part 6 (baseline)"},
        "runs": times,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small size, one repeat")
    parser.add_argument("--table", help="a token table to time instead of synthetic ones")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="the JSON file (default: benchmarks/results/...)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        size = json.loads(args.child)
        print(json.dumps(measure(size, args.table, args.repeats)))
        return
    sizes = QUICK if args.quick else SIZES
    repeats = 1 if args.quick else args.repeats
    results = {
        "benchmark": "bench_controls",
        "command": " ".join(["benchmarks/bench_controls.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "sizes": {},
    }
    for name, size in sizes.items():
        command = [sys.executable, __file__, "--child", json.dumps(size), "--repeats", str(repeats)]
        if args.table:
            command += ["--table", args.table]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results["sizes"][name] = json.loads(out.strip().splitlines()[-1])
        if args.table:
            break  # a real table has one size
    print(f"{'size':<12} {'tokens':>7} {'layers':>6} {'perms':>6} {'basis':>6}  stage seconds")
    for name, r in results["sizes"].items():
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r["seconds"].items())
        print(
            f"{name:<12} {r['n_tokens']:>7,} {r['n_layers']:>6} {r['permutations']:>6,} "
            f"{r['basis_columns']:>6}  {stages}; Part 7 / Part 6 "
            f"{r['over_part6']['Part 7 (all of it)']:.2f}x"
        )
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / ("bench_controls_quick.json" if args.quick else "bench_controls.json")
    if args.out:
        path = Path(args.out)
    from lamina._io import atomic_open

    with atomic_open(path) as fh:
        json.dump(results, fh, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
