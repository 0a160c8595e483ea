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
    return {
        "device": args.device,
        "dtype": args.dtype,
        "revision": args.revision,
        "trust_remote_code": args.trust_remote_code,
        "allow_pickle": args.allow_pickle,
    }


# ----------------------------------------------------------------------------- commands


def _cmd_info(args: argparse.Namespace) -> int:
    from lamina.sources import load_model, load_text

    loaded = load_model(args.model, **_model_kwargs(args))
    text = load_text(args.text, keep_boilerplate=args.keep_boilerplate)
    n_tokens = len(loaded.tokenizer(text.text, add_special_tokens=False)["input_ids"])
    print(loaded.report.format())
    print()
    print(text.provenance.format())
    print(f"  tokens ({loaded.report.name} tokenizer): {n_tokens:,}")
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from lamina.sources import prepare

    prepare(verbose=not args.quiet)
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
