"""One function per ``lamina`` command: options in, library calls, lines out; no science."""

from __future__ import annotations

import argparse
import sys

from lamina.cli.arguments import (
    extraction_options,
    model_kwargs,
    study_options,
    text_kwargs,
    window_options,
)


def _progress(args: argparse.Namespace) -> bool | None:
    """False when --no-progress, else None (bars on a terminal only)."""
    return False if getattr(args, "no_progress", False) else None


def _show_loading(args: argparse.Namespace) -> bool:
    return _progress(args) is not False and sys.stderr.isatty()


def cmd_info(args: argparse.Namespace) -> int:
    from lamina.capture import count_tokens
    from lamina.sources import load_corpus, load_model

    # The text first: its errors are instant, the model takes seconds to load.
    corpus = load_corpus(args.text, **text_kwargs(args))
    loaded = load_model(args.model, **model_kwargs(args), progress=_show_loading(args))
    counts = [count_tokens(loaded.tokenizer, doc.text) for doc in corpus.documents]
    print(loaded.report.format())
    print()
    if len(corpus.documents) == 1:
        print(corpus.documents[0].provenance.format())
    else:
        print(corpus.summary())
    print(
        f"tokens        {sum(counts):,} ({loaded.report.name} tokenizer, no special tokens)"
        + (f" in {len(counts)} documents" if len(counts) > 1 else "")
    )
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from lamina.sources import prepare

    prepare(verbose=not args.quiet)
    return 0


def cmd_sites(args: argparse.Namespace) -> int:
    from lamina.capture import resolve_sites
    from lamina.sources import load_model

    loaded = load_model(args.model, **model_kwargs(args), progress=_show_loading(args))
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


def cmd_extract(args: argparse.Namespace) -> int:
    from lamina.pipeline.run_extraction import extract_to_file
    from lamina.sources import load_corpus
    from lamina.table import table_metadata

    windows = window_options(args)
    extraction = extraction_options(args)
    corpus = load_corpus(args.text, **text_kwargs(args))
    for skipped in corpus.skipped:
        print(f"skipped document {skipped.name}: {skipped.reason}", file=sys.stderr)
    table = extract_to_file(
        args.model,
        corpus,
        windows,
        args.out,
        sites=args.sites,
        site_template=args.site_template,
        model_kwargs=model_kwargs(args),
        extraction=extraction,
        progress=_progress(args),
        command_line=args.command_line,
    )
    n_scored = table.num_rows
    n_correct = int(table.column("correct").to_numpy().sum())
    meta = table_metadata(table)
    seconds = meta["seconds"]
    for note in meta.get("windows", {}).get("notes") or []:
        print(f"note: {note}.", file=sys.stderr)
    print(
        f"scored {n_scored:,} tokens: top-1 accuracy {n_correct / n_scored:.3f} "
        f"({n_correct:,}/{n_scored:,}) in {seconds:.1f} s "
        f"({n_scored / max(seconds, 1e-9):,.0f} tokens/s) -> {args.out}"
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from lamina.pipeline import run_study
    from lamina.report.summary import format_summary

    options, windows, extraction = (
        study_options(args),
        window_options(args),
        extraction_options(args),
    )

    def run(model: str | None, out) -> object:
        return run_study(
            model,
            args.text,
            out,
            options=options,
            windows=windows,
            model_kwargs=model_kwargs(args),
            extraction=extraction,
            reuse=not args.no_reuse,
            progress=_progress(args),
            command_line=args.command_line,
            log=lambda line: print(line, file=sys.stderr),
            keep_boilerplate=args.keep_boilerplate,
            text_field=args.text_field,
            skip_bad_docs=args.skip_bad_docs,
            max_text_bytes=args.max_text_bytes,
        )

    models = list(dict.fromkeys(args.model or [None]))
    if len(models) == 1:
        result = run(models[0], args.out)
        print(format_summary(result.result.to_dict(), str(result.outputs.report)))
        return 0
    from lamina.pipeline.compare_runs import run_models

    runs, compared = run_models(
        models,
        args.out,
        run,
        layer=options.layer,
        model_kwargs=model_kwargs(args),
        progress=_show_loading(args),
        command_line=args.command_line,
        log=lambda line: print(line, file=sys.stderr),
    )
    for result in runs:
        print(format_summary(result.result.to_dict(), str(result.outputs.report)))
        print()
    print(f"comparison: {compared.report}")
    return 0


def cmd_precision(args: argparse.Namespace) -> int:
    from lamina.errors import InputError
    from lamina.pipeline.precision import check_precision, format_agreement

    dtype = "bfloat16" if args.dtype == "auto" else args.dtype
    if dtype == "float32":
        raise InputError(
            "lamina precision compares float32 with a half precision: give --dtype bfloat16 "
            "or float16."
        )
    kwargs = {k: v for k, v in model_kwargs(args).items() if k != "dtype"}
    check = check_precision(
        args.model,
        args.text,
        args.out,
        dtype=dtype,
        model_kwargs=kwargs,
        log=lambda line: print(line, file=sys.stderr),
        options=study_options(args),
        windows=window_options(args),
        extraction=extraction_options(args),
        progress=_progress(args),
        command_line=args.command_line,
        keep_boilerplate=args.keep_boilerplate,
        text_field=args.text_field,
        skip_bad_docs=args.skip_bad_docs,
        max_text_bytes=args.max_text_bytes,
    )
    print(format_agreement(check.agreement))
    print(f"written to {check.path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from lamina.pipeline.compare_runs import compare_runs

    compared = compare_runs(
        args.dirs,
        args.out,
        reanalyze=args.reanalyze,
        command_line=args.command_line,
        log=lambda line: print(line, file=sys.stderr),
    )
    for row in compared.comparison["table"]:
        print(
            f"{row['label']:<40.40} {row['site']:<10} {row['n_significant']:>3} of "
            f"{row['n_tests']:<3} significant; peak |g| at layer {row['peak_layer']} "
            f"(depth {row['peak_relative_depth']:.2f}): g = {row['peak_hedges_g']:+.3f}"
        )
    print(f"comparison: {compared.report}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lamina.table import require_table_path

    require_table_path(args.table)  # before the heavy imports of the pipeline
    from lamina.pipeline import analyze_path
    from lamina.report.summary import format_summary

    out = args.out if args.out is not None else str(Path(args.table).parent)
    run = analyze_path(
        args.table,
        out,
        options=study_options(args),
        expect_model=args.model,
        command_line=args.command_line,
    )
    print(format_summary(run.result.to_dict(), str(run.outputs.report)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from lamina.pipeline import rebuild_report

    print(f"report: {rebuild_report(args.dir)}")
    return 0
