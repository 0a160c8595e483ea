"""Extraction speed and memory against a bare forward pass, on the same windows.

Three measurements (nothing is asserted; a table is printed and the JSON goes to
``benchmarks/results/bench_extract.json``):

* **speed**: ``lamina.capture.extract`` over the first ``--n-windows`` windows of
  ``--windows all`` (W = ``--window``, S = W/2) against, in the same process and
  interleaved, ``--repeats`` times each (medians reported):
  ``bare``: ``model(input_ids)`` over the same windows (full logits, the
  baseline), and ``bare_scored_logits``: the forward pass exactly as extraction
  runs it under its hooks (logits of the scored positions only, no KV cache), so
  the second ratio is the cost of the hooks and the scoring alone;
* **efficiency**: the model's matmul FLOPs (2 per weight per token, the
  attention's 4 * positions * width per token and layer, the LM head only where
  logits are computed) per second, as a fraction of this machine's measured
  matmul rate in the model's dtype (``torch.matmul`` of two square matrices:
  float32 on a CPU, bfloat16 for a bf16 model on a GPU: like with like);
* **window modes**: every token of one ``--mode-tokens`` span scored once by
  ``--windows all`` (stride W/2: each token fed twice), ``stream`` (each token
  fed once, left context from the key/value cache) and ``all`` with stride W
  (fed once, context restarting every W): scored tokens/s, speed-up over
  ``all``, and share of the matmul rate in the model's dtype;
* **memory**: in a fresh process that has loaded the model and run one short
  forward pass (so memory-mapped weights are resident), the RSS, then the peak
  RSS while ``extract(windows="all")`` runs over the whole text
  (``--max-tokens`` caps it), against the bytes that keeping every layer's site
  activations would take, as the reference notebook does (layers x scored
  tokens x hidden x 4 bytes, computed from the shapes; with
  ``--measure-reference`` also measured in a fresh process whose hooks keep
  every layer's output, as the notebook's do).

``--model-config gpt2-large`` runs a random-init model of that GPT-2 size
(the embedded model's tokenizer) instead of ``--model``; with ``--device cuda``
this is the GPU figure. ``--quick`` shrinks everything for a smoke test::

    .venv/bin/python benchmarks/bench_extract.py                 # embedded model, CPU
    .venv/bin/python benchmarks/bench_extract.py --quick
    .venv/bin/python benchmarks/bench_extract.py --device cuda --model-config gpt2-large
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from machine import machine_info

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

GPT2_SIZES = {
    "gpt2": {"n_layer": 12, "n_embd": 768, "n_head": 12},
    "gpt2-medium": {"n_layer": 24, "n_embd": 1024, "n_head": 16},
    "gpt2-large": {"n_layer": 36, "n_embd": 1280, "n_head": 20},
}


def machine(device: torch.device) -> dict:
    info = machine_info()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load(args: argparse.Namespace):
    """The model to benchmark, as a LoadedModel."""
    from lamina.sources import LoadedModel, ModelReport, load_model

    if args.model_config is None:
        return load_model(args.model, device=args.device, dtype=args.dtype, progress=False)
    import transformers

    tokenizer = load_model("smollm2-135m", device="cpu", progress=False).tokenizer
    size = GPT2_SIZES[args.model_config]
    config = transformers.GPT2Config(**size, n_positions=1024, vocab_size=50257)
    torch.manual_seed(0)
    dtype = torch.float32 if args.dtype == "auto" else getattr(torch, args.dtype)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.to(args.device).eval().requires_grad_(False)
    report = ModelReport(
        spec=f"random-init {args.model_config}",
        name=args.model_config,
        source="local",
        architecture="gpt2",
        n_layers=size["n_layer"],
        hidden_size=size["n_embd"],
        n_heads=size["n_head"],
        context_length=1024,
        n_params=sum(p.numel() for p in model.parameters()),
        dtype=str(dtype).removeprefix("torch."),
        device=str(args.device),
        revision=None,
        fingerprint="random-init:seed=0",
    )
    return LoadedModel(model=model, tokenizer=tokenizer, report=report)


def text_prefix(loaded, text: str, n_tokens: int) -> str:
    """The shortest prefix of ``text`` that tokenizes to at least ``n_tokens`` tokens."""
    encoded = loaded.tokenizer(
        text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
    )
    offsets = encoded["offset_mapping"]
    if len(offsets) <= n_tokens:
        return text
    return text[: offsets[n_tokens][1]]


def forward_flops(model, windows, keep_logits: bool) -> float:
    """Matmul FLOPs of the forward passes over ``windows`` (multiply-add = 2 FLOPs)."""
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings()
    body = 0
    for module in model.modules():
        if module is head:
            continue
        if isinstance(module, (torch.nn.Linear, Conv1D)):
            body += module.weight.numel()
    config = model.config.get_text_config()
    n_layers = config.num_hidden_layers
    width = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    width *= config.num_attention_heads
    flops = 0.0
    for w in windows:
        first, stop = w.fed  # a stream chunk feeds only its new tokens; its cache covers the rest
        fed = stop - first
        logits = w.n_scored if keep_logits else fed
        flops += 2 * body * fed + 2 * head.weight.numel() * logits
        # QK^T and AV, causal: the token at p attends to the p - start + 1 positions of its window
        attended = sum(p - w.start + 1 for p in range(first, stop))
        flops += n_layers * 4 * width * attended
    return flops


def matmul_rate(
    device: torch.device, n: int, repeats: int, dtype: torch.dtype = torch.float32
) -> float:
    """FLOP/s of ``torch.matmul`` on two n x n ``dtype`` matrices (median of ``repeats``)."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=generator).to(device=device, dtype=dtype)
    torch.matmul(a, b)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def bench_speed(loaded, text: str, args: argparse.Namespace) -> dict:
    from lamina.capture import extract, plan_windows, tokenize

    window, stride = args.window, args.window // 2
    needed = window + (args.n_windows - 1) * stride + 1
    prefix = text_prefix(loaded, text, needed)
    tokens = tokenize(loaded.tokenizer, prefix)
    plan = plan_windows(len(tokens), "all", window, stride)[: args.n_windows]
    n_scored = sum(w.n_scored for w in plan)
    model = loaded.model
    device = next(model.parameters()).device
    ids = torch.from_numpy(tokens).to(device)

    def bare(keep_logits: bool) -> None:
        with torch.inference_mode():
            for w in plan:
                kwargs = {"logits_to_keep": w.n_scored, "use_cache": False} if keep_logits else {}
                model(ids[w.start : w.stop][None], **kwargs)
        _sync(device)

    def extraction() -> None:
        extract(
            loaded,
            prefix,
            sites=args.sites,
            window=window,
            stride=stride,
            max_tokens=n_scored,
            batch_size=args.batch_size,
            progress=False,
        )
        _sync(device)

    variants = {"bare": lambda: bare(False), "bare_scored_logits": lambda: bare(True)}
    variants["extract"] = extraction
    for run in variants.values():  # warm-up
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    flops = {
        "bare": forward_flops(model, plan, keep_logits=False),
        "bare_scored_logits": forward_flops(model, plan, keep_logits=True),
        "extract": forward_flops(model, plan, keep_logits=True),
    }
    dtype = next(model.parameters()).dtype
    rate = matmul_rate(device, args.matmul_size, max(3, args.repeats), dtype)
    return {
        "window": window,
        "stride": stride,
        "n_windows": len(plan),
        "tokens_fed": sum(w.length for w in plan),
        "tokens_scored": n_scored,
        "sites": args.sites,
        "repeats": args.repeats,
        "seconds": times,
        "median_seconds": medians,
        "scored_tokens_per_second": {k: n_scored / v for k, v in medians.items()},
        "extract_over_bare": medians["extract"] / medians["bare"],
        "extract_over_bare_scored_logits": medians["extract"] / medians["bare_scored_logits"],
        "model_gflop": {k: v / 1e9 for k, v in flops.items()},
        "matmul_size": args.matmul_size,
        "matmul_dtype": str(dtype).removeprefix("torch."),
        "matmul_gflops": rate / 1e9,
        "fraction_of_matmul_rate": {k: flops[k] / medians[k] / rate for k in medians},
    }


#: The window modes compared on one span of text: (name, mode, stride as a fraction of W).
MODES = (
    ("all, stride W/2", "all", 2),
    ("stream, chunk W/2", "stream", 2),
    ("all, stride W (no overlap)", "all", 1),
)


def bench_modes(loaded, text: str, args: argparse.Namespace) -> dict:
    """Scored tokens/s and share of the matmul rate of each window mode over one span of text.

    Every mode scores every token of the same ``--mode-tokens`` prefix once; they differ in
    what they feed: ``all`` feeds each token about W/S times, ``stream`` once (its left context
    from the key/value cache), ``all`` with S = W once (left context restarting every W).
    """
    from lamina.capture import extract, plan_windows, tokenize

    model = loaded.model
    device = next(model.parameters()).device
    window = args.window
    prefix = text_prefix(loaded, text, args.mode_tokens + 1)
    n_tokens = len(tokenize(loaded.tokenizer, prefix))
    context = loaded.report.context_length
    plans, runs = {}, {}
    for name, mode, divisor in MODES:
        stride = window // divisor
        plans[name] = plan_windows(n_tokens, mode, window, stride, context_length=context)

        def run(mode: str = mode, stride: int = stride) -> int:
            table = extract(
                loaded,
                prefix,
                sites=args.sites,
                windows=mode,
                window=window,
                stride=stride,
                batch_size=args.batch_size,
                progress=False,
            )
            _sync(device)
            return table.num_rows

        runs[name] = run
    scored = {name: run() for name, run in runs.items()}  # warm-up, and the rows each scores
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    dtype = next(model.parameters()).dtype
    rate = matmul_rate(device, args.matmul_size, max(3, args.repeats), dtype)
    flops = {name: forward_flops(model, plan, keep_logits=True) for name, plan in plans.items()}
    baseline = MODES[0][0]
    return {
        "window": window,
        "text_tokens": n_tokens,
        "batch_size": args.batch_size,
        "tokens_scored": scored,
        "tokens_fed": {n: sum(w.fed[1] - w.fed[0] for w in p) for n, p in plans.items()},
        "seconds": times,
        "median_seconds": medians,
        "scored_tokens_per_second": {n: scored[n] / medians[n] for n in medians},
        "speedup_over_all": {n: medians[baseline] / medians[n] for n in medians},
        "model_gflop": {n: f / 1e9 for n, f in flops.items()},
        "matmul_dtype": str(dtype).removeprefix("torch."),
        "matmul_gflops": rate / 1e9,
        "fraction_of_matmul_rate": {n: flops[n] / medians[n] / rate for n in medians},
    }


_MEMORY_CHILD = r"""
import gc, json, sys, time
sys.path.insert(0, {bench_dir!r})
import bench_extract as bench
args = bench.parse_args({argv!r})
from lamina.sources import load_text
loaded = bench.load(args)
text = load_text(args.text).text
bench.touch_weights(loaded)
gc.collect()
cuda = args.device.startswith("cuda")
if cuda:
    import torch
    torch.cuda.reset_peak_memory_stats()
    cuda_after_load = torch.cuda.memory_allocated()
after_load = bench.rss_bytes()
bench.reset_peak_rss()
start = time.perf_counter()
result = bench.{function}(loaded, text, args)
result["seconds"] = time.perf_counter() - start
result["rss_after_load_bytes"] = after_load
result["peak_rss_bytes"] = bench.peak_rss_bytes()
if cuda:
    result["cuda_after_load_bytes"] = cuda_after_load
    result["cuda_peak_bytes"] = torch.cuda.max_memory_allocated()
print(json.dumps(result))
"""


def touch_weights(loaded) -> None:
    """One short forward pass, so that memory-mapped weights count in the RSS baseline."""
    device = next(loaded.model.parameters()).device
    with torch.inference_mode():
        loaded.model(torch.zeros((1, 8), dtype=torch.long, device=device), use_cache=False)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_bytes() -> int:
    """Current resident set size of this process (Linux)."""
    return _status_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """Peak resident set size since the last :func:`reset_peak_rss` (Linux)."""
    return _status_kib("VmHWM") * 1024


def reset_peak_rss() -> None:
    """Reset the peak RSS to the current RSS (Linux >= 4.0), so loading's peak is not counted."""
    Path("/proc/self/clear_refs").write_text("5")


def whole_text_lamina(loaded, text: str, args: argparse.Namespace) -> dict:
    from lamina.capture import extract

    table = extract(
        loaded,
        text,
        sites=args.sites,
        windows="all",
        window=args.window,
        max_tokens=args.max_tokens,
        progress=False,
    )
    return {"tokens_scored": table.num_rows, "table_bytes": table.nbytes}


def whole_text_reference(loaded, text: str, args: argparse.Namespace) -> dict:
    """The reference notebook's way: forward hooks that keep every layer's full output."""
    from lamina.capture import plan_windows, resolve_sites, tokenize

    resolved = resolve_sites(loaded.model, args.sites)
    tokens = tokenize(loaded.tokenizer, text)
    plan = plan_windows(len(tokens), "all", args.window, None, args.max_tokens)
    kept: list[torch.Tensor] = []
    handles = [
        loaded.model.get_submodule(path).register_forward_hook(
            lambda m, a, o: kept.append((o[0] if isinstance(o, tuple) else o).detach())
        )
        for site in resolved.sites
        for path in resolved.module_paths(site)
    ]
    ids = torch.from_numpy(tokens)
    with torch.inference_mode():
        for w in plan:
            loaded.model(ids[w.start : w.stop][None].to(loaded.model.device))
    for handle in handles:
        handle.remove()
    return {"kept_bytes": sum(t.numel() * t.element_size() for t in kept)}


def measure_in_subprocess(function: str, argv: list[str]) -> dict:
    code = _MEMORY_CHILD.format(
        bench_dir=str(Path(__file__).resolve().parent), argv=argv, function=function
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{function} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_memory(loaded, text: str, args: argparse.Namespace, argv: list[str]) -> dict:
    from lamina.capture import plan_windows, resolve_sites, tokenize

    resolved = resolve_sites(loaded.model, args.sites)
    tokens = tokenize(loaded.tokenizer, text)
    plan = plan_windows(len(tokens), "all", args.window, None, args.max_tokens)
    hidden = loaded.model.config.get_text_config().hidden_size
    scored = sum(w.n_scored for w in plan)
    n_vectors = resolved.n_layers * len([s for s in resolved.sites if s != "attn_head"])
    # float32 activations of every layer, for the scored positions only (the least any
    # keep-everything approach needs; the notebook's hooks keep every fed position)
    reference_bytes = n_vectors * scored * hidden * 4
    result = {
        "windows": len(plan),
        "tokens_fed": sum(w.length for w in plan),
        "tokens_scored": scored,
        "reference_activation_bytes_computed": reference_bytes,
        "lamina": measure_in_subprocess("whole_text_lamina", argv),
    }
    if args.measure_reference:
        result["reference"] = measure_in_subprocess("whole_text_reference", argv)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--model-config", choices=sorted(GPT2_SIZES), default=None)
    parser.add_argument("--text", default="gutenberg:11")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--sites", default="attn_out")
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--n-windows", type=int, default=4)
    parser.add_argument("--batch-size", default=1, type=lambda v: v if v == "auto" else int(v))
    parser.add_argument(
        "--mode-tokens", type=int, default=8192, help="text tokens of the window-mode comparison"
    )
    parser.add_argument("--skip-modes", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--max-tokens", type=int, default=None, help="cap of the memory run")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--measure-reference", action="store_true")
    parser.add_argument("--quick", action="store_true", help="small settings for a smoke test")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.window, args.n_windows, args.repeats = 256, 2, 2
        args.matmul_size, args.mode_tokens = 1024, 1024
        if args.max_tokens is None:
            args.max_tokens = 2048
    return args


def _print_modes(modes: dict) -> None:
    print(
        f"window modes over the same {modes['text_tokens']:,} text tokens (W = {modes['window']}, "
        f"batch size {modes['batch_size']}):"
    )
    print(
        f"{'mode':<28}{'fed':>8}{'scored':>8}{'seconds':>9}{'tok/s':>8}{'speed-up':>9}{'of rate':>9}"
    )
    for name, seconds in modes["median_seconds"].items():
        print(
            f"{name:<28}{modes['tokens_fed'][name]:>8}{modes['tokens_scored'][name]:>8}"
            f"{seconds:>9.2f}{modes['scored_tokens_per_second'][name]:>8.0f}"
            f"{modes['speedup_over_all'][name]:>8.2f}x{modes['fraction_of_matmul_rate'][name]:>9.1%}"
        )


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from lamina.sources import load_text

    loaded = load(args)
    device = next(loaded.model.parameters()).device
    text = load_text(args.text).text
    result = {
        "command": " ".join(["benchmarks/bench_extract.py", *argv]),
        "machine": machine(device),
        "model": loaded.report.to_dict(),
        "speed": bench_speed(loaded, text, args),
    }
    if not args.skip_modes:
        result["modes"] = bench_modes(loaded, text, args)
    if not args.skip_memory:
        result["memory"] = bench_memory(loaded, text, args, argv)

    speed = result["speed"]
    print(
        f"# {loaded.report.name} on {device} ({result['machine'].get('gpu', result['machine']['cpu'])})"
    )
    print(
        f"{speed['n_windows']} windows of {speed['window']} (stride {speed['stride']}), "
        f"{speed['tokens_scored']} tokens scored, median of {speed['repeats']}"
    )
    print(f"{'variant':<22}{'seconds':>10}{'scored tok/s':>14}{'GFLOP':>9}{'of matmul rate':>16}")
    for name, seconds in speed["median_seconds"].items():
        print(
            f"{name:<22}{seconds:>10.3f}{speed['scored_tokens_per_second'][name]:>14.0f}"
            f"{speed['model_gflop'][name]:>9.0f}{speed['fraction_of_matmul_rate'][name]:>16.1%}"
        )
    print(
        f"extract / bare = {speed['extract_over_bare']:.3f}; extract / bare with scored "
        f"logits = {speed['extract_over_bare_scored_logits']:.3f}; {speed['matmul_dtype']} "
        f"matmul {speed['matmul_size']}^2: {speed['matmul_gflops']:.0f} GFLOP/s"
    )
    if "modes" in result:
        _print_modes(result["modes"])
    if "memory" in result:
        memory = result["memory"]
        lamina = memory["lamina"]
        print(
            f"whole text, --windows all: {memory['tokens_scored']} tokens in "
            f"{memory['windows']} windows, {lamina['seconds']:.0f} s; RSS with the model loaded "
            f"{_gib(lamina['rss_after_load_bytes'])}, peak during extraction "
            f"{_gib(lamina['peak_rss_bytes'])}, table {lamina['table_bytes'] / 2**20:.1f} MiB"
        )
        if "cuda_peak_bytes" in lamina:
            print(
                f"  GPU memory: {_gib(lamina['cuda_after_load_bytes'])} with the model loaded, "
                f"peak {_gib(lamina['cuda_peak_bytes'])} during extraction"
            )
        print(
            "keeping every layer's activations (reference notebook): "
            f"{_gib(memory['reference_activation_bytes_computed'])} (layers x scored tokens x "
            "hidden x 4 bytes)"
        )
        if "reference" in memory:
            reference = memory["reference"]
            print(
                f"  measured (hooks keeping every fed position): peak RSS "
                f"{_gib(reference['peak_rss_bytes'])}, kept tensors {_gib(reference['kept_bytes'])}"
                + (
                    f", GPU peak {_gib(reference['cuda_peak_bytes'])}"
                    if "cuda_peak_bytes" in reference
                    else ""
                )
            )
    out = (
        Path(args.out)
        if args.out
        else RESULTS / ("bench_extract_quick.json" if args.quick else "bench_extract.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"-> {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
