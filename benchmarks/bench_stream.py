"""``--windows stream`` against ``--windows all`` on every family ``stream`` supports.

For each family of ``lamina.capture.architectures.STREAM_FAMILIES``, a random-init model of
one shape (12 layers, width 768, 12 heads: GPT-2 small's; the family's own MLP ratio, key/value
heads and position scheme) and the context of the family's usual checkpoints, with the embedded
SmolLM2 tokenizer's vocabulary (49,152 ids). Over the first ``--tokens`` tokens of Alice, each
scored once, ``lamina.capture.extract`` runs ``--windows all`` (W = 1,024, S = 512: every token
fed about twice) and ``--windows stream`` (each token fed once, its left context from the
key/value cache), one sequence at a time, interleaved within each round, ``--repeats`` rounds;
medians of the wall seconds and of the process's CPU seconds (user + system, which other
programs on a shared machine disturb less). Where a family's context cannot hold a chunk after
a window (GPT-2's 1,024 absolute positions), the same pair also runs at the window the plan's
note names (2/3 of the context).

Nothing is asserted; the JSON goes to ``benchmarks/results/bench_stream.json``::

    .venv/bin/python benchmarks/bench_stream.py                  # every family, ~25 min
    .venv/bin/python benchmarks/bench_stream.py --families gpt2,llama --repeats 1 --tokens 2048
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

from lamina.capture import extract, plan_windows, tokenize
from lamina.capture.architectures import STREAM_FAMILIES
from lamina.capture.windows import stream_note
from machine import machine_info

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
LAYERS, WIDTH, HEADS = 12, 768, 12

_GPT = {"n_layer": LAYERS, "n_embd": WIDTH, "n_head": HEADS}
_LLAMA = {
    "num_hidden_layers": LAYERS,
    "hidden_size": WIDTH,
    "num_attention_heads": HEADS,
    "num_key_value_heads": 4,
    "intermediate_size": 2048,
}
_NEOX = {"num_hidden_layers": LAYERS, "hidden_size": WIDTH, "num_attention_heads": HEADS}

#: family -> (its config at the common shape, the context of its usual checkpoints, which)
FAMILY_CONFIGS: dict[str, tuple[Callable[..., transformers.PretrainedConfig], str]] = {
    "gpt2": (lambda c: transformers.GPT2Config(**_GPT, n_positions=1024, **c), "GPT-2"),
    "gpt_neo": (
        lambda c: transformers.GPTNeoConfig(
            num_layers=LAYERS,
            hidden_size=WIDTH,
            num_heads=HEADS,
            **c,
            max_position_embeddings=2048,
            attention_types=[[["global", "local"], LAYERS // 2]],
            window_size=256,
        ),
        "GPT-Neo (global and 256-token local layers)",
    ),
    "gptj": (
        lambda c: transformers.GPTJConfig(**_GPT, n_positions=2048, rotary_dim=64, **c),
        "GPT-J",
    ),
    "gpt_neox": (
        lambda c: transformers.GPTNeoXConfig(
            **_NEOX, intermediate_size=4 * WIDTH, max_position_embeddings=2048, **c
        ),
        "Pythia",
    ),
    "falcon": (
        lambda c: transformers.FalconConfig(
            **_NEOX, max_position_embeddings=2048, **c, alibi=False
        ),
        "Falcon (rotary)",
    ),
    "llama": (
        lambda c: transformers.LlamaConfig(**_LLAMA, max_position_embeddings=8192, **c),
        "SmolLM2",
    ),
    "mistral": (
        lambda c: transformers.MistralConfig(
            **_LLAMA, max_position_embeddings=32768, sliding_window=None, **c
        ),
        "Mistral v0.2+",
    ),
    "qwen2": (
        lambda c: transformers.Qwen2Config(**_LLAMA, max_position_embeddings=32768, **c),
        "Qwen2",
    ),
    "gemma": (
        lambda c: transformers.GemmaConfig(
            **_LLAMA, head_dim=WIDTH // HEADS, max_position_embeddings=8192, **c
        ),
        "Gemma",
    ),
    "phi": (
        lambda c: transformers.PhiConfig(
            **_NEOX, intermediate_size=4 * WIDTH, max_position_embeddings=2048, **c
        ),
        "Phi-2 (partial rotary)",
    ),
    "gpt_bigcode": (
        lambda c: transformers.GPTBigCodeConfig(**_GPT, n_positions=8192, **c),
        "StarCoder (multi-query)",
    ),
    "qwen3": (
        lambda c: transformers.Qwen3Config(
            **_LLAMA, head_dim=WIDTH // HEADS, max_position_embeddings=40960, **c
        ),
        "Qwen3",
    ),
}


def build(family: str, tokenizer) -> transformers.PreTrainedModel:
    """The family's random-init model at the common shape, float32, eval mode."""
    make, _ = FAMILY_CONFIGS[family]
    torch.manual_seed(0)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    model = transformers.AutoModelForCausalLM.from_config(
        make({"vocab_size": len(tokenizer), **ids})
    )
    return model.eval().requires_grad_(False)


def cpu_seconds() -> float:
    """This process's user + system seconds (every torch thread counted)."""
    t = os.times()
    return t.user + t.system


def bench_family(family: str, tokenizer, prefix: str, args: argparse.Namespace) -> dict:
    model = build(family, tokenizer)
    config = model.config
    context = getattr(config, "max_position_embeddings", None) or config.n_positions
    n_tokens = len(tokenize(tokenizer, prefix))
    windows = [args.window]
    if stream_note(args.window, None, context) is not None:
        windows.append((2 * context) // 3)
    # warm-up: one short pass of each mode (kernels, caches), not timed
    for mode in ("all", "stream"):
        extract(model=model, tokenizer=tokenizer, text=prefix[:2000], windows=mode,
                window=256, progress=False)  # fmt: skip
    rows = []
    for window in windows:
        plans = {
            mode: plan_windows(n_tokens, mode, window, context_length=context)
            for mode in ("all", "stream")
        }
        wall: dict[str, list[float]] = {m: [] for m in plans}
        cpu: dict[str, list[float]] = {m: [] for m in plans}
        scored = {}
        for _ in range(args.repeats):
            for mode in plans:
                started, cpu_started = time.perf_counter(), cpu_seconds()
                table = extract(model=model, tokenizer=tokenizer, text=prefix, windows=mode,
                                window=window, progress=False)  # fmt: skip
                wall[mode].append(time.perf_counter() - started)
                cpu[mode].append(cpu_seconds() - cpu_started)
                scored[mode] = table.num_rows
        median = {m: statistics.median(v) for m, v in wall.items()}
        median_cpu = {m: statistics.median(v) for m, v in cpu.items()}
        row = {
            "window": window,
            "stride": window // 2,
            "tokens_scored": scored,
            "tokens_fed": {m: sum(w.fed[1] - w.fed[0] for w in p) for m, p in plans.items()},
            "segments": sum(not w.cached for w in plans["stream"]),
            "seconds": wall,
            "cpu_seconds": cpu,
            "median_seconds": median,
            "median_cpu_seconds": median_cpu,
            "stream_speedup": median["all"] / median["stream"],
            "stream_cpu_speedup": median_cpu["all"] / median_cpu["stream"],
            "note": stream_note(window, None, context),
        }
        rows.append(row)
        print(
            f"  {family:<12} W={window:<5} all {median['all']:6.1f} s  stream "
            f"{median['stream']:6.1f} s  x{row['stream_speedup']:.2f} (CPU "
            f"x{row['stream_cpu_speedup']:.2f}); fed {row['tokens_fed']['all']:,} vs "
            f"{row['tokens_fed']['stream']:,}",
            flush=True,
        )
    return {
        "like": FAMILY_CONFIGS[family][1],
        "context": context,
        "n_params": sum(p.numel() for p in model.parameters()),
        "attention": model.config._attn_implementation,
        "rows": rows,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(STREAM_FAMILIES))
    parser.add_argument("--text", default="gutenberg:11")
    parser.add_argument("--tokens", type=int, default=6144, help="text tokens compared")
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="bench_stream.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from lamina.sources import load_model, load_text

    tokenizer = load_model("smollm2-135m", device="cpu", progress=False).tokenizer
    text = load_text(args.text).text
    ids = tokenize(tokenizer, text[: 8 * (args.tokens + 1)])[: args.tokens + 1]
    prefix = tokenizer.decode(ids)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FAMILY_CONFIGS))
    if unknown:
        raise SystemExit(f"no benchmark shape for {unknown}; known: {sorted(FAMILY_CONFIGS)}")
    result = {
        "machine": machine_info(),
        "command": " ".join(["benchmarks/bench_stream.py", *(argv or [])]),
        "args": vars(args),
        "shape": {"layers": LAYERS, "width": WIDTH, "heads": HEADS, "vocab": len(tokenizer)},
        "families": {},
    }
    for family in families:
        result["families"][family] = bench_family(family, tokenizer, prefix, args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / args.output).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS / args.output}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
