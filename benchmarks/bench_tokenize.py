"""Memory of tokenising a large text: lamina's pieces against one call on the whole text.

Each variant runs in a fresh process that has loaded the embedded SmolLM2 tokenizer and
built the text (``--copies`` copies of Alice, the pre-seeded cache, so no network); the
peak RSS above that baseline, while tokenising, is divided by the tokens produced:
memory per million tokens. Variants:

* ``pieces``: ``lamina.capture.tokenize`` (int64 ids kept, pieces of ~128K characters);
* ``whole``: ``tokenizer(text)``, lamina's way before pieces (and every script's);
* ``max_tokens``: what ``lamina extract --windows all --max-tokens 1000`` tokenises
  (``token_stream``): a prefix, whatever the text's length;
* ``middle``: what ``--windows middle`` (``lamina run``'s default) tokenises: the whole
  text counted piece by piece, one window kept.

Nothing is asserted; a table is printed and the JSON goes to
``benchmarks/results/bench_tokenize.json``::

    .venv/bin/python benchmarks/bench_tokenize.py            # 100 copies (~15 MB, ~4M tokens)
    .venv/bin/python benchmarks/bench_tokenize.py --quick    # 2 copies, a smoke test
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = ("pieces", "whole", "max_tokens", "middle")

_CHILD = r"""
import gc, json, sys, time
from pathlib import Path

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

from transformers import AutoTokenizer
from lamina.capture.tokens import token_stream, tokenize
from lamina.sources import load_text
from lamina.sources.gguf import embedded_gguf_path, ensure_gguf_cache

folder, _ = ensure_gguf_cache(embedded_gguf_path("smollm2-135m"), label="smollm2-135m",
                              progress=False)
tokenizer = AutoTokenizer.from_pretrained(folder)
tokenizer("warm up", add_special_tokens=False)
text = "\n\n".join([load_text("gutenberg:11").text] * {copies})
gc.collect()
baseline = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # the peak restarts from here
start = time.perf_counter()
variant = {variant!r}
if variant == "pieces":
    ids = tokenize(tokenizer, text)
    n_kept, n_tokens = ids.size, ids.size
elif variant == "whole":
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    n_kept, n_tokens = len(ids), len(ids)
elif variant == "max_tokens":
    stream = token_stream(tokenizer, text, mode="all", window=1024, max_tokens=1000)
    n_kept, n_tokens = stream.ids.size, stream.n_tokens
else:
    stream = token_stream(tokenizer, text, mode="middle", window=1024, max_tokens=None)
    n_kept, n_tokens = stream.ids.size, stream.n_tokens
seconds = time.perf_counter() - start
print(json.dumps({{
    "variant": variant, "characters": len(text), "tokens_kept": int(n_kept),
    "tokens_in_text": None if n_tokens is None else int(n_tokens), "seconds": seconds,
    "rss_baseline_bytes": baseline, "peak_rss_bytes": status("VmHWM"),
}}))
"""


def run_variant(variant: str, copies: int) -> dict:
    code = _CHILD.format(variant=variant, copies=copies)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
    )
    if done.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["peak_above_baseline_bytes"] = result["peak_rss_bytes"] - result["rss_baseline_bytes"]
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=100, help="copies of Alice (default 100)")
    parser.add_argument("--quick", action="store_true", help="2 copies: a smoke test")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args(argv)
    copies = 2 if args.quick else args.copies
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from machine import machine_info

    results = [run_variant(v, copies) for v in args.variants.split(",")]
    print(f"{copies} copies of Alice; peak RSS above the loaded baseline while tokenising")
    print(
        f"{'variant':<11} {'chars':>11} {'tokens':>10} {'kept':>9} {'MiB':>8} "
        f"{'MiB/M tokens':>13} {'s':>7}"
    )
    for r in results:
        tokens = r["tokens_in_text"] or r["tokens_kept"]
        mib = r["peak_above_baseline_bytes"] / 2**20
        per_million = mib / (tokens / 1e6)
        r["mib_per_million_tokens"] = per_million
        print(
            f"{r['variant']:<11} {r['characters']:>11,} {tokens:>10,} {r['tokens_kept']:>9,} "
            f"{mib:>8.1f} {per_million:>13.1f} {r['seconds']:>7.2f}"
        )
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        record = {"machine": machine_info(), "copies": copies, "results": results}
        (RESULTS / "bench_tokenize.json").write_text(json.dumps(record, indent=1) + "\n")
        print(f"-> {RESULTS / 'bench_tokenize.json'}")


if __name__ == "__main__":
    main()
