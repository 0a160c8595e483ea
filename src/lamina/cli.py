"""The ``lamina`` command line: argument parsing, exit codes and progress; no science.

Each subcommand is a ``_cmd_*`` function that wires options into the library.
User errors (:class:`lamina.errors.LaminaError`) print one line and exit 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from lamina import __version__
from lamina.errors import LaminaError

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_TEXT = "gutenberg:11"


def _command_line(argv: Sequence[str] | None) -> str:
    words = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["lamina", *words])


# ----------------------------------------------------------------------------- options


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="M",
        help="Hugging Face hub id, local directory, .gguf file, or the embedded "
        f"default alias (default: {DEFAULT_MODEL})",
    )
    g.add_argument(
        "--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps"
    )
    g.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "float16", "bfloat16"],
        help="auto: float32 on cpu, bfloat16 on cuda",
    )
    g.add_argument("--revision", default=None, help="hub branch, tag or commit")
    g.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run the model repository's own Python code (off by default)",
    )
    g.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow pickled .bin checkpoints (refused by default: they can run code)",
    )


def _add_text_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("text")
    g.add_argument(
        "--text",
        default=DEFAULT_TEXT,
        metavar="T",
        help="gutenberg:N, a file path, - for stdin, or an http(s) URL "
        f"(default: {DEFAULT_TEXT}, Alice's Adventures in Wonderland)",
    )
    g.add_argument(
        "--keep-boilerplate",
        action="store_true",
        help="keep the Project Gutenberg header and licence (the reference study did)",
    )


def _model_kwargs(args: argparse.Namespace) -> dict:
    """The ``load_model`` keyword arguments of the model options."""
    return {
        "device": args.device,
        "dtype": args.dtype,
        "revision": args.revision,
        "trust_remote_code": args.trust_remote_code,
        "allow_pickle": args.allow_pickle,
    }


def _text_kwargs(args: argparse.Namespace) -> dict:
    """The ``load_text`` keyword arguments of the text options."""
    return {"keep_boilerplate": args.keep_boilerplate}


# ----------------------------------------------------------------------------- commands


def _cmd_info(args: argparse.Namespace) -> int:
    from lamina.sources import load_model, load_text

    # The text first: its errors are instant, the model takes seconds to load.
    text = load_text(args.text, **_text_kwargs(args))
    loaded = load_model(args.model, **_model_kwargs(args), progress=sys.stderr.isatty())
    encoded = loaded.tokenizer(text.text, add_special_tokens=False, verbose=False)
    n_tokens = len(encoded["input_ids"])
    print(loaded.report.format())
    print()
    print(text.provenance.format())
    print(f"tokens        {n_tokens:,} ({loaded.report.name} tokenizer, no special tokens)")
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from lamina.sources import prepare

    prepare(verbose=not args.quiet)
    return 0


# ----------------------------------------------------------------------------- capture


# lamina.capture.SITES, spelled out so that building the parser does not import torch
_SITE_NAMES = "attn_out, mlp_out, resid_post, attn_head"


def _add_site_args(p: argparse.ArgumentParser, default: str) -> None:
    g = p.add_argument_group("sites")
    g.add_argument(
        "--sites",
        default=default,
        metavar="S[,S...]",
        help=f"comma-separated sites: {_SITE_NAMES} (default: {default})",
    )
    g.add_argument(
        "--site-template",
        action="append",
        default=None,
        metavar="T",
        help="module path with {layer} of the attention output projection, e.g. "
        "'transformer.h.{layer}.attn.c_proj', or SITE=PATH for another site; repeatable",
    )


def _cmd_sites(args: argparse.Namespace) -> int:
    from lamina.capture import resolve_sites
    from lamina.sources import load_model

    loaded = load_model(args.model, **_model_kwargs(args), progress=sys.stderr.isatty())
    resolved = resolve_sites(loaded.model, args.sites, args.site_template)
    print(
        f"{loaded.report.name}: {resolved.model_type}, {resolved.n_layers} layers, "
        f"{resolved.n_heads} attention heads"
    )
    how = {"family": "known family", "discovery": "found by discovery", "template": "given"}
    for site in resolved.sites:
        print(f"  {site:<10} {resolved.templates[site]}  ({how[resolved.source[site]]})")
    if "attn_head" in resolved.sites:
        print(
            f"  attn_head reads the input of the attn_out module, split into "
            f"{resolved.n_heads} heads"
        )
    columns = [site for site in resolved.sites if site != "attn_head"] or ["attn_head"]
    rows = [
        [str(layer), *(resolved.module_path(site, layer) for site in columns)]
        for layer in range(resolved.n_layers)
    ]
    header = ["layer", *columns]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from lamina.capture import extract
    from lamina.sources import load_model, load_text
    from lamina.table import table_metadata, write_table

    text = load_text(args.text, **_text_kwargs(args))
    loaded = load_model(args.model, **_model_kwargs(args), progress=sys.stderr.isatty())
    table = extract(
        loaded,
        text,
        sites=args.sites,
        windows=args.windows,
        window=args.window,
        stride=args.stride,
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
        bos=args.bos,
        site_template=args.site_template,
        progress=False if args.no_progress else None,
        command_line=args.command_line,
    )
    write_table(table, args.out)
    n_scored = table.num_rows
    n_correct = int(table.column("correct").to_numpy().sum())
    seconds = table_metadata(table)["seconds"]
    print(
        f"scored {n_scored:,} tokens: top-1 accuracy {n_correct / n_scored:.3f} "
        f"({n_correct:,}/{n_scored:,}) in {seconds:.1f} s "
        f"({n_scored / max(seconds, 1e-9):,.0f} tokens/s) -> {args.out}"
    )
    return 0


# ----------------------------------------------------------------------------- study


def _add_window_args(p: argparse.ArgumentParser, default: str) -> None:
    """The window options of ``extract`` (default ``all``) and ``run`` (default ``middle``)."""
    described = {
        "all": "all: score every token once, with the most left context",
        "middle": "middle: one window from the middle of the text, as the reference study",
    }
    g = p.add_argument_group("windows")
    g.add_argument(
        "--windows",
        choices=["middle", "all"],
        default=default,
        help="; ".join(
            f"{text} (default)" if mode == default else text for mode, text in described.items()
        ),
    )
    g.add_argument(
        "--window",
        type=int,
        default=None,
        metavar="W",
        help="tokens per window (default: min(model context, 1024))",
    )
    g.add_argument(
        "--stride",
        type=int,
        default=None,
        metavar="S",
        help="tokens between window starts in --windows all (default: W/2)",
    )
    g.add_argument(
        "--batch-size", type=int, default=1, metavar="B", help="windows per forward pass"
    )
    g.add_argument(
        "--max-tokens", type=int, default=None, metavar="N", help="score at most N tokens"
    )
    g.add_argument("--bos", action="store_true", help="prepend the BOS token to every window")


def _add_analysis_args(p: argparse.ArgumentParser) -> None:
    from lamina.study import ALTERNATIVES, CORRECTIONS, StudyOptions

    d = StudyOptions()
    g = p.add_argument_group("analysis")
    g.add_argument("--site", default=d.site, help=f"the site analysed (default: {d.site})")
    g.add_argument(
        "--layer",
        type=int,
        default=d.layer,
        help=f"the layer of the single-layer Parts 3-5 (default: {d.layer})",
    )
    g.add_argument(
        "--bins", type=int, default=d.bins, help=f"number of histogram bins (default: {d.bins})"
    )
    g.add_argument(
        "--bin-rule",
        default=None,
        metavar="RULE",
        help="a bin-count rule instead of --bins: fd, sturges, scott, auto, knuth, ...",
    )
    g.add_argument(
        "--statistic",
        default=d.statistic,
        help=f"the permutation-test statistic: js, ks, wasserstein, ... (default: {d.statistic})",
    )
    g.add_argument(
        "--permutations",
        type=int,
        default=d.permutations,
        metavar="M",
        help=f"label permutations per test (default: {d.permutations})",
    )
    g.add_argument(
        "--diagnostic-permutations",
        type=int,
        default=d.diagnostic_permutations,
        metavar="M",
        help="permutations of Part 4's bin sweep and binless estimators, at most "
        f"--permutations (default: {d.diagnostic_permutations})",
    )
    g.add_argument(
        "--correction",
        choices=CORRECTIONS,
        default=d.correction,
        help="multiple-comparison correction over layers that marks significance "
        f"(default: {d.correction}; all three are reported)",
    )
    g.add_argument(
        "--alternative",
        choices=ALTERNATIVES,
        default=None,
        help="default: greater for divergences and distances, two-sided for signed statistics",
    )
    g.add_argument(
        "--alpha", type=float, default=d.alpha, help=f"significance level (default: {d.alpha})"
    )
    g.add_argument("--seed", type=int, default=d.seed, help=f"permutation seed (default: {d.seed})")
    g.add_argument(
        "--sweep-bins",
        type=int,
        nargs=2,
        default=list(d.sweep_bins),
        metavar=("LOW", "HIGH"),
        help="bin counts of the Part 4 sweep, inclusive (default: %(default)s)",
    )
    g.add_argument(
        "--compat",
        choices=["none", "seed"],
        default="none",
        help="seed: reproduce the reference notebook's numbers, flaws included (regression only)",
    )


def _study_options(args: argparse.Namespace):
    from lamina.study import StudyOptions

    return StudyOptions(
        site=args.site,
        layer=args.layer,
        bins=args.bins,
        bin_rule=args.bin_rule,
        statistic=args.statistic,
        permutations=args.permutations,
        diagnostic_permutations=args.diagnostic_permutations,
        correction=args.correction,
        alternative=args.alternative,
        alpha=args.alpha,
        seed=args.seed,
        sweep_bins=(args.sweep_bins[0], args.sweep_bins[1]),
        compat=args.compat,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from lamina.errors import InputError
    from lamina.report.summary import format_summary
    from lamina.study import WindowOptions, run_study

    options = _study_options(args)
    if options.compat == "seed" and (args.windows != "middle" or args.window is not None):
        raise InputError(
            "--compat seed uses the reference notebook's window (the model's context from the "
            "middle of the text); drop --windows and --window."
        )
    windows = WindowOptions(
        windows=args.windows,
        window=args.window,
        stride=args.stride,
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
        bos=args.bos,
    )
    progress = None if not args.no_progress else False
    run = run_study(
        args.model,
        args.text,
        args.out,
        options=options,
        windows=windows,
        keep_boilerplate=args.keep_boilerplate,
        model_kwargs=_model_kwargs(args),
        reuse=not args.no_reuse,
        progress=progress,
        command_line=args.command_line,
        log=lambda line: print(line, file=sys.stderr),
    )
    print(format_summary(run.result.to_dict(), str(run.outputs.report)))
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lamina.report.summary import format_summary
    from lamina.study import analyze_path

    out = args.out if args.out is not None else str(Path(args.table).parent)
    run = analyze_path(
        args.table,
        out,
        options=_study_options(args),
        expect_model=args.model,
        command_line=args.command_line,
    )
    print(format_summary(run.result.to_dict(), str(run.outputs.report)))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from lamina.study import rebuild_report

    print(f"report: {rebuild_report(args.dir)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lamina",
        description="Does what each layer of a causal LM writes differ between the "
        "tokens it predicts right and the tokens it predicts wrong?",
    )
    parser.add_argument("--version", action="version", version=f"lamina {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("info", help="load a model and a text and describe both")
    _add_model_args(p)
    _add_text_args(p)
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "prepare",
        help="pre-seed the text cache (Alice) and cache the embedded model's weights",
    )
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=_cmd_prepare)

    # capture commands (sites, extract) are registered here
    p = sub.add_parser("sites", help="print the module read for every site of every layer")
    _add_model_args(p)
    _add_site_args(p, default="attn_out,mlp_out,resid_post,attn_head")
    p.set_defaults(func=_cmd_sites)

    p = sub.add_parser(
        "extract",
        help="score every token of a text and write each layer's norms to a token table",
    )
    _add_model_args(p)
    _add_text_args(p)
    _add_site_args(p, default="attn_out")
    _add_window_args(p, default="all")
    p.add_argument(
        "--out",
        default="tokens.parquet",
        metavar="PATH",
        help="token table to write (Parquet; default: tokens.parquet)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_extract)

    # study commands (run, analyze, report) are registered here
    p = sub.add_parser(
        "run",
        help="the whole study: extract (or re-use DIR/tokens.parquet), analyse, write "
        "results, figures and the report",
    )
    _add_model_args(p)
    _add_text_args(p)
    _add_window_args(p, default="middle")
    _add_analysis_args(p)
    p.add_argument(
        "--out", default="lamina-out", metavar="DIR", help="output directory (default: lamina-out)"
    )
    p.add_argument(
        "--no-reuse",
        action="store_true",
        help="extract again even if DIR/tokens.parquet matches the model, text and windows",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("analyze", help="re-run every analysis on a token table (no model needed)")
    p.add_argument("table", metavar="TABLE", help="a token table (tokens.parquet)")
    p.add_argument(
        "--out", default=None, metavar="DIR", help="output directory (default: the table's)"
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="M",
        help="refuse the table unless it was captured from this model spec",
    )
    _add_analysis_args(p)
    p.set_defaults(func=_cmd_analyze)

    p = sub.add_parser("report", help="rebuild DIR/report.html from DIR/results.json and figures")
    p.add_argument("dir", metavar="DIR", help="a study output directory")
    p.set_defaults(func=_cmd_report)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = _command_line(argv)
    try:
        return int(args.func(args) or 0)
    except LaminaError as exc:
        if args.debug:
            raise
        print(f"lamina: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lamina: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
