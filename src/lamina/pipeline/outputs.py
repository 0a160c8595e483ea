"""A study's output directory: what is in it, writing it, and rebuilding its report.

``tokens.parquet``  the token table
``results.json``    every number, its parameters and units (``docs/results-format.md``)
``layers.csv``      one row per layer (Part 6)
``figures/``        one PNG and one SVG per figure, named by part (Parts 2-7), and the
                    sites' figures when the run analysed several sites or attn_head
``report.html``     one self-contained page with provenance, headline, tables, figures
                    and the interactive profile and token view

The set is replaced as one (:mod:`lamina._staging`): a writer locks the directory,
writes the new set into a staging directory inside it and moves it into place at the
end, ``report.html`` last; :func:`output_set` opens that for this directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina._io import atomic_open
from lamina._staging import StagedOutputs, remove_stale
from lamina._staging import output_set as _output_set
from lamina.errors import OutputError
from lamina.pipeline.timing import Stopwatch
from lamina.study.result import StudyResult, dumps_results, load_results

if TYPE_CHECKING:
    import pyarrow as pa

TOKENS_FILE = "tokens.parquet"
RESULTS_FILE = "results.json"
LAYERS_FILE = "layers.csv"
REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
FORMATS = ("png", "svg")
#: The entries of the set, and the order of the last ones moved into place.
OUTPUT_NAMES = (TOKENS_FILE, RESULTS_FILE, LAYERS_FILE, REPORT_FILE, FIGURES_DIR)
COMMIT_LAST = (RESULTS_FILE, REPORT_FILE)


@dataclasses.dataclass
class StudyOutputs:
    """Paths written by :func:`write_outputs`."""

    out_dir: Path
    results: Path
    layers: Path
    report: Path
    figures: list[Path]
    table: Path | None


def check_out_dir(out: Path) -> None:
    """Refuse an output directory path that is a file."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a directory; give a directory path.")


@contextlib.contextmanager
def output_set(out: str | Path) -> Iterator[StagedOutputs]:
    """The study directory ``out`` locked, with a staging directory for its new set.

    Every command that writes a study directory (run, analyze, report) writes inside
    this block; see :func:`lamina._staging.output_set`.
    """
    from lamina.report._style import FIGURE_NAMES, SITE_FIGURES

    out = Path(out)
    check_out_dir(out)
    with _output_set(out, names=OUTPUT_NAMES, last=COMMIT_LAST) as staged:
        # figures/ is replaced whole by a new set, but `lamina report` keeps it: clean it too.
        remove_stale(
            out / FIGURES_DIR,
            [f"{n}.{ext}" for n in (*FIGURE_NAMES, *SITE_FIGURES) for ext in FORMATS],
        )
        yield staged


def write_outputs(
    result: StudyResult,
    out_dir: str | Path,
    *,
    table: pa.Table | None = None,
    workers: int | None = None,
    timings: Stopwatch | None = None,
    staged: StagedOutputs | None = None,
    token_view: Mapping[str, Any] | None = None,
) -> StudyOutputs:
    """Render the figures and report in memory, then write the output set as one.

    Nothing is written if rendering fails. ``table``, when given, is written
    as ``tokens.parquet`` too. ``workers`` is the number of processes that
    render figures (default: up to 2). ``timings``, the run's stopwatch, gets the
    figures' and the report's seconds and is recorded in ``results.json``.
    ``staged``: the staging directory of an :func:`output_set` the caller holds
    (the set is moved into place when that block ends); without it, this call
    opens and commits its own. ``token_view`` is the report's token view
    (:func:`lamina.study.token_view.token_view`); None omits it, saying so.
    """
    from lamina.report import html
    from lamina.report.figures.render import render_figures
    from lamina.report.summary import layers_csv

    out = Path(out_dir)
    check_out_dir(out)
    if staged is None:
        with output_set(out) as own:
            return write_outputs(
                result,
                out,
                table=table,
                workers=workers,
                timings=timings,
                staged=own,
                token_view=token_view,
            )
    clock = timings or Stopwatch()
    clock.mark()
    rendered = render_figures(result, workers=workers)
    clock.lap("figures")
    results = result.to_dict()
    pngs = {name: r["png"] for name, r in rendered.items()}
    page = html.render_report(results, pngs, token_view)
    csv = layers_csv(results)
    stage = staged.path
    written: list[Path] = []
    table_path = None
    if table is not None:
        from lamina.table import write_table

        table_path = out / TOKENS_FILE
        write_table(table, stage / TOKENS_FILE)
    for name, formats in rendered.items():
        for ext, data in formats.items():
            with atomic_open(stage / FIGURES_DIR / f"{name}.{ext}", "wb") as fh:
                fh.write(data)
            written.append(out / FIGURES_DIR / f"{name}.{ext}")
    with atomic_open(stage / LAYERS_FILE, "w", newline="") as fh:
        fh.write(csv)
    with atomic_open(stage / REPORT_FILE) as fh:
        fh.write(page)
    clock.lap("report")
    if timings is not None:
        result.timings = clock.to_dict()
    with atomic_open(stage / RESULTS_FILE) as fh:
        fh.write(dumps_results(result.to_dict()))
    return StudyOutputs(
        out_dir=out,
        results=out / RESULTS_FILE,
        layers=out / LAYERS_FILE,
        report=out / REPORT_FILE,
        figures=written,
        table=table_path,
    )


def rebuild_report(out_dir: str | Path) -> Path:
    """Rebuild ``DIR/report.html`` from ``DIR/results.json``, ``DIR/figures/*.png`` and the table.

    The token view is rebuilt from the token table that ``results.json`` names
    (relative to ``DIR``); without it the report says the view is omitted.
    """
    from jinja2 import TemplateError

    from lamina.report import html
    from lamina.report._style import figure_names

    out = Path(out_dir)
    check_out_dir(out)
    if not out.is_dir():
        raise OutputError(f"{out} does not exist; give the --out directory of a `lamina run`.")
    with output_set(out) as staged:
        # Read under the lock, after any interrupted commit was finished: one set.
        results = load_results(out)
        pngs: dict[str, bytes] = {}
        for name in figure_names(results):
            path = out / FIGURES_DIR / f"{name}.png"
            if not path.is_file():
                raise OutputError(
                    f"{path} is missing; re-run `lamina analyze` to redraw the figures."
                )
            pngs[name] = path.read_bytes()
        try:
            page = html.render_report(results, pngs, _token_view_from_disk(out, results))
        except (TemplateError, TypeError, KeyError, ValueError, AttributeError) as exc:
            raise OutputError(
                f"{out / RESULTS_FILE} cannot be rendered ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:100] if str(exc) else ''}); re-run `lamina analyze` "
                "on its token table."
            ) from exc
        with atomic_open(staged / REPORT_FILE) as fh:
            fh.write(page)
    return out / REPORT_FILE


def _token_view_from_disk(out: Path, results: Mapping[str, Any]) -> dict[str, Any] | None:
    """The token view from the table ``results.json`` names, if it is still there."""
    from lamina.errors import TableError
    from lamina.study import StudyOptions
    from lamina.study.token_view import token_view
    from lamina.table import read_table

    relative = (results.get("provenance") or {}).get("table", {}).get("path")
    if not relative or not (out / relative).is_file():
        return None
    params = results["parameters"]
    try:
        table = read_table(out / relative)
        return token_view(table, StudyOptions(site=params["site"], layer=params["layer"]))
    except TableError:
        return None
