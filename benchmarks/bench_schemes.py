"""Benchmark Part 6 with the circular-shift null against the exchangeable one.

Part 6's all-layer test (JS, 30 robust bins, the count backend ``auto`` picks)
on one token table, once with ``--scheme exchangeable`` (the baseline: uniform
relabellings) and once with ``--scheme shift`` (the default: circular shifts
of the labels within windows), runs interleaved, each in a fresh process with
torch imported first (as in ``lamina run``), medians of ``--repeats``. The
target (issue: dependence-aware tests): the shift scheme within 1.5x of the
exchangeable one on the whole book (39,060 tokens x 30 layers x 10,000
permutations: ``lamina extract --windows all --out book.parquet`` on the defaults).

Writes ``benchmarks/results/bench_schemes.json``; never asserts timings.

    .venv/bin/python benchmarks/bench_schemes.py --table lamina-book/tokens.parquet
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import machine_info  # noqa: E402

SCHEMES = ("exchangeable", "shift")


def child(table_path: str, scheme: str, permutations: int) -> dict:
    import torch  # noqa: F401  (as lamina run: the count backends may use it)

    from lamina.study.options import StudyOptions
    from lamina.study.parts.profile import all_layers_test
    from lamina.study.prepare import prepare_table
    from lamina.table import read_table

    options = StudyOptions(permutations=permutations, scheme=scheme)
    data = prepare_table(read_table(table_path), options)
    started = time.perf_counter()
    perm = all_layers_test(data, options)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "backend": perm.backend,
        "scheme": perm.scheme,
        "n_tokens": int(data.labels.size),
        "n_layers": int(data.values.shape[1]),
        "exact": bool(perm.exact),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", required=True, help="a token table")
    parser.add_argument("--permutations", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.table, args.child[0], int(args.child[1]))))
        return
    runs: dict[str, list[dict]] = {s: [] for s in SCHEMES}
    for _ in range(args.repeats):
        for scheme in SCHEMES:
            command = [sys.executable, __file__, "--child", scheme, str(args.permutations)]
            command += ["--table", args.table]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            runs[scheme].append(json.loads(out.strip().splitlines()[-1]))
    medians = {s: statistics.median(r["seconds"] for r in runs[s]) for s in SCHEMES}
    result = {
        "benchmark": "bench_schemes",
        "command": " ".join(["benchmarks/bench_schemes.py", *sys.argv[1:]]),
        "machine": machine_info(),
        "table": args.table,
        "permutations": args.permutations,
        "median_seconds": medians,
        "shift_over_exchangeable": medians["shift"] / medians["exchangeable"],
        "runs": runs,
    }
    first = runs["shift"][0]
    print(
        f"{first['n_tokens']:,} tokens x {first['n_layers']} layers x {args.permutations:,} "
        f"permutations, backend {first['backend']}: exchangeable {medians['exchangeable']:.2f} s, "
        f"shift {medians['shift']:.2f} s ({result['shift_over_exchangeable']:.2f}x; target <= 1.5x)"
    )
    path = HERE / "results" / "bench_schemes.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
