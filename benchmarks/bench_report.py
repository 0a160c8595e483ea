"""Every site in one run, and the size of the explorable report, on the default window and the book.

For each case (the default middle window of 1,024 tokens; the whole book,
``--windows all``, 39,060 tokens) the embedded SmolLM2-135M is run once over
Alice with every site captured (``--sites all``). Then, in this process and
interleaved ``--repeats`` times:

* the analysis of the primary site alone (Parts 1-6, ``attn_out``) and of
  every site (Parts 1-6 plus 2 more per-layer sites and 30 x 9 heads: 360
  tests corrected over the run), 1,000 permutations, median seconds;
* the outputs of the every-site run written once: ``report.html``'s size and
  what it is made of (embedded figures, the views' JSON data, the script).

Nothing is asserted; the JSON goes to ``benchmarks/results/bench_report.json``::

    .venv/bin/python benchmarks/bench_report.py --repeats 3     # ~10 min, most of it extraction
    .venv/bin/python benchmarks/bench_report.py --quick          # a tiny random model, seconds
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_info

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "bench_report.json"
SITES = ("mlp_out", "resid_post", "attn_head")


def tables(quick: bool) -> dict:
    """``{case: token table}`` with every site captured."""
    from lamina.capture import extract
    from lamina.sources import load_model, load_text

    if quick:
        sys.path.insert(0, str(ROOT / "tests"))
        from study.token_tables import tiny_study_text
        from tiny_models import tiny_loaded

        loaded, text = tiny_loaded("gpt2"), tiny_study_text()
        cases = {"default": {"windows": "middle"}, "book": {"windows": "all"}}
    else:
        loaded = load_model("smollm2-135m", device="cpu", progress=False)
        text = load_text("gutenberg:11")
        cases = {
            "default": {"windows": "middle", "window": 1024},
            "book": {"windows": "all", "window": 1024},
        }
    out = {}
    for case, windows in cases.items():
        started = time.perf_counter()
        out[case] = extract(loaded, text, sites="all", progress=False, **windows)
        print(
            f"{case}: extracted {out[case].num_rows:,} tokens in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
    return out


def report_parts(page: str) -> dict:
    """Bytes of the page and of what it embeds."""
    images = sum(len(m) for m in re.findall(r"data:image/png;base64,([^\"]+)", page))
    data = re.search(r'id="lamina-data">(.*?)</script>', page, re.S)
    script = re.search(r"<script>(.*?)</script>", page, re.S)
    return {
        "report_bytes": len(page.encode()),
        "figures_base64_bytes": images,
        "views_data_bytes": len(data.group(1).encode()) if data else 0,
        "script_bytes": len(script.group(1).encode()) if script else 0,
    }


def measure(case: str, table, repeats: int, quick: bool) -> dict:
    import dataclasses

    from lamina.pipeline import write_outputs
    from lamina.study import StudyOptions, analyze_table
    from lamina.study.token_view import token_view

    # the defaults (layer 4, 1,000 permutations); the tiny model has 2 layers
    single = StudyOptions(layer=1, permutations=99) if quick else StudyOptions()
    every = dataclasses.replace(single, sites=SITES)
    seconds: dict[str, list[float]] = {"primary_site": [], "every_site": []}
    result = None
    for _ in range(repeats):
        for name, options in (("primary_site", single), ("every_site", every)):
            started = time.perf_counter()
            result = analyze_table(table, options, created="x")
            seconds[name].append(time.perf_counter() - started)
    with tempfile.TemporaryDirectory() as tmp:
        outputs = write_outputs(result, tmp, token_view=token_view(table, every))
        page = outputs.report.read_text(encoding="utf-8")
    n_tests = result.sites.n_tests_run
    print(
        f"{case}: {table.num_rows:,} tokens, {n_tests} tests; analysis "
        f"{statistics.median(seconds['primary_site']):.2f} s (primary site) vs "
        f"{statistics.median(seconds['every_site']):.2f} s (every site); "
        f"report {len(page.encode()) / 1e6:.2f} MB",
        flush=True,
    )
    return {
        "n_tokens": table.num_rows,
        "n_tests_run": n_tests,
        "seconds_median": {k: statistics.median(v) for k, v in seconds.items()},
        "seconds": seconds,
        **report_parts(page),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tiny random model, 1 repeat")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    results = {
        case: measure(case, table, repeats, args.quick)
        for case, table in tables(args.quick).items()
    }
    if args.quick:
        print(json.dumps(results, indent=1))
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"machine": machine_info(), "repeats": repeats, "cases": results}, indent=1)
        + "\n"
    )
    print(f"-> {RESULTS}")


if __name__ == "__main__":
    main()
