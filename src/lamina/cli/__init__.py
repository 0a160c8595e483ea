"""The ``lamina`` command line: argument parsing, exit codes and progress; no science.

Each command is a function in :mod:`.commands`; the options they share are
defined once in :mod:`.options`. User errors (:class:`lamina.errors.LaminaError`)
print one line and exit 2; ``--debug`` (before or after the command) shows the
traceback instead. An ``OSError`` that reaches ``main`` (lamina's writers turn theirs
into sentences; this is the last resort for a library's) is one sentence too.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from lamina import __version__
from lamina.errors import LaminaError


def _command_line(argv: Sequence[str] | None) -> str:
    words = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["lamina", *words])


def build_parser() -> argparse.ArgumentParser:
    from lamina.cli.arguments import common_parent

    parser = argparse.ArgumentParser(
        prog="lamina",
        description="Does what each layer of a causal LM writes differ between the "
        "tokens it predicts right and the tokens it predicts wrong?",
    )
    parser.add_argument("--version", action="version", version=f"lamina {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = [common_parent()]

    def command(name: str, func, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, parents=common)
        p.set_defaults(func=func)
        return p

    _add_source_commands(command)
    _add_study_commands(command)
    _add_precision_command(command)
    return parser


def _add_source_commands(command) -> None:
    """info, prepare, sites and extract: the model, the text and the token table."""
    from lamina.cli import commands
    from lamina.cli.arguments import (
        add_extraction_args,
        add_model_args,
        add_progress_arg,
        add_site_args,
        add_text_args,
        add_window_args,
    )

    p = command("info", commands.cmd_info, "load a model and a text and describe both")
    add_model_args(p)
    add_text_args(p)
    add_progress_arg(p)

    p = command(
        "prepare",
        commands.cmd_prepare,
        "pre-seed the text cache (Alice) and cache the embedded model's weights",
    )
    p.add_argument("-q", "--quiet", action="store_true")

    p = command("sites", commands.cmd_sites, "print the module read for every site of every layer")
    add_model_args(p)
    add_site_args(p, default="attn_out,mlp_out,resid_post,attn_head")
    add_progress_arg(p)

    p = command(
        "extract",
        commands.cmd_extract,
        "score every token of a text and write each layer's norms to a token table",
    )
    add_model_args(p)
    add_text_args(p)
    add_site_args(p, default="attn_out")
    add_window_args(p, default="all")
    add_extraction_args(p)
    p.add_argument(
        "--out",
        default="tokens.parquet",
        metavar="PATH",
        help="token table to write (Parquet; default: tokens.parquet); its shards are kept in "
        "PATH.shards/ so that an interrupted run resumes",
    )
    add_progress_arg(p)


def _add_study_commands(command) -> None:
    """run, analyze and report: the study and its outputs."""
    from lamina.cli import commands
    from lamina.cli.arguments import add_analysis_args, add_progress_arg, add_study_args

    p = command(
        "run",
        commands.cmd_run,
        "the whole study: extract (or re-use DIR/tokens.parquet), analyse, write "
        "results, figures and the report",
    )
    add_study_args(p, many=True)
    p.add_argument(
        "--out",
        default="lamina-out",
        metavar="DIR",
        help="output directory (default: lamina-out; with several --model, one directory per "
        "model in it and the comparison in DIR/compare)",
    )
    p.add_argument(
        "--no-reuse",
        action="store_true",
        help="extract again even if DIR/tokens.parquet matches the model, text and windows",
    )
    add_progress_arg(p)

    p = command(
        "analyze", commands.cmd_analyze, "re-run every analysis on a token table (no model needed)"
    )
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
    add_analysis_args(p)
    add_progress_arg(p)

    p = command(
        "report", commands.cmd_report, "rebuild DIR/report.html from DIR/results.json and figures"
    )
    p.add_argument("dir", metavar="DIR", help="a study output directory")

    p = command(
        "compare",
        commands.cmd_compare,
        "put finished runs side by side: their profiles, a table and a report",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="output directories of finished runs")
    p.add_argument(
        "--out",
        default="lamina-compare",
        metavar="DIR",
        help="directory of the comparison (default: lamina-compare)",
    )
    p.add_argument(
        "--reanalyze",
        action="store_true",
        help="re-analyse runs whose analysis settings differ from the first run's, from their "
        "token tables, with the first run's settings (otherwise incomparable runs are refused)",
    )
    add_progress_arg(p)


def _add_precision_command(command) -> None:
    """precision: the study in float32 and in half precision side by side."""
    from lamina.cli import commands
    from lamina.cli.arguments import add_progress_arg, add_study_args

    p = command(
        "precision",
        commands.cmd_precision,
        "the study in float32 and in half precision (--dtype, default bfloat16) side by side: "
        "labels, log-norms and verdicts; --dtype auto on a cpu then trusts it for this model",
    )
    add_study_args(p)
    p.add_argument(
        "--out",
        default="lamina-precision",
        metavar="DIR",
        help="output directory: DIR/float32, DIR/bfloat16 (complete runs) and DIR/precision.json "
        "(default: lamina-precision)",
    )
    add_progress_arg(p)


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
    except OSError as exc:
        # Last resort: lamina's own writers turn OSErrors into sentences where they
        # arise; one from a library (a download cache, a temporary file) ends here.
        if args.debug:
            raise
        from lamina._io import os_error_reason

        where = f" on {exc.filename}" if getattr(exc, "filename", None) else ""
        print(
            f"lamina: error: the operating system refused an operation{where}: "
            f"{os_error_reason(exc)}; check the disk space and permissions (--debug shows "
            "where it happened).",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
