"""Where one ``stream`` chunk's time goes, in float32 and bfloat16, and what attention could do.

The embedded SmolLM2-135M on this CPU: a 1,024-token window fills the key/value cache, then
one 512-token chunk runs as ``--windows stream`` runs it (``capture.stream.chunk_inputs``:
the sink and 512 cached positions, scored logits only) under torch's profiler, ``--repeats``
times; the medians of the matrix products (``aten::mm``), the attention kernel and the rest,
the chunk's products' FLOP and rate, and the scoring of its 512 rows of logits. Then one
layer's attention alone (9 query heads of 64, 3 key/value heads, 512 queries by 1,025 keys,
the chunk's mask), each way measured: torch's kernel with the mask, the same split into the
unmasked cache and the causal chunk merged by the kernel's log-sum-exp, and the parts of a
grouped bfloat16 form (q·k, upcast, softmax, p·v); a causal 1,024-token window; and square
products of ``--size`` in each dtype (the rate the chunk's products are compared with).

Nothing is asserted; the JSON goes to ``benchmarks/results/profile_chunk.json``::

    .venv/bin/python benchmarks/profile_chunk.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from machine import machine_info

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
FLASH = "aten::_scaled_dot_product_flash_attention_for_cpu"
HEADS, KV_HEADS, HEAD_DIM, QUERIES, KEYS = 9, 3, 64, 512, 1025


def median_ms(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def chunk_profile(dtype: str, repeats: int) -> dict:
    """One cached 512-token chunk of the embedded model under the profiler."""
    from torch.profiler import ProfilerActivity, profile
    from transformers import DynamicCache

    from lamina.capture.scoring import score_next_tokens
    from lamina.capture.stream import chunk_inputs
    from lamina.capture.windows import Window
    from lamina.sources import load_model

    loaded = load_model("smollm2-135m", device="cpu", dtype=dtype, progress=False)
    model = loaded.model.eval()
    ids = torch.randint(0, 40_000, (1, 1537), generator=torch.Generator().manual_seed(0))
    chunk = Window(1, 512, 1536, 1024, cached=True, origin=0)
    parts: dict[str, list[float]] = {"total": [], "mm": [], "attention": [], "rest": []}
    logits = None
    for k in range(repeats + 1):
        cache = DynamicCache()
        with torch.inference_mode():
            model(input_ids=ids[:, :1024], use_cache=True, past_key_values=cache)
            kwargs = chunk_inputs(cache, chunk, 0, 512, torch.device("cpu"))
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                out = model(
                    input_ids=ids[:, 1024:1536], use_cache=True, past_key_values=cache,
                    logits_to_keep=512, **kwargs,
                )  # fmt: skip
        logits = out.logits[0]
        if k == 0:
            continue  # warm-up
        ops = {e.key: e.self_cpu_time_total / 1000 for e in prof.key_averages()}
        total = sum(ops.values())
        parts["total"].append(total)
        parts["mm"].append(ops.get("aten::mm", 0.0))
        parts["attention"].append(ops.get(FLASH, 0.0))
        parts["rest"].append(total - parts["mm"][-1] - parts["attention"][-1])
    targets = ids[0, 1025:1537]
    scoring = median_ms(lambda: score_next_tokens(logits, targets), repeats)
    config = model.config
    layer_macs = (
        2 * config.hidden_size * config.hidden_size  # q and o
        + 2 * config.hidden_size * KV_HEADS * HEAD_DIM  # k and v
        + 3 * config.hidden_size * config.intermediate_size  # the gated MLP
    )
    macs = config.num_hidden_layers * layer_macs + config.hidden_size * config.vocab_size
    gflop = 2 * macs * 512 / 1e9
    medians = {name: statistics.median(values) for name, values in parts.items()}
    return {
        "dtype": dtype,
        "median_ms": medians,
        "runs_ms": parts,
        "scoring_ms": scoring,
        "products_gflop": gflop,
        "products_gflops_per_s": gflop / (medians["mm"] / 1000),
    }


def attention_variants(repeats: int) -> dict:
    """One layer's chunk attention, each way, in float32 and bfloat16 (milliseconds)."""
    return {
        str(dtype).removeprefix("torch."): _attention_in(dtype, repeats)
        for dtype in (torch.float32, torch.bfloat16)
    }


def _attention_in(dtype: torch.dtype, repeats: int) -> dict[str, float]:
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    cached = KEYS - QUERIES
    row = torch.arange(QUERIES)[:, None] + cached
    mask = (torch.arange(KEYS)[None] <= row)[None, None]
    generator = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(1, HEADS, n, HEAD_DIM, generator=generator).to(dtype)
        for n in (QUERIES, KEYS, KEYS)
    )

    def split() -> torch.Tensor:
        a, lse_a = flash(q, k[:, :, :cached], v[:, :, :cached], 0.0, False)[:2]
        b, lse_b = flash(q, k[:, :, cached:], v[:, :, cached:], 0.0, True)[:2]
        lse = torch.logaddexp(lse_a, lse_b)
        mixed = a.float() * torch.exp(lse_a - lse)[..., None]
        return (mixed + b.float() * torch.exp(lse_b - lse)[..., None]).to(dtype)

    window = [torch.randn(1, HEADS, 1024, HEAD_DIM, generator=generator).to(dtype)] * 3
    grouped_q = q.reshape(KV_HEADS, HEADS // KV_HEADS * QUERIES, HEAD_DIM)
    keys_t = k[0, :KV_HEADS].transpose(1, 2).contiguous()
    values = v[0, :KV_HEADS].contiguous()
    scores = torch.bmm(grouped_q, keys_t)
    upcast = scores.float()
    weights = torch.softmax(upcast, -1).to(dtype)
    return {
        "kernel_with_mask": median_ms(
            lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), repeats
        ),
        "kernel_split_lse": median_ms(split, repeats),
        "kernel_causal_window_1024": median_ms(
            lambda: F.scaled_dot_product_attention(*window, is_causal=True), repeats
        ),
        "grouped_qk": median_ms(lambda: torch.bmm(grouped_q, keys_t), repeats),
        "grouped_upcast": median_ms(lambda: scores.float(), repeats),
        "grouped_softmax": median_ms(lambda: torch.softmax(upcast, -1), repeats),
        "grouped_pv": median_ms(lambda: torch.bmm(weights, values), repeats),
    }


def product_rates(size: int, repeats: int) -> dict:
    """GFLOP/s of a square product of ``size`` in float32 and bfloat16."""
    return {
        str(dtype).removeprefix("torch."): _product_rate(dtype, size, repeats)
        for dtype in (torch.float32, torch.bfloat16)
    }


def _product_rate(dtype: torch.dtype, size: int, repeats: int) -> float:
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator).to(dtype) for _ in range(2))
    return 2 * size**3 / (median_ms(lambda: a @ b, repeats) / 1000) / 1e9


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--output", default="profile_chunk.json")
    args = parser.parse_args(argv)
    result = {
        "machine": machine_info(),
        "command": " ".join(["benchmarks/profile_chunk.py", *argv]),
        "chunk": {d: chunk_profile(d, args.repeats) for d in ("float32", "bfloat16")},
        "attention_ms": attention_variants(args.repeats * 3),
        "product_gflops_per_s": product_rates(args.size, args.repeats),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / args.output).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS / args.output}")


if __name__ == "__main__":
    main()
