"""Extraction with cross-fitted probe scores against extraction without, time and peak memory.

Each variant (``--probe none``, ``diffmeans``, ``lda``) runs ``lamina.capture.extract`` in a
fresh process on the same text and windows: the embedded SmolLM2-135M (float32, CPU) on
Alice, ``--windows all`` (W = 1,024, S = 512; ``--max-tokens`` caps the scored tokens), the
``attn_out`` site. The process loads the model, runs one short forward pass (so the
memory-mapped weights are resident), records its RSS, resets the peak, then extracts: the
figures are the extraction's wall time, its second pass's seconds (from the table's metadata),
and the peak RSS above the RSS with the model loaded; also the process's CPU seconds
(user + system) during the extraction, which other programs on a shared machine
disturb far less than the wall time (``--threads 1`` avoids torch's threads waiting on
one another). Variants are interleaved, ``--repeats`` times each; medians and the ratios
to ``none`` are printed and every run goes to
``benchmarks/results/bench_probe.json``. The default run's cost is measured the same way on
one ``middle`` window (``lamina run``'s default, where ``--probe auto`` probes). Nothing is
asserted::

    .venv/bin/python benchmarks/bench_probe.py --repeats 3 --variants none,diffmeans \
        --skip-middle --output bench_probe_book.json --save-table /tmp/book-probe.parquet
    .venv/bin/python benchmarks/bench_probe.py --max-tokens 8000
    .venv/bin/python benchmarks/bench_probe.py --quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from machine import machine_info

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = ("none", "diffmeans", "lda")

_CHILD = """
import json, resource, sys, time
from pathlib import Path
import torch
if {threads}:
    torch.set_num_threads({threads})
sys.path.insert(0, {bench_dir!r})
from bench_extract import peak_rss_bytes, reset_peak_rss, rss_bytes, touch_weights
from lamina.capture import extract
from lamina.sources import load_model, load_text

loaded = load_model({model!r}, device="cpu", progress=False)
text = load_text({text!r}).text
touch_weights(loaded)
after_load = rss_bytes()
reset_peak_rss()
started = time.perf_counter()
usage = resource.getrusage(resource.RUSAGE_SELF)
table = extract(
    loaded, text, windows={windows!r}, window={window}, max_tokens={max_tokens!r},
    sites=("attn_out",), probe={probe!r}, progress=False,
)
seconds = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
meta = json.loads(table.schema.metadata[b"lamina"])
print(json.dumps({{
    "seconds": seconds,
    "cpu_seconds": cpu,
    "threads": torch.get_num_threads(),
    "probe_seconds": (meta["extraction"].get("probe") or {{}}).get("seconds"),
    "rows": table.num_rows,
    "windows": meta["windows"]["n_windows"],
    "rss_after_load_bytes": after_load,
    "peak_rss_bytes": peak_rss_bytes(),
    "batch_size": meta["extraction"]["batch_size"],
}}), flush=True)
if {save!r}:  # after the figures: writing the table does not count in them
    from lamina.table import write_table
    write_table(table, {save!r})
"""


def run_variant(
    args: argparse.Namespace, probe: str, windows: str, max_tokens: int | None, save: str = ""
):
    code = _CHILD.format(
        save=save,
        bench_dir=str(Path(__file__).resolve().parent),
        model=args.model,
        text=args.text,
        windows=windows,
        window=args.window,
        max_tokens=max_tokens,
        probe=probe,
        threads=args.threads,
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"--probe {probe} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["peak_above_model_bytes"] = result["peak_rss_bytes"] - result["rss_after_load_bytes"]
    return result


def measure(args: argparse.Namespace, windows: str, max_tokens: int | None, variants) -> dict:
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for repeat in range(args.repeats):
        for probe in variants:
            save = args.save_table if (repeat, probe, windows) == (0, "diffmeans", "all") else ""
            result = run_variant(args, probe, windows, max_tokens, save or "")
            runs[probe].append(result)
            print(
                f"  {windows} {probe:9s} #{repeat + 1}: {result['seconds']:.1f} s "
                f"({result['cpu_seconds']:.1f} CPU s), peak "
                f"{result['peak_above_model_bytes'] / 2**20:.0f} MiB above the model",
                flush=True,
            )
    base = statistics.median(r["seconds"] for r in runs["none"])
    base_cpu = statistics.median(r["cpu_seconds"] for r in runs["none"])
    summary = {}
    for probe, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        cpu = statistics.median(r["cpu_seconds"] for r in results)
        summary[probe] = {
            "seconds_median": seconds,
            "ratio_to_none": seconds / base,
            "cpu_seconds_median": cpu,
            "cpu_ratio_to_none": cpu / base_cpu,
            "probe_seconds_median": statistics.median(r["probe_seconds"] or 0 for r in results),
            "peak_above_model_bytes_max": max(r["peak_above_model_bytes"] for r in results),
            "rss_after_load_bytes": results[0]["rss_after_load_bytes"],
            "rows": results[0]["rows"],
            "windows": results[0]["windows"],
        }
    return {"runs": runs, "summary": summary}


def _print(title: str, measured: dict) -> None:
    print(f"\n{title}")
    print(
        "| --probe | seconds | ratio to none | CPU seconds | CPU ratio | second pass s "
        "| peak RSS above model |"
    )
    print("|---|---|---|---|---|---|---|")
    for probe, s in measured["summary"].items():
        print(
            f"| {probe} | {s['seconds_median']:.1f} | {s['ratio_to_none']:.2f} | "
            f"{s['cpu_seconds_median']:.1f} | {s['cpu_ratio_to_none']:.2f} | "
            f"{s['probe_seconds_median']:.1f} | {s['peak_above_model_bytes_max'] / 2**20:.0f} MiB |"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--text", default="gutenberg:11")
    p.add_argument("--window", type=int, default=1024)
    p.add_argument("--max-tokens", type=int, default=None, help="cap on the whole-text rows")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--skip-middle", action="store_true", help="skip the middle-window runs")
    p.add_argument("--quick", action="store_true", help="2,000 tokens, one repeat")
    p.add_argument(
        "--save-table",
        default="",
        help="write the first diffmeans whole-text table here (after its timing), for analysis",
    )
    p.add_argument("--output", default="", help="results file name (default bench_probe.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.max_tokens, args.repeats = 2000, 1
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    if "none" not in variants:
        variants.insert(0, "none")
    result = {"machine": machine_info(), "command": " ".join(sys.argv), "args": vars(args)}
    result["whole_text"] = measure(args, "all", args.max_tokens, variants)
    _print(f"--windows all (max tokens {args.max_tokens})", result["whole_text"])
    if not args.skip_middle:
        result["middle"] = measure(args, "middle", None, ["none", "diffmeans"])
        _print("--windows middle (the default run)", result["middle"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = args.output or ("bench_probe_quick.json" if args.quick else "bench_probe.json")
    (RESULTS / name).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"\nwritten to {RESULTS / name}")


if __name__ == "__main__":
    main()
