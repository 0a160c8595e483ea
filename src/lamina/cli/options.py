"""The command line's vocabulary: every option group defined once, shared by the commands.

Building the parser imports no numpy, scipy or torch: the choices come from
:mod:`lamina.stats.catalog`, :mod:`lamina.capture.sites` and the option classes'
defaults, which are plain Python.
"""

from __future__ import annotations

import argparse
from typing import Any

from lamina.capture.sites import SITES
from lamina.sources import DEFAULT_MODEL, DEFAULT_TEXT
from lamina.stats.catalog import ALTERNATIVES, BIN_RULES, CORRECTIONS, STATISTICS
from lamina.study.options import (
    COMPAT_ALIASES,
    COMPAT_MODES,
    CONTROL_NAMES,
    EXCLUDABLE,
    PERMUTE_WITHIN,
    StudyOptions,
    WindowOptions,
)


def common_parent() -> argparse.ArgumentParser:
    """Options every command takes: ``--debug`` (also accepted before the command)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error instead of one sentence",
    )
    return parent


def add_progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_model_args(p: argparse.ArgumentParser) -> None:
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


def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``load_model`` keyword arguments of the model options."""
    return {
        "device": args.device,
        "dtype": args.dtype,
        "revision": args.revision,
        "trust_remote_code": args.trust_remote_code,
        "allow_pickle": args.allow_pickle,
    }


def add_text_args(p: argparse.ArgumentParser) -> None:
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


def text_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``load_text`` keyword arguments of the text options."""
    return {"keep_boilerplate": args.keep_boilerplate}


def add_site_args(p: argparse.ArgumentParser, default: str) -> None:
    g = p.add_argument_group("sites")
    g.add_argument(
        "--sites",
        default=default,
        metavar="S[,S...]",
        help=f"comma-separated sites: {', '.join(SITES)} (default: {default})",
    )
    g.add_argument(
        "--site-template",
        action="append",
        default=None,
        metavar="T",
        help="module path with {layer} of the attention output projection, e.g. "
        "'transformer.h.{layer}.attn.c_proj', or SITE=PATH for another site; repeatable",
    )


def add_window_args(p: argparse.ArgumentParser, default: str) -> None:
    """The window options of ``extract`` (default ``all``) and ``run`` (default ``middle``)."""
    described = {
        "all": "all: score every token once, with the most left context",
        "middle": "middle: one window from the middle of the text, as the reference study",
    }
    d = WindowOptions()
    g = p.add_argument_group("windows")
    g.add_argument(
        "--windows",
        choices=list(described),
        default=default,
        help="; ".join(
            f"{text} (default)" if mode == default else text for mode, text in described.items()
        ),
    )
    g.add_argument(
        "--window",
        type=int,
        default=d.window,
        metavar="W",
        help="tokens per window (default: min(model context, 1024))",
    )
    g.add_argument(
        "--stride",
        type=int,
        default=d.stride,
        metavar="S",
        help="tokens between window starts in --windows all (default: W/2)",
    )
    g.add_argument(
        "--batch-size",
        type=int,
        default=d.batch_size,
        metavar="B",
        help=f"windows per forward pass (default: {d.batch_size})",
    )
    g.add_argument(
        "--max-tokens", type=int, default=d.max_tokens, metavar="N", help="score at most N tokens"
    )
    g.add_argument("--bos", action="store_true", help="prepend the BOS token to every window")


def window_options(args: argparse.Namespace) -> WindowOptions:
    return WindowOptions(
        mode=args.windows,
        window=args.window,
        stride=args.stride,
        batch_size=args.batch_size,
        max_tokens=args.max_tokens,
        bos=args.bos,
    )


def add_analysis_args(p: argparse.ArgumentParser) -> None:
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
        help=f"a bin-count rule instead of --bins: {', '.join(BIN_RULES)}",
    )
    g.add_argument(
        "--statistic",
        default=d.statistic,
        metavar="STAT",
        help=f"the permutation-test statistic: {', '.join(STATISTICS)} (default: {d.statistic})",
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
        default=d.alternative,
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
    aliases = ", ".join(f"{old} is an older name of {new}" for old, new in COMPAT_ALIASES.items())
    g.add_argument(
        "--compat",
        choices=[*COMPAT_MODES, *COMPAT_ALIASES],
        default=d.compat,
        help="notebook: reproduce the reference notebook's numbers, flaws included "
        f"(regression only; {aliases})",
    )
    add_controls_args(p)


def _names(value: str) -> tuple[str, ...]:
    """A comma-separated list of names; ``none`` is the empty list."""
    return () if value.strip() == "none" else tuple(n.strip() for n in value.split(",") if n)


def add_controls_args(p: argparse.ArgumentParser) -> None:
    """Part 7's options (controls, strata, blocks, effect size) and --exclude."""
    d = StudyOptions()
    g = p.add_argument_group("controls (Part 7)")
    g.add_argument(
        "--controls",
        type=_names,
        default=d.controls,
        metavar="C[,C...]",
        help=f"covariates Part 7 conditions on: {', '.join(CONTROL_NAMES)}; none turns "
        f"Part 7 off (default: {','.join(d.controls)})",
    )
    g.add_argument(
        "--strata-bins",
        type=int,
        default=d.strata_bins,
        metavar="B",
        help=f"quantile bins per control for the conditional test (default: {d.strata_bins})",
    )
    g.add_argument(
        "--permute-within",
        choices=PERMUTE_WITHIN,
        default=d.permute_within,
        help="also keep Part 7's permutations within documents or windows "
        f"(default: {d.permute_within})",
    )
    g.add_argument(
        "--min-effect",
        type=float,
        default=d.min_effect,
        metavar="G",
        help="|Hedges' g| below which a significant layer is called negligible "
        f"(default: {d.min_effect})",
    )
    g.add_argument(
        "--exclude",
        type=_names,
        default=d.exclude,
        metavar="K[,K...]",
        help=f"drop these tokens from every part: {', '.join(EXCLUDABLE)} (default: none)",
    )


def study_options(args: argparse.Namespace) -> StudyOptions:
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
        controls=args.controls,
        strata_bins=args.strata_bins,
        permute_within=args.permute_within,
        min_effect=args.min_effect,
        exclude=args.exclude,
    )
