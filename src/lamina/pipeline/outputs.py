"""A study's output directory: what is in it, writing it, and rebuilding its report.

``tokens.parquet``  the token table
``results.json``    every number, its parameters and units (``docs/results-format.md``)
``layers.csv``      one row per layer (Part 6)
``figures/``        one PNG and one SVG per figure, named by part (Parts 2-7)
``report.html``     one self-contained page with provenance, headline, tables, figures
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from lamina._io import atomic_open
from lamina.errors import OutputError
from lamina.study.result import StudyResult, dumps_results, load_results

if TYPE_CHECKING:
    import pyarrow as pa

TOKENS_FILE = "tokens.parquet"
RESULTS_FILE = "results.json"
LAYERS_FILE = "layers.csv"
REPORT_FILE = "report.html"
FIGURES_DIR = "figures"


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


def write_outputs(
    result: StudyResult,
    out_dir: str | Path,
    *,
    table: pa.Table | None = None,
    workers: int | None = None,
) -> StudyOutputs:
    """Render the figures and report in memory, then write every output file atomically.

    Nothing is written if rendering fails. ``table``, when given, is written
    as ``tokens.parquet`` too. ``workers`` is the number of processes that
    render figures (default: up to 2).
    """
    from lamina.report import html
    from lamina.report.figures.render import render_figures
    from lamina.report.summary import layers_csv

    out = Path(out_dir)
    check_out_dir(out)
    results = result.to_dict()
    rendered = render_figures(result, workers=workers)
    page = html.render_report(results, {name: r["png"] for name, r in rendered.items()})
    csv = layers_csv(results)
    text = dumps_results(results)

    figures_dir = out / FIGURES_DIR
    if figures_dir.exists() and not figures_dir.is_dir():
        raise OutputError(
            f"{figures_dir} is a file, not a directory; remove it or pick another --out."
        )
    written: list[Path] = []
    table_path = None
    if table is not None:
        from lamina.table import write_table

        table_path = out / TOKENS_FILE
        write_table(table, table_path)
    for name, formats in rendered.items():
        for ext, data in formats.items():
            path = figures_dir / f"{name}.{ext}"
            with atomic_open(path, "wb") as fh:
                fh.write(data)
            written.append(path)
    with atomic_open(out / LAYERS_FILE, "w", newline="") as fh:
        fh.write(csv)
    with atomic_open(out / RESULTS_FILE) as fh:
        fh.write(text)
    with atomic_open(out / REPORT_FILE) as fh:
        fh.write(page)
    return StudyOutputs(
        out_dir=out,
        results=out / RESULTS_FILE,
        layers=out / LAYERS_FILE,
        report=out / REPORT_FILE,
        figures=written,
        table=table_path,
    )


def rebuild_report(out_dir: str | Path) -> Path:
    """Rebuild ``DIR/report.html`` from ``DIR/results.json`` and ``DIR/figures/*.png``."""
    from lamina.report import html
    from lamina.report._style import figure_names

    out = Path(out_dir)
    check_out_dir(out)
    results = load_results(out)
    pngs: dict[str, bytes] = {}
    for name in figure_names(results):
        path = out / FIGURES_DIR / f"{name}.png"
        if not path.is_file():
            raise OutputError(f"{path} is missing; re-run `lamina analyze` to redraw the figures.")
        pngs[name] = path.read_bytes()
    page = html.render_report(results, pngs)
    with atomic_open(out / REPORT_FILE) as fh:
        fh.write(page)
    return out / REPORT_FILE
