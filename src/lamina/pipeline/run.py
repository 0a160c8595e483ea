"""The study from a model and a text, or from a token table, to every output file."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina.errors import InputError, TableError
from lamina.pipeline.outputs import (
    TOKENS_FILE,
    StudyOutputs,
    check_out_dir,
    output_set,
    write_outputs,
)
from lamina.pipeline.reuse import table_matches
from lamina.pipeline.run_extraction import SHARDS_DIR, ExtractionOptions, extract_table
from lamina.pipeline.timing import Stopwatch
from lamina.study import analyze_table
from lamina.study.options import StudyOptions, WindowOptions, check_windows, notebook_windows
from lamina.study.result import StudyResult
from lamina.study.token_view import token_view

if TYPE_CHECKING:
    import pyarrow as pa

    from lamina.sources import Corpus


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

    # Not a daemon: the interpreter waits for it at exit; a daemon thread stopped inside
    # matplotlib's C++ code aborts the process ("terminate called ...", exit 134).
    thread = threading.Thread(target=work, name="lamina-prewarm", daemon=False)
    thread.start()
    return thread


def run_study(
    model: str | Any | None = None,
    text: str | Sequence[str] | None = None,
    out: str | Path = "lamina-out",
    *,
    tokenizer: Any = None,
    options: StudyOptions | None = None,
    windows: WindowOptions | None = None,
    keep_boilerplate: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    reuse: bool = True,
    progress: bool | None = True,
    command_line: str | None = None,
    log: Callable[[str], None] | None = None,
    text_field: str = "text",
    skip_bad_docs: bool = False,
    extraction: ExtractionOptions | None = None,
    max_text_bytes: int | None = None,
) -> StudyRun:
    """From a model and a text or corpus (default: the embedded model on Alice) to every output.

    ``text`` is one text spec or several (see :func:`lamina.sources.load_corpus`).
    Re-uses ``out/tokens.parquet`` when its metadata matches the model, text
    and windows (and the site is present); else extracts it, resuming from the
    shards in ``out/shards/`` (``extraction`` says where the forward passes run
    and whether NaN or inf outputs are kept). ``max_text_bytes`` caps every text
    read. In the notebook mode the text keeps its boilerplate and the window is
    the notebook's (the model's context length from the middle of the token
    stream). ``progress``: True/False shows/hides the loading and extraction
    bars, None shows them on a terminal only. ``log`` receives one line saying
    whether the table was re-used and why (e.g. ``print``), or None. The output
    set is written as one, ``out`` locked meanwhile
    (:func:`lamina.pipeline.outputs.output_set`). The result records how long each
    stage took (``timings``).
    """
    from lamina.sources import DEFAULT_MODEL, load_corpus

    clock = Stopwatch()
    model = model or DEFAULT_MODEL
    options = options or StudyOptions()
    windows = windows or WindowOptions()
    extraction = extraction or ExtractionOptions()
    check_windows(options, windows)
    model_kwargs = dict(model_kwargs or {})
    out_dir = Path(out)
    check_out_dir(out_dir)
    if options.notebook:
        keep_boilerplate = True

    warming = prewarm()
    corpus = load_corpus(
        text,
        text_field=text_field,
        keep_boilerplate=keep_boilerplate,
        skip_bad_docs=skip_bad_docs,
        max_bytes=max_text_bytes,
    )
    clock.lap("load")
    say = log or (lambda line: None)
    for skipped in corpus.skipped:
        say(f"skipped document {skipped.name}: {skipped.reason}")
    job = RunJob(out_dir, model, corpus, windows, options, model_kwargs, extraction)
    # The directory stays locked from the re-use check to the commit of the new set.
    with output_set(out_dir) as staged:
        table, reused, note = _table_for(job, reuse, progress, command_line, say, clock)
        warming.join()
        result = analyze_table(table, options, command_line=command_line, table_path=TOKENS_FILE)
        clock.lap("analysis")
        outputs = write_outputs(
            result,
            out_dir,
            table=None if reused else table,
            timings=clock,
            staged=staged,
            token_view=token_view(table, options),
        )
    if reused:
        outputs.table = out_dir / TOKENS_FILE
    return StudyRun(result=result, outputs=outputs, reused_table=reused, reuse_note=note)


@dataclasses.dataclass(frozen=True)
class RunJob:
    """What a run studies: its directory, the model, the corpus and every option."""

    out_dir: Path
    model: str
    corpus: Corpus
    windows: WindowOptions
    options: StudyOptions
    model_kwargs: Mapping[str, Any]
    extraction: ExtractionOptions


def _table_for(
    job: RunJob,
    reuse: bool,
    progress: bool | None,
    command_line: str | None,
    say: Callable[[str], None],
    clock: Stopwatch,
) -> tuple[pa.Table, bool, str]:
    """The run's token table, re-used from its directory or extracted; whether re-used, why."""
    table_file = job.out_dir / TOKENS_FILE
    table, note = None, "re-extraction asked for"
    if reuse:
        table, note = _reusable_table(table_file, job)
    reused = table is not None
    say(
        f"re-using {table_file} ({note})"
        if reused
        else f"extracting: {table_file} not reused ({note})"
    )
    clock.lap("load")
    if table is None:
        extracted = extract_table(
            job.model,
            job.corpus,
            job.windows,
            job.options,
            sites=job.options.analysed_sites,
            model_kwargs=job.model_kwargs,
            extraction=job.extraction,
            shards_dir=job.out_dir / SHARDS_DIR,
            progress=progress,
            command_line=command_line,
        )
        table = extracted.table
        clock.add("load", extracted.load_seconds)
        clock.add("extraction", extracted.extract_seconds)
        clock.mark()
    return table, reused, note


def _reusable_table(table_file: Path, job: RunJob) -> tuple[pa.Table | None, str]:
    """The table in ``table_file`` if it serves this run, else None; and why."""
    from lamina.table import read_table, table_metadata

    if not table_file.is_file():
        return None, "no tokens.parquet in the output directory"
    try:
        candidate = read_table(table_file)
        meta = table_metadata(candidate)
    except TableError as exc:
        return None, f"it is not a usable token table: {exc}"
    windows = job.windows
    if job.options.notebook:
        context = meta.get("model", {}).get("context_length")
        if not isinstance(context, int) or context < 1:
            return None, "it records no context length for the notebook's window"
        windows = notebook_windows(context)
    matches, note = table_matches(
        meta,
        model=job.model,
        text_sha256=job.corpus.sha256,
        windows=windows,
        site=job.options.analysed_sites,
        model_kwargs=job.model_kwargs,
    )
    if matches and not job.extraction.allow_nonfinite and "nonfinite" in candidate.column_names:
        n_bad = int(candidate.column("nonfinite").to_numpy(zero_copy_only=False).sum())
        if n_bad:
            matches, note = False, f"it has {n_bad} token(s) with NaN or inf outputs"
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

    ``table_path`` is a token table file, or the shards directory of a run whose
    shards are all done (its table is assembled from it). ``out`` defaults to the
    table's directory (a shards directory's parent). ``expect_model``, when
    given, must be the table's model spec, name or fingerprint (InputError if not).
    """
    from lamina.table import table_metadata

    clock = Stopwatch()
    options = options or StudyOptions()
    table_path = Path(table_path)
    out_dir = Path(out) if out is not None else table_path.parent
    check_out_dir(out_dir)
    with output_set(out_dir) as staged:
        table = load_table_input(table_path)
        meta = table_metadata(table)
        if expect_model is not None:
            m = meta.get("model", {})
            if expect_model not in (m.get("spec"), m.get("name"), m.get("fingerprint")):
                raise InputError(
                    f"{table_path} was captured from model {m.get('spec')!r}, not "
                    f"{expect_model!r}; drop --model, or extract a table with "
                    f"`lamina run --model {expect_model}`."
                )
        relative = os.path.relpath(Path(table_path), out_dir)
        clock.lap("load")
        result = analyze_table(table, options, command_line=command_line, table_path=relative)
        clock.lap("analysis")
        outputs = write_outputs(
            result, out_dir, timings=clock, staged=staged, token_view=token_view(table, options)
        )
    outputs.table = Path(table_path)
    return StudyRun(
        result=result, outputs=outputs, reused_table=True, reuse_note="analysed an existing table"
    )


def load_table_input(path: Path) -> pa.Table:
    """The token table a command analyses: a Parquet file, or a run's shards directory.

    Any other directory is refused here, the one place that decides what
    ``lamina analyze`` accepts (a folder of Parquet files may hold several texts
    or models, which Parquet would silently merge).
    """
    from lamina.capture.assemble import is_shards_directory, table_from_shards
    from lamina.table import read_table

    if not path.is_dir():
        return read_table(path)
    if not is_shards_directory(path):
        hint = path / SHARDS_DIR if (path / SHARDS_DIR).is_dir() else path / TOKENS_FILE
        raise InputError(
            f"{path} is a directory; `lamina analyze` takes one token table file, or the shards "
            f"directory of a run, e.g. {hint}."
        )
    return table_from_shards(path)
