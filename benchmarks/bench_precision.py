"""The whole book in bfloat16 against float32 on this CPU, end to end.

``lamina run --windows stream --permutations 10000 --no-reuse`` on all of Alice with the
embedded SmolLM2-135M, in a fresh process per run, ``--dtype float32`` and ``--dtype
bfloat16`` interleaved ``--repeats`` times; medians, the ratio within the same rounds, and the
stages each run records in ``results.json`` (load, extraction, analysis, figures, report).

``--avx2`` adds the same two runs with torch capped at AVX2 (``ATEN_CPU_CAPABILITY=avx2``,
``ONEDNN_MAX_CPU_ISA=AVX2``: no AVX-512, no native bfloat16), as a stand-in for an AVX2-only
CPU, and ``--dtype auto`` there (which must stay float32: the measured product is slower in
bfloat16 when emulated). The CPU's name and flags are recorded with the figures.

Nothing is asserted; the JSON goes to ``benchmarks/results/bench_precision.json``::

    .venv/bin/python benchmarks/bench_precision.py --repeats 3
    .venv/bin/python benchmarks/bench_precision.py --repeats 1 --avx2 --max-tokens 8000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_info

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
VENV_BIN = Path(sys.executable).parent
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def one_run(dtype: str, args: argparse.Namespace, env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cmd = [
            str(VENV_BIN / "lamina"), "run", "--windows", "stream", "--permutations",
            str(args.permutations), "--no-reuse", "--no-progress", "--dtype", dtype,
            "--out", str(out),
        ]  # fmt: skip
        if args.max_tokens:
            cmd += ["--max-tokens", str(args.max_tokens)]
        started = time.perf_counter()
        done = subprocess.run(
            cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, check=False
        )
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        results = json.loads((out / "results.json").read_text())
    model = results["part1"]["model"]
    return {
        "seconds": seconds,
        "timings": results.get("timings"),
        "dtype": model["dtype"],
        "dtype_reason": model.get("dtype_reason"),
        "n_tokens": results["part2"]["n_tokens"],
        "accuracy": results["part2"]["accuracy"],
    }


def measure(args: argparse.Namespace, variants: list[tuple[str, str, dict]]) -> dict:
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in variants}
    for repeat in range(args.repeats):
        for name, dtype, env in variants:
            run = one_run(dtype, args, env)
            runs[name].append(run)
            print(
                f"  {name:<16} #{repeat + 1}: {run['seconds']:.1f} s (extraction "
                f"{run['timings']['extraction']:.1f} s, ran in {run['dtype']})",
                flush=True,
            )
    summary = {}
    for name, results in runs.items():
        summary[name] = {
            "seconds_median": statistics.median(r["seconds"] for r in results),
            "extraction_median": statistics.median(r["timings"]["extraction"] for r in results),
            "dtype": results[0]["dtype"],
            "dtype_reason": results[0]["dtype_reason"],
            "accuracy": results[0]["accuracy"],
            "n_tokens": results[0]["n_tokens"],
        }
    return {"runs": runs, "summary": summary}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--permutations", type=int, default=10_000)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--avx2", action="store_true", help="add runs capped at AVX2")
    p.add_argument("--skip-native", action="store_true", help="only the AVX2 runs")
    p.add_argument("--output", default="bench_precision.json")
    args = p.parse_args(argv)
    variants = []
    if not args.skip_native:
        variants += [("float32", "float32", {}), ("bfloat16", "bfloat16", {})]
    if args.avx2 or args.skip_native:
        variants += [
            ("avx2 float32", "float32", AVX2),
            ("avx2 bfloat16", "bfloat16", AVX2),
            ("avx2 auto", "auto", AVX2),
        ]
    result = {"machine": machine_info(), "command": " ".join(sys.argv), "args": vars(args)}
    result.update(measure(args, variants))
    base = {"float32": "float32", "avx2": "avx2 float32"}
    print("\n| run | dtype | seconds | extraction s | ratio to float32 (same CPU cap) |")
    print("|---|---|---|---|---|")
    for name, s in result["summary"].items():
        ref = result["summary"].get(base["avx2" if name.startswith("avx2") else "float32"])
        ratio = s["seconds_median"] / ref["seconds_median"] if ref else float("nan")
        print(
            f"| {name} | {s['dtype']} | {s['seconds_median']:.1f} | "
            f"{s['extraction_median']:.1f} | {ratio:.2f} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / args.output).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"\nwritten to {RESULTS / args.output}")


if __name__ == "__main__":
    main()
