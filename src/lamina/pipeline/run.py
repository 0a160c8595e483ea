"""The study from a model and a text, or from a token table, to every output file."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina.errors import InputError, TableError
from lamina.pipeline.outputs import (
    TOKENS_FILE,
    StudyOutputs,
    check_out_dir,
    write_outputs,
)
from lamina.pipeline.reuse import table_matches
from lamina.study import analyze_table
from lamina.study.options import StudyOptions, WindowOptions, check_windows, notebook_windows
from lamina.study.result import StudyResult
from lamina.study.tokens import token_view

if TYPE_CHECKING:
    import pyarrow as pa

    from lamina.sources import LoadedText


@dataclasses.dataclass
class StudyRun:
    """What :func:`run_study` or :func:`analyze_path` produced."""

    result: StudyResult
    outputs: StudyOutputs
    reused_table: bool
    reuse_note: str


def prewarm() -> threading.Thread:
    """Import the analysis and plotting libraries in a background thread; returns the thread.

    ``run_study`` starts this before loading the model and joins it before the
    analysis, so scipy's and matplotlib's imports and first-use set-up (about a
    second on a small CPU) overlap the model load instead of following the
    forward pass. Any error is left for the real import to raise.
    """

    def work() -> None:
        with contextlib.suppress(Exception):
            import scipy.stats  # noqa: F401

            import lamina.stats.permutation  # noqa: F401
            from lamina.report import html
            from lamina.report.figures.render import warm_up

            warm_up()
            html.template()

    thread = threading.Thread(target=work, name="lamina-prewarm", daemon=True)
    thread.start()
    return thread


def run_study(
    model: str | None = None,
    text: str | None = None,
    out: str | Path = "lamina-out",
    *,
    options: StudyOptions | None = None,
    windows: WindowOptions | None = None,
    keep_boilerplate: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    reuse: bool = True,
    progress: bool | None = True,
    command_line: str | None = None,
    log: Callable[[str], None] | None = None,
) -> StudyRun:
    """From a model and a text (default: the embedded model on Alice) to every output in ``out``.

    Re-uses ``out/tokens.parquet`` when its metadata matches the model, text
    and windows (and the site is present), else loads the model and extracts
    the table. In the notebook mode the text keeps its boilerplate and the
    window is the notebook's (the model's context length from the middle of the
    token stream). ``progress``: True/False shows/hides the loading and
    extraction bars, None shows them on a terminal only. ``log`` receives one
    line saying whether the table was re-used and why (e.g. ``print``), or None.
    """
    from lamina.sources import DEFAULT_MODEL, DEFAULT_TEXT, load_text

    model = model or DEFAULT_MODEL
    text = text or DEFAULT_TEXT
    options = options or StudyOptions()
    windows = windows or WindowOptions()
    check_windows(options, windows)
    model_kwargs = dict(model_kwargs or {})
    out_dir = Path(out)
    check_out_dir(out_dir)
    if options.notebook:
        keep_boilerplate = True

    warming = prewarm()
    loaded_text = load_text(text, keep_boilerplate=keep_boilerplate)
    table_file = out_dir / TOKENS_FILE
    table, note = None, "re-extraction asked for"
    if reuse:
        table, note = _reusable_table(
            table_file, model, loaded_text, windows, options, model_kwargs
        )
    if log is not None:
        log(
            f"re-using {table_file} ({note})"
            if table
            else f"extracting: {table_file} not reused ({note})"
        )
    reused = table is not None
    if table is None:
        table = _extract(model, loaded_text, windows, options, model_kwargs, progress, command_line)
    warming.join()
    result = analyze_table(table, options, command_line=command_line, table_path=TOKENS_FILE)
    outputs = write_outputs(
        result, out_dir, table=None if reused else table, token_view=token_view(table, options)
    )
    if reused:
        outputs.table = table_file
    return StudyRun(result=result, outputs=outputs, reused_table=reused, reuse_note=note)


def _reusable_table(
    table_file: Path,
    model: str,
    loaded_text: LoadedText,
    windows: WindowOptions,
    options: StudyOptions,
    model_kwargs: Mapping[str, Any],
) -> tuple[pa.Table | None, str]:
    """The table in ``table_file`` if it serves this run, else None; and why."""
    from lamina.table import read_table, table_metadata

    if not table_file.is_file():
        return None, "no tokens.parquet in the output directory"
    try:
        candidate = read_table(table_file)
        meta = table_metadata(candidate)
    except TableError as exc:
        return None, f"it is not a usable token table: {exc}"
    if options.notebook:
        context = meta.get("model", {}).get("context_length")
        if not isinstance(context, int) or context < 1:
            return None, "it records no context length for the notebook's window"
        windows = notebook_windows(context)
    matches, note = table_matches(
        meta,
        model=model,
        text_sha256=loaded_text.provenance.sha256,
        windows=windows,
        site=options.analysed_sites,
        model_kwargs=model_kwargs,
    )
    return (candidate if matches else None), note


def analyze_path(
    table_path: str | Path,
    out: str | Path | None = None,
    *,
    options: StudyOptions | None = None,
    expect_model: str | None = None,
    command_line: str | None = None,
) -> StudyRun:
    """Analyse an existing token table and write every output (but the table) into ``out``.

    ``out`` defaults to the table's directory. ``expect_model``, when given,
    must be the table's model spec, name or fingerprint (InputError if not).
    """
    from lamina.table import read_table, table_metadata

    options = options or StudyOptions()
    out_dir = Path(out) if out is not None else Path(table_path).parent
    check_out_dir(out_dir)
    table = read_table(table_path)
    meta = table_metadata(table)
    if expect_model is not None:
        m = meta.get("model", {})
        if expect_model not in (m.get("spec"), m.get("name"), m.get("fingerprint")):
            raise InputError(
                f"{table_path} was captured from model {m.get('spec')!r}, not {expect_model!r}; "
                f"drop --model, or extract a table with `lamina run --model {expect_model}`."
            )
    relative = os.path.relpath(Path(table_path), out_dir)
    result = analyze_table(table, options, command_line=command_line, table_path=relative)
    outputs = write_outputs(result, out_dir, token_view=token_view(table, options))
    outputs.table = Path(table_path)
    return StudyRun(
        result=result, outputs=outputs, reused_table=True, reuse_note="analysed an existing table"
    )


def _extract(
    model: str,
    loaded_text: LoadedText,
    windows: WindowOptions,
    options: StudyOptions,
    model_kwargs: Mapping[str, Any],
    progress: bool | None,
    command_line: str | None,
) -> pa.Table:
    """Load the model and extract the table (the layer is checked before the forward pass)."""
    from lamina.capture import extract
    from lamina.sources import load_model

    show = sys.stderr.isatty() if progress is None else progress
    loaded = load_model(model, progress=show, **model_kwargs)
    if options.notebook:
        windows = notebook_windows(loaded.report.context_length)
    n_layers = loaded.report.n_layers
    if options.layer >= n_layers:
        raise InputError(
            f"--layer {options.layer} does not exist: {loaded.report.name} has layers "
            f"0-{n_layers - 1}; pick one of them."
        )
    return extract(
        loaded,
        loaded_text,
        sites=options.analysed_sites,
        windows=windows.mode,
        window=windows.window,
        stride=windows.stride,
        batch_size=windows.batch_size,
        max_tokens=windows.max_tokens,
        bos=windows.bos,
        progress=progress,
        command_line=command_line,
    )
