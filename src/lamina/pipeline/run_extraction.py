"""Extraction for a run: the corpus, the engine (local or Ray), the shards that resume it.

Every run extracts into ``DIR/shards/`` (:mod:`lamina.capture.shards`), so a run
that is interrupted or killed resumes where it stopped, and a local run and a Ray
run of the same inputs share each other's shards.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina.capture.probe_spec import DEFAULT_FOLDS, DEFAULT_PROBE, check_probe_options
from lamina.errors import InputError
from lamina.study.options import StudyOptions, WindowOptions, notebook_windows

if TYPE_CHECKING:
    import pyarrow as pa

    from lamina.sources import Corpus

ENGINES = ("local", "ray")
SHARDS_DIR = "shards"


@dataclasses.dataclass(frozen=True)
class ExtractionOptions:
    """Where and how the forward passes run.

    ``engine``: ``local`` (this process) or ``ray`` (an actor pool); ``workers``
    actors for Ray; ``ray_address`` joins a running cluster (None starts a local
    one); ``shard_windows`` windows per saved shard (the unit of resuming);
    ``allow_nonfinite`` keeps tokens whose logits or norms are NaN or inf, marked,
    instead of stopping; ``probe`` (``auto``, ``none``, ``diffmeans``, ``lda``) adds
    cross-fitted probe scores over ``probe_folds`` contiguous folds (``auto``:
    ``diffmeans`` for ``middle`` windows, else none; see docs/token-table.md).
    """

    engine: str = "local"
    workers: int = 1
    ray_address: str | None = None
    shard_windows: int = 8
    allow_nonfinite: bool = False
    probe: str = DEFAULT_PROBE
    probe_folds: int = DEFAULT_FOLDS

    def __post_init__(self) -> None:
        check_probe_options(self.probe, self.probe_folds)
        if self.engine not in ENGINES:
            raise InputError(
                f"--engine {self.engine!r} is unknown: use one of {', '.join(ENGINES)}."
            )
        for option, value in (("--workers", self.workers), ("--shard-windows", self.shard_windows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{option} {value!r} must be a positive number.")
        if self.engine == "ray" and importlib.util.find_spec("ray") is None:
            raise InputError(
                "--engine ray needs Ray, which is not installed here: "
                "pip install 'lamina[ray]', or use --engine local."
            )
        if self.engine == "local" and (self.workers != 1 or self.ray_address):
            raise InputError(
                "--workers and --ray-address apply to --engine ray; add --engine ray or drop them."
            )


@dataclasses.dataclass
class Extracted:
    """A run's token table and how long loading and extraction took (seconds)."""

    table: pa.Table
    load_seconds: float
    extract_seconds: float


def extract_table(
    model: str,
    corpus: Corpus,
    windows: WindowOptions,
    options: StudyOptions | None,
    *,
    sites: Any,
    model_kwargs: Mapping[str, Any],
    site_template: Any = None,
    extraction: ExtractionOptions,
    shards_dir: Path,
    progress: bool | None,
    command_line: str | None,
) -> Extracted:
    """Load the model (or a Ray actor pool) and extract the table into ``shards_dir``.

    ``options``, when given, is the study the table is for: its notebook mode
    fixes the window, and its ``--layer`` is checked before any forward pass.
    """
    if extraction.engine == "ray":
        return _extract_ray(
            model,
            corpus,
            windows,
            options,
            sites,
            site_template,
            model_kwargs,
            extraction,
            shards_dir,
            progress,
            command_line,
        )
    from lamina.capture import extract
    from lamina.sources import load_model

    started = time.perf_counter()
    show = sys.stderr.isatty() if progress is None else progress
    loaded = load_model(model, progress=show, **model_kwargs)
    if options is not None and options.notebook:
        windows = notebook_windows(loaded.report.context_length)
    if options is not None:
        check_layer(options, loaded.report.n_layers, loaded.report.name)
    loaded_at = time.perf_counter()
    table = extract(
        loaded,
        corpus,
        sites=sites,
        site_template=site_template,
        windows=windows,
        progress=progress,
        command_line=command_line,
        shards_dir=shards_dir,
        shard_windows=extraction.shard_windows,
        allow_nonfinite=extraction.allow_nonfinite,
        probe=extraction.probe,
        probe_folds=extraction.probe_folds,
    )
    return Extracted(table, loaded_at - started, time.perf_counter() - loaded_at)


def check_layer(options: StudyOptions, n_layers: int, name: str) -> None:
    """Refuse, before any forward pass, a --layer the model does not have."""
    if options.layer >= n_layers:
        raise InputError(
            f"--layer {options.layer} does not exist: {name} has layers 0-{n_layers - 1}; "
            "pick one of them."
        )


def _extract_ray(
    model: str,
    corpus: Corpus,
    windows: WindowOptions,
    options: StudyOptions | None,
    sites: Any,
    site_template: Any,
    model_kwargs: Mapping[str, Any],
    extraction: ExtractionOptions,
    shards_dir: Path,
    progress: bool | None,
    command_line: str | None,
) -> Extracted:
    from lamina.capture.ray_engine import extract_with_ray

    if options is not None and options.notebook:
        raise InputError("--compat notebook runs in one process: drop --engine ray.")
    started = time.perf_counter()
    table = extract_with_ray(
        model,
        corpus,
        model_kwargs=model_kwargs,
        sites=sites,
        site_template=site_template,
        windows=windows,
        shards_dir=shards_dir,
        workers=extraction.workers,
        address=extraction.ray_address,
        progress=progress,
        command_line=command_line,
        shard_windows=extraction.shard_windows,
        allow_nonfinite=extraction.allow_nonfinite,
        require_layer=options.layer if options is not None else None,
        probe=extraction.probe,
        probe_folds=extraction.probe_folds,
    )
    return Extracted(table, 0.0, time.perf_counter() - started)


def shards_dir_for(table_path: str | Path) -> Path:
    """Where ``lamina extract --out PATH`` keeps its shards: ``PATH.shards/`` beside it."""
    path = Path(table_path)
    return path.with_name(path.name + ".shards")


def extract_to_file(
    model: str,
    corpus: Corpus,
    windows: WindowOptions,
    out: str | Path,
    *,
    sites: Any,
    site_template: Any,
    model_kwargs: Mapping[str, Any],
    extraction: ExtractionOptions,
    progress: bool | None,
    command_line: str | None,
) -> pa.Table:
    """``lamina extract``: the table of ``corpus`` written atomically to ``out``.

    ``out`` stays locked from the start to its replacement; its shards are kept
    in ``out.shards/`` (:func:`shards_dir_for`).
    """
    from lamina._staging import output_file
    from lamina.table import write_table

    check_output_path(out, corpus)
    with output_file(out):
        extracted = extract_table(
            model,
            corpus,
            windows,
            None,
            sites=sites,
            site_template=site_template,
            model_kwargs=model_kwargs,
            extraction=extraction,
            shards_dir=shards_dir_for(out),
            progress=progress,
            command_line=command_line,
        )
        write_table(extracted.table, out)
    return extracted.table


def check_output_path(out: str | Path, corpus: Corpus) -> None:
    """Refuse an ``out`` that is one of the corpus's input files, or an existing file that is
    not a lamina token table: lamina replaces only files it wrote (checked before any model
    loads)."""
    import pyarrow.parquet as pq

    from lamina.errors import OutputError
    from lamina.table import METADATA_KEY

    path = Path(out).expanduser()
    target = path.resolve()
    inputs = [Path(spec).expanduser() for spec in corpus.specs]
    inputs += [Path(str(doc.provenance.source)) for doc in corpus.documents]
    for candidate in inputs:
        if candidate.is_file() and candidate.resolve() == target:
            raise OutputError(
                f"--out {out} is an input text; lamina never overwrites its input: "
                "choose another --out."
            )
    if not path.is_file():
        return
    try:
        metadata = pq.read_schema(path).metadata or {}
    except Exception:  # not Parquet at all (pyarrow raises several kinds)
        metadata = {}
    if METADATA_KEY.encode() not in metadata:
        raise OutputError(
            f"--out {out} exists and is not a lamina token table; lamina replaces only files "
            "it wrote: choose another --out or remove that file."
        )
