"""The command line's vocabulary: every option group defined once, shared by the commands.

Building the parser imports no numpy, scipy or torch: the choices come from
:mod:`lamina.stats.catalog`, :mod:`lamina.capture.architectures` and the option classes'
defaults, which are plain Python.
"""

from __future__ import annotations

import argparse
from typing import Any

from lamina.capture.architectures import SITES
from lamina.errors import InputError
from lamina.sources import DEFAULT_MODEL, DEFAULT_TEXT
from lamina.stats.catalog import ALTERNATIVES, BIN_RULES, CORRECTIONS, STATISTICS
from lamina.study.options import (
    BINNINGS,
    COMPAT_ALIASES,
    COMPAT_MODES,
    CONTROL_NAMES,
    CORRECTION_SCOPES,
    EXCLUDABLE,
    HEAD_SITE,
    PERMUTE_WITHIN,
    SCHEMES,
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


def add_model_args(p: argparse.ArgumentParser, many: bool = False) -> None:
    """The model options; ``many``: ``--model`` may be repeated (a list, None if not given)."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=None if many else DEFAULT_MODEL,
        action="append" if many else "store",
        metavar="M",
        help="Hugging Face hub id, local directory, .gguf file, or the embedded "
        f"default alias (default: {DEFAULT_MODEL})"
        + ("; repeat it to run the study for each model and compare them" if many else ""),
    )
    g.add_argument(
        "--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps"
    )
    g.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "float16", "bfloat16"],
        help="auto: bfloat16 on cuda; on a cpu float32, or bfloat16 where the cpu multiplies it "
        "natively and `lamina precision` found the same study for this model",
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
    g = p.add_argument_group("text or corpus")
    g.add_argument(
        "--text",
        action="append",
        default=None,
        metavar="T",
        help="gutenberg:N (or gutenberg:11,12,1342), a file, a directory of *.txt, a glob, a "
        ".jsonl or .parquet file with a text field, - for stdin, or an http(s) URL; repeat it "
        f"for a corpus (default: {DEFAULT_TEXT}, Alice's Adventures in Wonderland)",
    )
    g.add_argument(
        "--text-field",
        default="text",
        metavar="F",
        help="the field (JSONL) or column (Parquet) that holds the text (default: text)",
    )
    g.add_argument(
        "--skip-bad-docs",
        action="store_true",
        help="skip documents that cannot be used (not UTF-8, empty, duplicate) and list them",
    )
    g.add_argument(
        "--keep-boilerplate",
        action="store_true",
        help="keep the Project Gutenberg header and licence (the reference study did)",
    )
    g.add_argument(
        "--max-text-bytes",
        type=byte_size,
        default=None,
        metavar="N",
        help="refuse a text (file, stdin or URL) larger than N bytes; K, M and G suffixes "
        "count 1024s (default: 256M)",
    )


def byte_size(value: str) -> int:
    """``256M`` -> 268435456: a positive number of bytes with an optional K, M, G or T suffix."""
    import re

    match = re.fullmatch(r"\s*([0-9]+)\s*([KMGT]?)(?:i?B)?\s*", value, re.IGNORECASE)
    number = 0
    if match:
        number = int(match.group(1)) * 1024 ** (" KMGT".index(match.group(2).upper() or " "))
    if number < 1:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a positive number of bytes (e.g. 1000000, 512K, 256M, 1G)"
        )
    return number


def text_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``load_corpus`` keyword arguments of the text options."""
    return {
        "keep_boilerplate": args.keep_boilerplate,
        "text_field": args.text_field,
        "skip_bad_docs": args.skip_bad_docs,
        "max_bytes": args.max_text_bytes,
    }


def add_extraction_args(p: argparse.ArgumentParser) -> None:
    """Where and how the forward passes run: the engine, its shards, non-finite outputs."""
    from lamina.capture.probe_spec import PROBE_CHOICES
    from lamina.pipeline.run_extraction import ENGINES, ExtractionOptions

    d = ExtractionOptions()
    g = p.add_argument_group("extraction")
    g.add_argument(
        "--engine",
        choices=ENGINES,
        default=d.engine,
        help="local: forward passes in this process (default); ray: an actor pool on a local "
        "or joined Ray cluster, one model per actor (docs/scale.md)",
    )
    g.add_argument(
        "--workers", type=int, default=d.workers, metavar="N", help="Ray actors (default: 1)"
    )
    g.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="join the Ray cluster at HOST:PORT (default: start a local one)",
    )
    g.add_argument(
        "--shard-windows",
        type=int,
        default=d.shard_windows,
        metavar="K",
        help=f"windows per saved shard, the unit of resuming (default: {d.shard_windows})",
    )
    g.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help="keep tokens whose logits or norms are NaN or inf (marked in the table's nonfinite "
        "column and left out of the analysis) instead of stopping",
    )
    g.add_argument(
        "--probe",
        choices=PROBE_CHOICES,
        default=d.probe,
        help="cross-fitted probe scores per site and layer (probe.SITE.LAYER columns): "
        "diffmeans (difference of class means), lda (with a shrunk pooled covariance) or none; "
        "auto: diffmeans for --windows middle, where its second pass costs seconds, none for "
        f"all and stream, where it doubles the forward passes (default: {d.probe})",
    )
    g.add_argument(
        "--probe-folds",
        type=int,
        default=d.probe_folds,
        metavar="K",
        help="contiguous folds of the probe: documents, else windows, else spans of tokens "
        f"(default: {d.probe_folds})",
    )


def extraction_options(args: argparse.Namespace):
    from lamina.pipeline.run_extraction import ExtractionOptions

    return ExtractionOptions(
        engine=args.engine,
        workers=args.workers,
        ray_address=args.ray_address,
        shard_windows=args.shard_windows,
        allow_nonfinite=args.allow_nonfinite,
        probe=args.probe,
        probe_folds=args.probe_folds,
    )


def add_site_args(p: argparse.ArgumentParser, default: str) -> None:
    g = p.add_argument_group("sites")
    g.add_argument(
        "--sites",
        default=default,
        metavar="S[,S...]",
        help=f"comma-separated sites: {', '.join(SITES)}, or all (default: {default})",
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
        "stream": "stream: score every token once and feed it once, its left context kept "
        "in the key/value cache",
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
        help="tokens between window starts in --windows all, chunk size in stream (default: W/2)",
    )
    g.add_argument(
        "--batch-size",
        type=_batch_size,
        default=d.batch_size,
        metavar="B",
        help=f"windows per forward pass, or auto: as many as fit (default: {d.batch_size})",
    )
    g.add_argument(
        "--max-tokens", type=int, default=d.max_tokens, metavar="N", help="score at most N tokens"
    )
    g.add_argument("--bos", action="store_true", help="prepend the BOS token to every window")


def _batch_size(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of windows or auto") from None


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
    _add_bin_args(g, d)
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
    _add_sites_analysis_args(g, d)
    add_controls_args(p)


def _add_bin_args(g: Any, d: StudyOptions) -> None:
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
        "--binning",
        choices=BINNINGS,
        default=d.binning,
        help="how --bins lays out its bins: robust = equal-width bins over the central 99%% of "
        "the pooled log-norms with two open end bins, so one outlier cannot collapse the "
        "histogram; range = equal-width over [min, max] as the reference notebook did "
        f"(default: {d.binning}; --compat notebook always uses range)",
    )


def _add_sites_analysis_args(g: Any, d: StudyOptions) -> None:
    """``--sites`` and ``--correction-scope``: the sites analysed besides ``--site``."""
    g.add_argument(
        "--sites",
        dest="analysis_sites",
        default=None,
        metavar="S[,S...]|all",
        help=f"analyse these sites too, each with its laminar profile ({', '.join(SITES)}, "
        "or all; attn_head per head); --site stays the site of Parts 1-6",
    )
    g.add_argument(
        "--correction-scope",
        choices=CORRECTION_SCOPES,
        default=d.correction_scope,
        help="with several sites, correct over every test of the run or over each site's "
        f"tests (default: {d.correction_scope}; both are reported)",
    )


def analysis_sites(value: str | None) -> tuple[str, ...]:
    """The sites of ``--sites`` (``all``: every site lamina knows), checked by name."""
    if value is None:
        return ()
    from lamina.capture.architectures import parse_sites

    if value.strip() == "all":
        return SITES
    names = [name.strip() for name in value.split(",") if name.strip()]
    parse_sites(names)  # one sentence for an unknown name
    return tuple(dict.fromkeys(names))


def _names(value: str) -> tuple[str, ...]:
    """A comma-separated list of names; ``none`` is the empty list."""
    return () if value.strip() == "none" else tuple(n.strip() for n in value.split(",") if n)


def add_controls_args(p: argparse.ArgumentParser) -> None:
    """The null's scheme and series, Part 7's options (controls, effect size) and --exclude."""
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
        "--scheme",
        choices=SCHEMES,
        default=d.scheme,
        help="how the tests of Parts 5-7 draw their null: shift (circular shifts of the labels "
        "within each window, keeping the serial dependence of text) or exchangeable "
        f"(permutations: assumes independent tokens) (default: {d.scheme})",
    )
    g.add_argument(
        "--permute-within",
        choices=PERMUTE_WITHIN,
        default=d.permute_within,
        help="the series the null's labellings stay within; auto: windows for shift, every "
        f"token for exchangeable (default: {d.permute_within})",
    )
    g.add_argument(
        "--min-effect",
        type=float,
        default=d.min_effect,
        metavar="G",
        help="a layer whose controlled Hedges' g has its whole 95%% interval within +/- G is "
        f"called negligible (default: {d.min_effect})",
    )
    g.add_argument(
        "--exclude",
        type=_names,
        default=d.exclude,
        metavar="K[,K...]",
        help=f"drop these tokens from every part: {', '.join(EXCLUDABLE)} (default: none)",
    )


def primary_site(value: str) -> str:
    """The site of ``--site``, checked by name before anything loads."""
    if value not in SITES:
        per_layer = ", ".join(site for site in SITES if site != HEAD_SITE)
        raise InputError(f"--site {value!r} is unknown: use one of {per_layer}.")
    return value


def study_options(args: argparse.Namespace) -> StudyOptions:
    return StudyOptions(
        site=primary_site(args.site),
        layer=args.layer,
        bins=args.bins,
        bin_rule=args.bin_rule,
        binning=args.binning,
        statistic=args.statistic,
        permutations=args.permutations,
        diagnostic_permutations=args.diagnostic_permutations,
        correction=args.correction,
        alternative=args.alternative,
        alpha=args.alpha,
        seed=args.seed,
        sweep_bins=(args.sweep_bins[0], args.sweep_bins[1]),
        compat=args.compat,
        sites=analysis_sites(args.analysis_sites),
        correction_scope=args.correction_scope,
        controls=args.controls,
        scheme=args.scheme,
        permute_within=args.permute_within,
        min_effect=args.min_effect,
        exclude=args.exclude,
    )


def add_study_args(p: argparse.ArgumentParser, *, many: bool = False) -> None:
    """What a whole study takes (``run``, ``precision``): model, text, windows, extraction
    and analysis options."""
    add_model_args(p, many=many)
    add_text_args(p)
    add_window_args(p, default="middle")
    add_extraction_args(p)
    add_analysis_args(p)
