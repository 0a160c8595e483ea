"""Benchmark lamina's permutation engine against the reference notebook's loop and scipy.

Three comparisons, each in one process on the same data, runs interleaved,
medians of several repeats, ratios against the baseline measured in the same
run:

1. notebook: the reference study's Part 6 loop (``benchmarks/notebook_loop.py``,
   torch, norms recomputed per permutation) on 1,024 tokens x 30 layers of
   gpt2-large-sized attention outputs (d = 1280), run with k permutations per
   layer. Per layer the loop does k + 1 identical units of work (the observed
   split and k permuted ones: two norms and one ``symmetric_KL`` each), so its
   time at 1,000 permutations is estimated as ``t_k * 1001 / (k + 1)``.
   Against it, lamina computing the log-norms once from the same activations
   and testing all 30 layers with 1,000 shared permutations.
2. scipy: ``scipy.stats.permutation_test(vectorized=True)`` with the same
   statistic (JS divergence on the same per-layer 30-bin edges, vectorized with
   one bincount per batch) on the same 30 layers' log-norms, 1,000
   permutations, against lamina's engine on the same log-norms.
3. scale: 40,000 tokens x 36 layers x 10,000 permutations (a whole book on
   gpt2-large), each run in a fresh subprocess that reports its resident memory
   before the test and its peak during it (``VmRSS`` / ``VmHWM`` from
   ``/proc/self/status``, the peak reset just before the test).

Prints a table and writes JSON to ``benchmarks/results/bench_permutation.json``
(``--quick``: fewer repeats and a 1,000-permutation scale run, written to
``bench_permutation_quick.json``). Never asserts timings.

    .venv/bin/python benchmarks/bench_permutation.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.stats
import torch
from scipy.special import rel_entr

from lamina import backends as count_backends
from lamina import stats
from lamina._io import atomic_open

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import notebook_loop  # noqa: E402  (the transcription lives beside this script)
from machine import machine_info  # noqa: E402

N_TOKENS, N_LAYERS, D_MODEL = 1024, 30, 1280
N_PERMUTATIONS = 1000
BINS = 30


def machine() -> dict:
    return {
        **machine_info(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "lamina_backend_auto": count_backends.resolve_backend("auto"),
    }


def synthetic_study(seed: int = 0):
    """gpt2-large-sized attention outputs for 1,024 tokens x 30 layers, and accuracies."""
    rng = np.random.default_rng(seed)
    correct = rng.random(N_TOKENS) < 0.48
    acts = {}
    for layer in range(N_LAYERS):
        scale = np.exp(
            rng.normal(0, 0.25, (1, N_TOKENS, 1)) + 0.05 * layer * correct[None, :, None]
        )
        x = rng.normal(size=(1, N_TOKENS, D_MODEL)) * scale
        acts[f"attn_L{layer}"] = torch.from_numpy(x.astype(np.float32))
    return acts, correct


def timed(func) -> tuple[float, object]:
    start = time.perf_counter()
    out = func()
    return time.perf_counter() - start, out


def lamina_from_activations(acts, correct, backend="auto", n_permutations=N_PERMUTATIONS):
    """What lamina does: one log-norm per token and layer, then one engine call."""
    log_norms = np.stack(
        [torch.norm(acts[f"attn_L{j}"][0], dim=-1).log().numpy() for j in range(N_LAYERS)], axis=1
    )
    return stats.permutation_test(
        log_norms, correct, bins=BINS, n_permutations=n_permutations, seed=0, backend=backend
    )


def scipy_js(log_norms, correct, n_permutations=N_PERMUTATIONS):
    """scipy.stats.permutation_test with JS on lamina's per-layer shared edges."""
    bins = np.empty(log_norms.shape, dtype=np.int64)
    for j in range(log_norms.shape[1]):
        edges = stats.bin_edges(log_norms[:, j], BINS)
        bins[:, j] = stats.bin_indices(log_norms[:, j], edges)

    def counts(a):  # (..., n_group) bin indices -> (..., BINS) counts, one bincount
        flat = a.reshape(-1, a.shape[-1])
        offsets = np.arange(flat.shape[0])[:, None] * BINS
        out = np.bincount((flat + offsets).ravel(), minlength=flat.shape[0] * BINS)
        return out.reshape((*a.shape[:-1], BINS))

    def js(a, b, axis=-1):
        a = np.moveaxis(a, axis, -1).astype(np.int64)
        b = np.moveaxis(b, axis, -1).astype(np.int64)
        p = counts(a) / a.shape[-1]
        q = counts(b) / b.shape[-1]
        mix = 0.5 * (p + q)
        return 0.5 * (rel_entr(p, mix) + rel_entr(q, mix)).sum(axis=-1)

    return scipy.stats.permutation_test(
        (bins[correct].T, bins[~correct].T),
        js,
        vectorized=True,
        n_resamples=n_permutations,
        alternative="greater",
        axis=-1,
        rng=np.random.default_rng(0),
    )


SCALE_CHILD = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from lamina import stats

    def status(key):  # kB from /proc/self/status (Linux)
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return -1

    n, L, m, backend = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    rng = np.random.default_rng(1)
    correct = rng.random(n) < 0.48
    values = (rng.normal(size=(n, L)) + 0.05 * correct[:, None]).astype(np.float32)
    stats.permutation_test(values[:200], correct[:200], n_permutations=2, backend=backend)
    rss_before = status("VmRSS")
    try:  # reset the peak (VmHWM) to the current RSS, Linux >= 4.0
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    start = time.perf_counter()
    res = stats.permutation_test(values, correct, n_permutations=m, seed=0, backend=backend)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rss_before_mib": rss_before / 1024,
                      "rss_peak_mib": status("VmHWM") / 1024, "backend": res.backend,
                      "min_pvalue": float(res.pvalue.min())}))
    """
)


def scale_run(n, n_layers, m, backend) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", SCALE_CHILD, str(n), str(n_layers), str(m), backend],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller scale run")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 5
    notebook_perms = 3 if args.quick else 10
    scale_m = 1000 if args.quick else 10_000
    scale_repeats = 1 if args.quick else 3
    backends = ["numpy"] + (["torch"] if count_backends.torch_int_mm_available() else [])

    info = machine()
    acts, correct = synthetic_study()
    log_norms = np.stack(
        [torch.norm(acts[f"attn_L{j}"][0], dim=-1).log().numpy() for j in range(N_LAYERS)], axis=1
    )
    lamina_from_activations(acts, correct)  # warm-up (imports, torch probe)

    times: dict[str, list[float]] = {"notebook_k_permutations": []}
    for b in backends:
        times[f"lamina_{b}"] = []
        times[f"lamina_engine_{b}"] = []
    times["scipy"] = []
    times["lamina_seed_mode"] = []
    check = {}
    for _ in range(repeats):
        # the notebook loop, all 30 layers, k permutations per layer
        np.random.seed(0)  # noqa: NPY002 (the notebook uses numpy's global state)
        t, _ = timed(
            lambda: notebook_loop.permutation_loop(acts, correct, N_LAYERS, notebook_perms)
        )
        times["notebook_k_permutations"].append(t)
        for b in backends:
            t, res = timed(lambda b=b: lamina_from_activations(acts, correct, backend=b))
            times[f"lamina_{b}"].append(t)
            t, res = timed(
                lambda b=b: stats.permutation_test(
                    log_norms, correct, bins=BINS, n_permutations=N_PERMUTATIONS, backend=b
                )
            )
            times[f"lamina_engine_{b}"].append(t)
        t, ref = timed(lambda: scipy_js(log_norms, correct))
        times["scipy"].append(t)
        t, _ = timed(
            lambda: stats.permutation_test(
                log_norms, correct, n_permutations=N_PERMUTATIONS, compat="notebook"
            )
        )
        times["lamina_seed_mode"].append(t)
        check = {
            "observed_js_max_abs_diff_vs_scipy": float(np.abs(res.statistic - ref.statistic).max()),
            "pvalue_max_abs_diff_vs_scipy": float(np.abs(res.pvalue - ref.pvalue).max()),
        }

    med = {k: statistics.median(v) for k, v in times.items()}
    # k + 1 units of work per layer (observed + k permutations): scale per unit
    unit = med["notebook_k_permutations"] / (N_LAYERS * (notebook_perms + 1))
    per_permutation = unit * N_LAYERS
    notebook_1000 = unit * N_LAYERS * (N_PERMUTATIONS + 1)
    auto_backend = count_backends.resolve_backend("auto")
    auto = med[f"lamina_{auto_backend}"]
    auto_engine = med[f"lamina_engine_{auto_backend}"]

    scale = {}
    for b in backends:
        runs = [scale_run(40_000, 36, scale_m, b) for _ in range(scale_repeats)]
        scale[b] = {
            "seconds_median": statistics.median(r["seconds"] for r in runs),
            "seconds_all": [r["seconds"] for r in runs],
            "rss_before_mib": max(r["rss_before_mib"] for r in runs),
            "rss_peak_mib": max(r["rss_peak_mib"] for r in runs),
        }

    result = {
        "benchmark": "bench_permutation",
        "quick": args.quick,
        "machine": info,
        "config": {
            "tokens": N_TOKENS,
            "layers": N_LAYERS,
            "d_model": D_MODEL,
            "bins": BINS,
            "permutations": N_PERMUTATIONS,
            "repeats": repeats,
            "notebook_permutations_per_layer_run": notebook_perms,
            "scale": {"tokens": 40_000, "layers": 36, "permutations": scale_m},
        },
        "medians_seconds": {
            f"notebook_loop_{notebook_perms}_permutations_per_layer": med[
                "notebook_k_permutations"
            ],
            "notebook_loop_per_split_2_norms_and_symmetric_kl": unit,
            "notebook_loop_per_permutation_all_layers": per_permutation,
            "notebook_loop_estimated_1000_permutations": notebook_1000,
            **{f"lamina_{b}_from_activations_1000": med[f"lamina_{b}"] for b in backends},
            **{f"lamina_{b}_engine_1000": med[f"lamina_engine_{b}"] for b in backends},
            "lamina_seed_mode_1000": med["lamina_seed_mode"],
            "scipy_permutation_test_1000": med["scipy"],
        },
        "all_seconds": times,
        "ratios": {
            "notebook_over_lamina_auto": notebook_1000 / auto,
            **{f"notebook_over_lamina_{b}": notebook_1000 / med[f"lamina_{b}"] for b in backends},
            "scipy_over_lamina_engine_auto": med["scipy"] / auto_engine,
            **{
                f"scipy_over_lamina_engine_{b}": med["scipy"] / med[f"lamina_engine_{b}"]
                for b in backends
            },
        },
        "scale": scale,
        "agreement": check,
    }
    name = "bench_permutation_quick.json" if args.quick else "bench_permutation.json"
    path = HERE / "results" / name
    with atomic_open(path) as fh:
        json.dump(result, fh, indent=2)

    print(
        f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, "
        f"numpy {info['numpy']}, scipy {info['scipy']}, load {info['load_average_at_start']}"
    )
    print(f"1,024 tokens x 30 layers x 1,000 permutations (median of {repeats}):")
    print(
        f"  {'notebook loop (estimated)':40s} {notebook_1000:9.1f} s   "
        f"({unit * 1e3:.1f} ms per split: 2 norms + symmetric_KL)"
    )
    for b in backends:
        print(
            f"  {'lamina from activations, ' + b:40s} {med[f'lamina_{b}']:9.3f} s   "
            f"notebook/lamina {notebook_1000 / med[f'lamina_{b}']:7.0f}x"
        )
    for b in backends:
        print(
            f"  {'lamina engine on log-norms, ' + b:40s} {med[f'lamina_engine_{b}']:9.3f} s   "
            f"scipy/lamina {med['scipy'] / med[f'lamina_engine_{b}']:6.1f}x"
        )
    print(f"  {'scipy.stats.permutation_test':40s} {med['scipy']:9.3f} s")
    print(f"  {'lamina compat=notebook (its statistic)':40s} {med['lamina_seed_mode']:9.3f} s")
    print(f"40,000 tokens x 36 layers x {scale_m:,} permutations (fresh process each):")
    for b, s in scale.items():
        print(
            f"  {'lamina, backend=' + b:34s} {s['seconds_median']:10.2f} s   peak RSS "
            f"{s['rss_peak_mib']:.0f} MiB (before the test {s['rss_before_mib']:.0f} MiB)"
        )
    print(f"agreement with scipy: {check}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
