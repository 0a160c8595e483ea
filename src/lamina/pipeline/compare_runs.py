"""``lamina compare``: finished runs side by side, and ``lamina run`` with several models.

:func:`compare_runs` reads each run's ``results.json``, checks that their
analyses can be compared, re-analyses a run from its ``tokens.parquet`` when
asked to (``reanalyze=True``), and writes the comparison into its own
directory:

``comparison.json``  runs, series of per-layer points, the table (docs/results-format.md)
``comparison.csv``   the comparison table: one row per run and site
``profiles.csv``     one row per run, site and layer
``figures/compare_profiles.png``, ``.svg``  the profiles on one axis
``report.html``      one self-contained page

Settings that make profiles incomparable (:data:`CRITICAL`: the statistic, the
bins and their binning, the alternative, the compatibility mode, what ``correct`` means) refuse
the comparison with one sentence unless ``reanalyze``; other analysis settings
(:data:`SECONDARY`) are noted, or aligned by the re-analysis. A re-analysis
uses the first run's settings with the run's own sites and layer, and is said
on the log and in the comparison.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lamina._io import atomic_open
from lamina.errors import InputError, OutputError
from lamina.pipeline.comparison_data import build_comparison
from lamina.pipeline.outputs import FIGURES_DIR, REPORT_FILE, RESULTS_FILE, check_out_dir
from lamina.study.options import CORRECT_DEFINITION, StudyOptions
from lamina.study.result import dumps_results, load_results

COMPARISON_FILE = "comparison.json"
COMPARISON_TABLE = "comparison.csv"
PROFILES_TABLE = "profiles.csv"
COMPARE_DIR = "compare"

#: Settings whose difference makes two profiles incomparable: (key, what it is).
CRITICAL = (
    ("statistic_computed", "statistic"),
    ("bins", "bins"),
    ("binning", "binning"),
    ("alternative", "alternative"),
    ("compat", "compatibility mode"),
    ("correct_definition", "definition of a correct prediction"),
)
#: Settings that change p-values or significance marks but not what is compared.
SECONDARY = (
    ("permutations", "permutations"),
    ("correction", "correction"),
    ("correction_scope", "correction scope"),
    ("alpha", "alpha"),
    ("seed", "seed"),
)


@dataclasses.dataclass
class CompareOutputs:
    """What :func:`compare_runs` wrote, and the comparison itself."""

    out_dir: Path
    comparison: dict[str, Any]
    files: list[Path]

    @property
    def report(self) -> Path:
        return self.out_dir / REPORT_FILE


def setting(params: Mapping[str, Any], key: str) -> Any:
    """A run's analysis setting as the comparison reads it."""
    if key == "bins":
        return params.get("bin_rule") or params.get("bins")
    if key == "correct_definition":
        return params.get(key, CORRECT_DEFINITION)
    if key == "binning":  # runs from before robust bins used the range
        return params.get(key, "range")
    if key == "correction_scope":
        return params.get(key, "site")
    return params.get(key)


def differences(
    first: Mapping[str, Any], other: Mapping[str, Any], keys: Sequence[tuple[str, str]]
) -> list[tuple[str, Any, Any]]:
    """``(what, other's value, first's value)`` for every setting of ``keys`` that differs."""
    return [
        (name, setting(other, key), setting(first, key))
        for key, name in keys
        if setting(other, key) != setting(first, key)
    ]


def _words(diffs: Sequence[tuple[str, Any, Any]], first: Path) -> str:
    """``"statistic ks and bins 20 where DIR used js and 30"``."""
    theirs = " and ".join(f"{name} {other}" for name, other, _ in diffs)
    ours = " and ".join(str(value) for _, _, value in diffs)
    return f"{theirs} where {first} used {ours}"


def compare_runs(
    dirs: Sequence[str | Path],
    out: str | Path,
    *,
    reanalyze: bool = False,
    command_line: str | None = None,
    log: Callable[[str], None] | None = None,
) -> CompareOutputs:
    """Compare finished runs (their output directories) and write the comparison into ``out``."""
    directories = [Path(d) for d in dirs]
    if len(directories) < 2:
        raise InputError("a comparison needs at least two run directories; give two or more.")
    out_dir = Path(out)
    check_out_dir(out_dir)
    if any(out_dir.resolve() == d.resolve() for d in directories):
        raise InputError(
            f"--out {out_dir} is one of the compared runs, whose report it would replace; "
            "pick another directory."
        )
    results = [load_results(d) for d in directories]
    first = results[0]["parameters"]
    reanalysed: list[str | None] = [None] * len(results)
    notes: list[str] = []
    for k in range(1, len(results)):
        params = results[k]["parameters"]
        critical = differences(first, params, CRITICAL)
        secondary = differences(first, params, SECONDARY)
        if not critical and not (reanalyze and secondary):
            if secondary:
                notes.append(f"{directories[k]} used {_words(secondary, directories[0])}.")
            continue
        _check_reanalysable(directories[k], directories[0], critical, reanalyze)
        how = (
            f"re-analysed from its token table with {directories[0]}'s settings (it used "
            f"{_words(critical + secondary, directories[0])})"
        )
        if log is not None:
            log(f"{directories[k]}: {how}")
        results[k] = _reanalyse(directories[k], results[k], first)
        reanalysed[k] = how
    if any(
        ("sites" in r and any(p["kind"] == "heads" for p in r["sites"]["profiles"]))
        for r in results
    ):
        notes.append(
            "attn_head is compared in each run's own report, not here (its tests are per head)."
        )
    comparison = build_comparison(
        results,
        [str(d) for d in directories],
        reanalysed=reanalysed,
        notes=notes,
        created=_utc_now(),
        command_line=command_line,
    )
    return CompareOutputs(out_dir, comparison, write_comparison(comparison, out_dir))


def _check_reanalysable(
    directory: Path, first: Path, critical: list[tuple[str, Any, Any]], reanalyze: bool
) -> None:
    definition = [d for d in critical if d[0].startswith("definition")]
    if definition:
        raise InputError(
            f"{directory} counts a prediction as correct by another rule "
            f"({_words(definition, first)}); extract both runs with the same rule to compare them."
        )
    if not reanalyze:
        raise InputError(
            f"{directory} used {_words(critical, first)}, which makes their profiles "
            "incomparable; pass --reanalyze to re-analyse it from its token table with "
            f"{first}'s settings."
        )


def _reanalyse(
    directory: Path, results: Mapping[str, Any], first: Mapping[str, Any]
) -> dict[str, Any]:
    """``directory``'s study again from its token table, with ``first``'s analysis settings."""
    from lamina.study import analyze_table
    from lamina.table import read_table

    relative = (results.get("provenance") or {}).get("table", {}).get("path")
    path = directory / relative if relative else None
    if path is None or not path.is_file():
        raise InputError(
            f"cannot re-analyse {directory}: its token table ({path or 'not recorded'}) is "
            "missing; run it again with the first run's analysis settings instead."
        )
    own = results["parameters"]
    options = reanalysis_options(first, own)
    table = read_table(path)
    return analyze_table(table, options, table_path=str(relative)).to_dict()


def reanalysis_options(first: Mapping[str, Any], own: Mapping[str, Any]) -> StudyOptions:
    """The first run's analysis options with a run's own sites and layer."""
    names = {f.name for f in dataclasses.fields(StudyOptions)}
    values = {k: v for k, v in first.items() if k in names}
    values.setdefault("binning", setting(first, "binning"))
    if values.get("compat") == "notebook" or values.get("correction") == "none":
        values.pop("correction", None)
    sites = own.get("sites") or [own["site"]]
    values.update(site=own["site"], layer=own["layer"], sites=tuple(sites))
    values["sweep_bins"] = tuple(values.get("sweep_bins", (10, 50)))
    return StudyOptions(**values)


def write_comparison(comparison: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Render the figure and the report in memory, then write every file of the comparison."""
    from lamina.report.comparison_page import comparison_csv, profiles_csv, render_compare
    from lamina.report.figures.render import render_compare_figure

    figure = render_compare_figure(comparison)
    page = render_compare(comparison, figure["png"])
    texts = {
        COMPARISON_FILE: dumps_results(comparison),
        COMPARISON_TABLE: comparison_csv(comparison),
        PROFILES_TABLE: profiles_csv(comparison),
    }
    figures_dir = out_dir / FIGURES_DIR
    if figures_dir.exists() and not figures_dir.is_dir():
        raise OutputError(f"{figures_dir} is a file, not a directory; pick another --out.")
    written = []
    for ext, data in figure.items():
        path = figures_dir / f"compare_profiles.{ext}"
        with atomic_open(path, "wb") as fh:
            fh.write(data)
        written.append(path)
    for name, text in texts.items():
        with atomic_open(out_dir / name, "w", newline="") as fh:
            fh.write(text)
        written.append(out_dir / name)
    with atomic_open(out_dir / REPORT_FILE) as fh:
        fh.write(page)
    return [*written, out_dir / REPORT_FILE]


def model_dir_names(models: Sequence[str]) -> list[str]:
    """One directory name per model spec: readable, distinct, never ``compare``."""
    names: list[str] = []
    for spec in models:
        base = Path(spec.rstrip("/\\")).name if os.path.exists(spec) else spec
        base = re.sub(r"\.gguf$", "", base)
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "model"
        if name == COMPARE_DIR:
            name = f"{name}-model"
        candidate, k = name, 2
        while candidate in names:
            candidate, k = f"{name}-{k}", k + 1
        names.append(candidate)
    return names


#: The ``load_model`` keyword arguments that say which files a spec resolves to.
_RESOLVE_KWARGS = ("revision", "trust_remote_code", "allow_pickle")


def check_models(
    models: Sequence[str],
    *,
    layer: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> list[int]:
    """Each model's number of layers, after checking that every model can be loaded.

    Every spec is resolved (found in the cache or downloaded, a GGUF file
    dequantised) and its config read, its weights and the safety checks
    included, without loading any weight; ``layer`` (``--layer``) must exist in
    every model. Raises the first model's error, one sentence naming it, so that
    a run of several models fails before it extracts any of them.
    """
    from lamina.sources._hf import progress_bars
    from lamina.sources.hfconfig import config_dims
    from lamina.sources.models import model_fingerprint, model_skeleton, resolve_model

    kwargs = {k: v for k, v in (model_kwargs or {}).items() if k in _RESOLVE_KWARGS}
    counts = []
    for spec in models:
        with progress_bars(progress):  # a download's bars too
            resolved = resolve_model(spec, progress=progress, **kwargs)
        n_layers = config_dims(model_skeleton(resolved).config).n_layers
        model_fingerprint(resolved)  # its weights exist and are allowed
        if layer is not None and n_layers and layer >= n_layers:
            raise InputError(
                f"--layer {layer} does not exist in model {spec!r}: it has layers "
                f"0-{n_layers - 1}; pick a layer that every --model has (nothing was extracted)."
            )
        counts.append(n_layers)
    return counts


def run_models(
    models: Sequence[str],
    out: str | Path,
    run: Callable[[str, Path], Any],
    *,
    layer: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    progress: bool = False,
    command_line: str | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[list[Any], CompareOutputs]:
    """``run(model, directory)`` for every model into ``out/<name>``, then ``out/compare``.

    Every model is checked first (:func:`check_models`: found, loadable, has
    ``layer``), so that a model that cannot be run stops the run before any
    other is extracted.
    """
    out_dir = Path(out)
    check_out_dir(out_dir)
    counts = check_models(models, layer=layer, model_kwargs=model_kwargs, progress=progress)
    if log is not None:
        log(
            "checked every model before extracting any: "
            + ", ".join(f"{m} ({n} layers)" for m, n in zip(models, counts, strict=True))
        )
    dirs = [out_dir / name for name in model_dir_names(models)]
    runs = []
    for model, directory in zip(models, dirs, strict=True):
        if log is not None:
            log(f"model {model} -> {directory}")
        runs.append(run(model, directory))
    missing = [d for d in dirs if not (d / RESULTS_FILE).is_file()]
    if missing:  # pragma: no cover - run() always writes results.json
        raise OutputError(f"{missing[0]} has no results.json; the run did not finish.")
    compared = compare_runs(dirs, out_dir / COMPARE_DIR, command_line=command_line, log=log)
    return runs, compared


def _utc_now() -> str:
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    return now.isoformat().replace("+00:00", "Z")
