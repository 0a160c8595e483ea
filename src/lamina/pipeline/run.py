"""The study from a model and a text, or from a token table, to every output file."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina.errors import InputError, TableError
from lamina.pipeline.outputs import (
    FIGURES_DIR,
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
    import pandas as pd
    import pyarrow as pa
    from matplotlib.figure import Figure

    from lamina.sources import Corpus, LoadedModel


@dataclasses.dataclass
class StudyRun:
    """What :func:`run_study` or :func:`analyze_path` produced.

    In a notebook it shows as the headline, the laminar figure (the run's own PNG)
    and the per-layer table; its ``repr`` is a few lines.
    """

    result: StudyResult
    outputs: StudyOutputs
    reused_table: bool
    reuse_note: str

    def __repr__(self) -> str:
        how = "re-used" if self.reused_table else "extracted"
        return (
            f"StudyRun in {str(self.outputs.out_dir)!r} (token table {how}: "
            f"{self.reuse_note[:120]}); report {self.outputs.report.name}\n{self.result!r}"
        )

    def _repr_html_(self) -> str:
        from html import escape

        from lamina.study.result_view import html

        png = self._figure_png()
        image = (
            f'<img alt="laminar profile" style="max-width:100%;width:900px" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"/>'
            if png
            else ""
        )
        where = f"<p>outputs: <code>{escape(str(self.outputs.out_dir))}</code></p>"
        return html(self.result, image + where)

    def _figure_png(self) -> bytes | None:
        """The run's PNG of the laminar profile, or None if it is gone."""
        png = self.outputs.out_dir / FIGURES_DIR / "part6_laminar_profile.png"
        try:
            return png.read_bytes()
        except OSError:
            return None

    def to_pandas(self, kind: str = "layers") -> pd.DataFrame:
        """A pandas ``DataFrame``: ``kind`` as :meth:`StudyResult.to_pandas`, ``"tokens"``
        read from the run's token table (``outputs.table``)."""
        table = None
        if kind == "tokens":
            if self.outputs.table is None:
                raise InputError("this run kept no token table, so there is no tokens frame.")
            table = load_table_input(Path(self.outputs.table))
        return self.result.to_pandas(kind, table=table)

    def figure(self, name: str = "part6") -> Figure:
        """One of the run's figures as a matplotlib ``Figure`` (see :func:`lamina.figure`)."""
        from lamina.report.figures import figure

        return figure(self.result, name)


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

    ``model`` is a model spec, or a causal LM loaded with ``transformers`` and its
    ``tokenizer``: identified by class, config hash and tensor fingerprint, run in this process
    (:mod:`lamina.sources.loaded_model`). ``text`` is one text spec or several (see
    :func:`lamina.sources.load_corpus`). Re-uses ``out/tokens.parquet`` when its metadata
    matches the model, text and windows (and the site is present); else extracts it, resuming
    from the shards in ``out/shards/`` (``extraction`` says where the forward passes run and
    whether NaN or inf outputs are kept). ``max_text_bytes`` caps every text read. In the
    notebook mode the text keeps its boilerplate and the window is the notebook's (the model's
    context length from the middle of the token stream). ``progress``: True/False shows/hides
    the loading and extraction bars, None shows them on a terminal only. ``log`` receives one
    line saying whether the table was re-used and why (e.g. ``print``), or None. The output set
    is written as one, ``out`` locked meanwhile (:func:`lamina.pipeline.outputs.output_set`).
    The result records how long each stage took (``timings``).
    """
    from lamina.sources import load_corpus

    clock = Stopwatch()
    options = options or StudyOptions()
    windows = windows or WindowOptions()
    extraction = extraction or ExtractionOptions()
    check_windows(options, windows)
    model, model_kwargs = _model_of_run(model, tokenizer, model_kwargs, extraction, options)
    out_dir = Path(out)
    check_out_dir(out_dir)
    keep_boilerplate = keep_boilerplate or options.notebook

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


def _model_of_run(
    model: Any,
    tokenizer: Any,
    model_kwargs: Mapping[str, Any] | None,
    extraction: ExtractionOptions,
    options: StudyOptions,
) -> tuple[str | LoadedModel, dict[str, Any]]:
    """The run's model spec (default the embedded model), or its model object wrapped
    (then no model_kwargs are left). The notebook mode runs a spec in float32 unless
    asked otherwise: the reference study did, and ``auto`` may mean bfloat16 on a CPU."""
    from lamina.sources import DEFAULT_MODEL, load_model

    model_kwargs = dict(model_kwargs or {})
    if model is None or (isinstance(model, str) and not model):
        model = DEFAULT_MODEL
    if isinstance(model, str):
        if tokenizer is not None:
            raise InputError(
                f"tokenizer= goes with a model object; the model {model!r} brings its own: drop it."
            )
        if options.notebook and model_kwargs.get("dtype", "auto") == "auto":
            model_kwargs["dtype"] = "float32"
        return model, model_kwargs
    if extraction.engine != "local":
        raise InputError(
            "a model passed in as an object runs in this process: use engine 'local', or "
            "give a model spec for Ray's workers to load."
        )
    placed = {k: model_kwargs[k] for k in ("device", "dtype", "revision") if k in model_kwargs}
    return load_model(model, tokenizer, **placed), {}


@dataclasses.dataclass(frozen=True)
class RunJob:
    """What a run studies: its directory, the model (a spec, or a model object wrapped),
    the corpus and every option."""

    out_dir: Path
    model: str | LoadedModel
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
    spec = job.model
    if not isinstance(spec, str):
        matches, note = _same_object(meta.get("model", {}), spec.report.to_dict())
        if not matches:
            return None, note
        spec = spec.report.spec
    matches, note = table_matches(
        meta,
        model=spec,
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


def _same_object(recorded: Mapping[str, Any], report: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether a table was captured from the same weights, config and dtype as a model
    object (its fingerprint hashes every tensor, so equal fingerprints are equal weights)."""
    for key, what in (
        ("fingerprint", "other weights"),
        ("config_sha256", "another config"),
        ("dtype", "another dtype"),
    ):
        if recorded.get(key) != report.get(key):
            return False, (
                f"it was captured from {what} ({key} {str(recorded.get(key))[:30]!r}, "
                f"not {str(report.get(key))[:30]!r})"
            )
    return True, "same weights"


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
