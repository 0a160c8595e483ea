"""`lamina run` on its defaults against the reference notebook's own computation.

Both run the same study (embedded SmolLM2-135M-Instruct, Alice, the middle
1024-token window, attention-output norms, 30 layers, 1000 permutations) on
the same machine, interleaved, ``--repeats`` times each; the table reports
medians. Three numbers per side:

* end to end: a fresh process from start to the last file written
  (``lamina run --no-reuse`` vs ``benchmarks/notebook_study.py``, whose two
  permutation loops run ``--notebook-permutations`` times and are scaled to
  1000: every permutation costs the same);
* after the forward pass: Parts 2-6 with figures and report. lamina:
  ``analyze_table`` + ``write_outputs`` in a fresh process that has imported
  torch and transformers; "as in run" after ``lamina.pipeline.prewarm()`` (which
  ``lamina run`` runs in a thread while the model loads, so scipy's and
  matplotlib's imports overlap the load), "cold" without it (imports counted),
  "warm" on later calls. Notebook: its Parts 2-6 cells, loops scaled;
* model load and forward pass, as each side reports them.

And the whole book against the notebook's single window (``--skip-book`` leaves it
out): ``lamina run --windows stream --permutations 10000`` in a fresh process,
every token of Alice scored once with its left context, every part, figure and
the report, against the notebook's end to end above (1,024 tokens, 1,000
permutations), in the same rounds; with the stage timings the run records in
``results.json``.

Nothing is asserted; the JSON goes to ``benchmarks/results/bench_study.json``::

    .venv/bin/python benchmarks/bench_study.py --repeats 3
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
RESULTS = ROOT / "benchmarks" / "results" / "bench_study.json"
VENV_BIN = Path(sys.executable).parent


def _timed(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def run_notebook(permutations: int) -> dict:
    wall, out = _timed(
        [sys.executable, "benchmarks/notebook_study.py", "--permutations", str(permutations)]
    )
    timings = json.loads(out.strip().splitlines()[-1])
    scale = 1000 / permutations
    loops = timings["permutation_loops_measured"]
    timings["wall_scaled"] = wall + loops * (scale - 1)
    timings["wall_measured"] = wall
    return timings


def run_lamina(out_dir: Path, *extra: str) -> dict:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    wall, _ = _timed(
        [
            str(VENV_BIN / "lamina"),
            "run",
            "--out",
            str(out_dir),
            "--no-reuse",
            "--no-progress",
            *extra,
        ],
        env=env,
    )
    results = json.loads((out_dir / "results.json").read_text())
    return {
        "wall": wall,
        "timings": results.get("timings"),
        "n_tokens": results["part2"]["n_tokens"],
        "n_permutations": results["part6"]["n_permutations"],
    }


#: The whole book, every token scored once and fed once, 10,000 permutations.
BOOK_ARGS = ("--windows", "stream", "--permutations", "10000")


ANALYSIS_SNIPPET = """
import json, sys, tempfile, time
import torch, transformers  # already imported by `lamina run` when its analysis starts
from lamina.capture import extract  # noqa: F401
from lamina.table import read_table
from lamina.pipeline import prewarm, write_outputs
from lamina.study import StudyOptions, analyze_table
table = read_table(sys.argv[1])
if sys.argv[3] == "prewarmed":
    prewarm().join()  # `lamina run` does this while the model loads
seconds = []
for _ in range(int(sys.argv[2])):
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        result = analyze_table(table, StudyOptions(), table_path="tokens.parquet")
        t_analysis = time.perf_counter() - t
        write_outputs(result, out)
        seconds.append((time.perf_counter() - t, t_analysis))
print(json.dumps(seconds))
"""


def run_analysis(table: Path, repeats: int) -> dict:
    """Seconds of analyze_table + write_outputs in fresh processes.

    ``as_in_run``: first call after ``prewarm()`` (the state ``lamina run`` is in
    when its forward pass ends); ``cold``: first call with nothing imported
    beyond torch and transformers; ``warm``: later calls in the same process.
    """
    results = {}
    for mode in ("prewarmed", "cold"):
        _, out = _timed([sys.executable, "-c", ANALYSIS_SNIPPET, str(table), str(repeats), mode])
        results[mode] = json.loads(out.strip().splitlines()[-1])
    return {
        "as_in_run": results["prewarmed"][0][0],
        "as_in_run_analysis_only": results["prewarmed"][0][1],
        "cold": results["cold"][0][0],
        "cold_analysis_only": results["cold"][0][1],
        "warm": [s[0] for s in results["prewarmed"][1:]],
        "warm_analysis_only": [s[1] for s in results["prewarmed"][1:]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--notebook-permutations", type=int, default=10)
    parser.add_argument("--skip-book", action="store_true", help="leave out the whole book")
    args = parser.parse_args()

    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        # One untimed run: builds the embedded model's safetensors cache if missing.
        _timed(
            [str(VENV_BIN / "lamina"), "run", "--out", str(Path(tmp) / "warmup"), "--no-progress"]
        )
        for i in range(args.repeats):
            notebook = run_notebook(args.notebook_permutations)
            lamina = run_lamina(Path(tmp) / f"run{i}")
            analysis = run_analysis(Path(tmp) / f"run{i}" / "tokens.parquet", 3)
            rounds.append({"notebook": notebook, "lamina": lamina, "analysis": analysis})
            if not args.skip_book:
                rounds[-1]["book"] = run_lamina(Path(tmp) / f"book{i}", *BOOK_ARGS)
                book = rounds[-1]["book"]
                print(
                    f"round {i + 1}: whole book ({book['n_tokens']:,} tokens, "
                    f"{book['n_permutations']:,} permutations) {book['wall']:.1f} s: "
                    + ", ".join(f"{k} {v:.1f} s" for k, v in (book["timings"] or {}).items()),
                    file=sys.stderr,
                )
            print(
                f"round {i + 1}: notebook {notebook['wall_scaled']:.1f} s end to end "
                f"(parts 2-6 {notebook['parts_2_6']:.1f} s), lamina run {lamina['wall']:.1f} s "
                f"(after forward {analysis['as_in_run']:.2f} s as in a run, "
                f"{analysis['cold']:.2f} s cold)",
                file=sys.stderr,
            )

    med = statistics.median
    nb_e2e = med(r["notebook"]["wall_scaled"] for r in rounds)
    nb_parts = med(r["notebook"]["parts_2_6"] for r in rounds)
    nb_load = med(r["notebook"]["load"] for r in rounds)
    nb_forward = med(r["notebook"]["forward"] for r in rounds)
    la_e2e = med(r["lamina"]["wall"] for r in rounds)
    la_after_run = med(r["analysis"]["as_in_run"] for r in rounds)
    la_after_cold = med(r["analysis"]["cold"] for r in rounds)
    la_after_warm = med(s for r in rounds for s in r["analysis"]["warm"])
    summary = {
        "notebook_end_to_end_s": nb_e2e,
        "notebook_load_s": nb_load,
        "notebook_forward_s": nb_forward,
        "notebook_parts_2_6_s": nb_parts,
        "lamina_run_end_to_end_s": la_e2e,
        "lamina_after_forward_as_in_run_s": la_after_run,
        "lamina_after_forward_cold_s": la_after_cold,
        "lamina_after_forward_warm_s": la_after_warm,
        "speedup_end_to_end": nb_e2e / la_e2e,
        "speedup_after_forward_as_in_run": nb_parts / la_after_run,
        "speedup_after_forward_cold": nb_parts / la_after_cold,
        "speedup_after_forward_warm": nb_parts / la_after_warm,
    }
    if not args.skip_book:
        book = med(r["book"]["wall"] for r in rounds)
        stages = {
            k: med(r["book"]["timings"][k] for r in rounds) for k in rounds[0]["book"]["timings"]
        }
        summary.update(
            lamina_whole_book_s=book,
            lamina_whole_book_tokens=rounds[0]["book"]["n_tokens"],
            lamina_whole_book_stages_s=stages,
            notebook_window_over_whole_book=nb_e2e / book,
        )
    rows = [
        ("end to end (fresh process)", nb_e2e, la_e2e),
        ("Parts 2-6, figures, report (as in run)", nb_parts, la_after_run),
        ("Parts 2-6, figures, report (cold)", nb_parts, la_after_cold),
        ("Parts 2-6, figures, report (warm)", nb_parts, la_after_warm),
    ]
    print(f"{'stage':<36} {'notebook s':>11} {'lamina s':>10} {'speed-up':>9}")
    for name, nb, la in rows:
        print(f"{name:<36} {nb:>11.2f} {la:>10.2f} {nb / la:>8.1f}x")
    print(f"notebook model load {nb_load:.1f} s, forward {nb_forward:.1f} s (medians)")
    if not args.skip_book:
        print(
            f"whole book (lamina run {' '.join(BOOK_ARGS)}, "
            f"{summary['lamina_whole_book_tokens']:,} tokens): {summary['lamina_whole_book_s']:.1f} s"
            f" vs the notebook's one window {nb_e2e:.1f} s: "
            f"{summary['notebook_window_over_whole_book']:.2f}x; stages "
            + ", ".join(f"{k} {v:.1f} s" for k, v in summary["lamina_whole_book_stages_s"].items())
        )
    report = {
        "benchmark": "bench_study",
        "machine": machine_info(),
        "repeats": args.repeats,
        "notebook_permutations_measured": args.notebook_permutations,
        "summary": summary,
        "rounds": rounds,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, RESULTS)
    print(f"written {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
