"""``lamina precision``: the study in float32 and in half precision, side by side.

Runs the whole study twice on the same model, text and windows (``DIR/float32`` and
``DIR/bfloat16``, each a complete output set whose token table is re-used by a later run),
compares them with :func:`lamina.study.precision_agreement.precision_agreement` and writes
``DIR/precision.json``. The agreement is also remembered in the cache, under the model's
fingerprint, for ``--dtype auto`` on a CPU (``lamina.sources.cpu_precision``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina._io import atomic_open
from lamina.errors import InputError
from lamina.pipeline.run import run_study
from lamina.study.precision_agreement import precision_agreement
from lamina.table import read_table, table_metadata

if TYPE_CHECKING:
    from lamina.pipeline.run_extraction import ExtractionOptions
    from lamina.study import StudyOptions, WindowOptions

REFERENCE = "float32"
HALF = ("bfloat16", "float16")


@dataclass
class PrecisionCheck:
    """What :func:`check_precision` wrote: the agreement and where the two runs are."""

    agreement: dict[str, Any]
    path: Path
    runs: dict[str, Any]

    def __repr__(self) -> str:
        return f"{format_agreement(self.agreement)}\nwritten to {self.path}"


def check_precision(
    model: str | None = None,
    text: str | Sequence[str] | None = None,
    out: str | Path = "lamina-precision",
    *,
    dtype: str = "bfloat16",
    options: StudyOptions | None = None,
    windows: WindowOptions | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    extraction: ExtractionOptions | None = None,
    keep_boilerplate: bool = False,
    text_field: str = "text",
    skip_bad_docs: bool = False,
    max_text_bytes: int | None = None,
    progress: bool | None = True,
    command_line: str | None = None,
    log: Callable[[str], None] | None = None,
) -> PrecisionCheck:
    """Both runs, their agreement in ``out/precision.json`` and in the cache.

    ``model`` is a spec (the model is loaded twice, in float32 and in ``dtype``); the other
    options are :func:`lamina.pipeline.run.run_study`'s, given to both runs.
    """
    if dtype not in HALF:
        raise InputError(f"--dtype {dtype!r} is not a half precision: use one of {HALF}.")
    if model is not None and not isinstance(model, str):
        raise InputError(
            "the precision check loads the model itself, once in float32 and once in "
            f"{dtype}: give its spec (a hub id, a directory or a .gguf file), not a loaded model."
        )
    kwargs = dict(model_kwargs or {})
    if kwargs.get("dtype") not in (None, "auto"):
        raise InputError("lamina precision chooses the dtypes itself (float32 and --dtype).")
    study = {
        "options": options,
        "windows": windows,
        "extraction": extraction,
        "keep_boilerplate": keep_boilerplate,
        "text_field": text_field,
        "skip_bad_docs": skip_bad_docs,
        "max_text_bytes": max_text_bytes,
        "progress": progress,
        "command_line": command_line,
    }
    out = Path(out)
    runs, seconds = {}, {}
    for name in (REFERENCE, dtype):
        if log:
            log(f"precision: the study in {name} -> {out / name}")
        started = time.perf_counter()
        runs[name] = run_study(
            model, text, out / name, model_kwargs={**kwargs, "dtype": name}, log=log, **study
        )
        seconds[name] = round(time.perf_counter() - started, 3)
    agreement = _agreement(runs, dtype)
    agreement["study_seconds"] = seconds
    path = out / "precision.json"
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(agreement, indent=1) + "\n")
    remember_agreement(agreement)
    return PrecisionCheck(agreement=agreement, path=path, runs=runs)


def _agreement(runs: Mapping[str, Any], dtype: str) -> dict[str, Any]:
    """The two runs' agreement, with the model and the text it was measured on."""
    tables = {name: read_table(run.outputs.table) for name, run in runs.items()}
    agreement = precision_agreement(
        tables[REFERENCE], tables[dtype], runs[REFERENCE].result, runs[dtype].result
    )
    meta = table_metadata(tables[dtype])
    agreement["model"] = {
        k: (meta.get("model") or {}).get(k) for k in ("spec", "name", "fingerprint", "device")
    }
    # what the check ran on, named again by `--dtype auto`: it vouches for text like this
    agreement["checked_on"] = {
        "text": (meta.get("text") or {}).get("spec"),
        "n_scored": tables[dtype].num_rows,
        "windows": (meta.get("windows") or {}).get("mode"),
    }
    agreement["extraction_seconds"] = {
        name: table_metadata(table).get("seconds") for name, table in tables.items()
    }
    return agreement


def remember_agreement(agreement: Mapping[str, Any]) -> None:
    """The agreement under the model's fingerprint in the cache, for ``--dtype auto``."""
    from lamina.sources.cpu_precision import record_agreement

    model = agreement.get("model") or {}
    if model.get("fingerprint"):
        record_agreement(model["fingerprint"], agreement["dtype"], agreement)


def format_agreement(agreement: Mapping[str, Any]) -> str:
    """The console summary of ``precision.json``."""
    ref, half = agreement["reference_dtype"], agreement["dtype"]
    lines = [
        f"precision: {half} against {ref} on {agreement['n_tokens']:,} tokens",
        f"  labels agree     {agreement['label_agreement']:.2%} "
        f"({agreement['labels_differing']:,} differ)"
        + (
            f"; top-1 predictions agree {agreement['prediction_agreement']:.2%}"
            if agreement["prediction_agreement"] is not None
            else ""
        ),
    ]
    for site in agreement["sites"]:
        rows = site["layers"]
        medians = [r["median_abs_diff"] for r in rows if r["median_abs_diff"] is not None]
        shifts = [r["shift_se"] for r in rows if r["shift_se"] is not None]
        if medians and shifts:
            worst = max(rows, key=lambda r: r["shift_se"] or 0)
            lines.append(
                f"  {site['site']:<16} median |Δ ln-norm| {min(medians):.4f}-{max(medians):.4f} "
                f"per layer; class differences move by up to {worst['shift_se']:.2f} SE "
                f"(layer {worst['layer']})"
            )
    for part, verdict in agreement["verdicts"].items():
        if verdict is None:
            continue
        line = f"  {part:<16} {'same verdicts' if verdict['same'] else 'DIFFERENT verdicts'}"
        for change in verdict.get("changes") or []:
            line += f"; layer {change['layer']}: {change['reference']} -> {change['other']}"
        if verdict.get("max_g_shift_se") is not None:
            line += f" (controlled g moves by up to {verdict['max_g_shift_se']:.2f} SE)"
        lines.append(line)
    seconds = agreement.get("extraction_seconds") or {}
    if seconds.get(ref) and seconds.get(half):
        lines.append(
            f"  extraction       {seconds[ref]:.1f} s in {ref}, {seconds[half]:.1f} s in {half} "
            f"({seconds[ref] / seconds[half]:.2f}x)"
        )
    verdict = "holds" if agreement["holds"] else "does NOT hold"
    lines.append(f"  the agreement {verdict} ({agreement['rule']})")
    return "\n".join(lines)
