"""What a study computed (:class:`StudyResult`) and its ``results.json`` form.

The parts are typed records (:mod:`lamina.study.records`); ``to_dict()`` gives
the JSON-ready form and :meth:`StudyResult.from_dict` reads it back. Divergences
are in nats with a ``_bits`` twin; non-finite floats are written as ``null``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.errors import OutputError
from lamina.study.probe_records import Probes
from lamina.study.records import (
    Accuracy,
    Capture,
    Controls,
    Divergences,
    LaminarProfile,
    LayerHistograms,
    Record,
    Significance,
    SitesSection,
    plain,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

RESULTS_FORMAT = "lamina.study"
RESULTS_FORMAT_VERSION = 1
#: The ``format_version`` values :func:`load_results` reads.
READABLE_RESULTS_VERSIONS = (1,)


# ----------------------------------------------------------------------------- the study


@dataclasses.dataclass
class StudyData:
    """Per-token arrays the figures need that are not stored in ``results.json``.

    All arrays have one entry per scored token (``n_tokens``), in table order.
    """

    correct: np.ndarray  # (n_tokens,) bool
    ctx_pos: np.ndarray  # (n_tokens,) int, tokens of left context
    log_norm_layer: np.ndarray  # (n_tokens,) float64, ln of the L2 norm at the single layer


@dataclasses.dataclass
class StudyResult(Record):
    """Everything the study computed; ``to_dict()`` is ``results.json``.

    ``part1`` ... ``part7`` are the typed parts of the primary site (``part7``
    is None when Part 7 did not run: no controls, or the notebook mode); ``part8`` the
    probes of the layers' directions (None, and ``part8_reason`` says why, when the table
    has no probe scores for the site);
    ``sites`` the profile of every analysed site (:mod:`lamina.study.site_profiles`);
    ``timings`` the seconds each stage of a run took (set by the pipeline);
    ``data`` holds the per-token arrays for the figures and is not serialised.
    """

    lamina_version: str
    created: str
    compat: str
    compat_note: str | None
    command_line: str | None
    parameters: dict[str, Any]
    units: dict[str, str]
    provenance: dict[str, Any]
    exclusions: dict[str, Any]
    headline: str
    part1: Capture
    part2: Accuracy
    part3: LayerHistograms
    part4: Divergences
    part5: Significance
    part6: LaminarProfile
    part7: Controls | None = None
    part8: Probes | None = None
    part8_reason: str | None = None
    sites: SitesSection | None = None
    timings: dict[str, float] | None = None
    data: StudyData | None = dataclasses.field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict of ``results.json`` (non-finite floats become null).

        ``timings`` (seconds per stage of a run) is written only when a run set it.
        """
        out: dict[str, Any] = {"format": RESULTS_FORMAT, "format_version": RESULTS_FORMAT_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "data" and not (f.name == "timings" and value is None):
                out[f.name] = jsonable(plain(value))
        return out

    def to_json(self) -> str:
        """``results.json`` text: deterministic (same result, same bytes)."""
        return dumps_results(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudyResult:
        """A result read back from ``results.json`` (without the per-token ``data``)."""
        return super().from_dict({k: v for k, v in data.items() if k != "data"})

    def __repr__(self) -> str:
        """A few lines (model, text, tokens, accuracy, significant layers, headline), under
        1,000 characters; ``to_dict()`` has everything."""
        from lamina.study.result_view import short_text

        return short_text(self)

    def _repr_html_(self) -> str:
        """The headline and the per-layer table, for notebooks (every string escaped)."""
        from lamina.study.result_view import html

        return html(self)

    def to_pandas(self, kind: str = "layers", *, table: pa.Table | None = None) -> pd.DataFrame:
        """The result as a pandas ``DataFrame`` (needs ``pip install lamina[notebook]``).

        ``kind``: ``"layers"``, one row per layer of the primary site: ``site``, Part 6's
        fields under ``layers.csv``'s column names (the autocorrelation as
        ``norm_acf_lag1`` ... ``norm_acf_lag5``), and the statistic's name and unit, the
        correction and the compat mode; ``"sites"``, one row per layer (per head for
        ``attn_head``) of every analysed site, with the run-wide corrections;
        ``"controls"``, Part 7's rows; ``"probes"``, Part 8's rows (one per layer of the
        probed site, with ``site``, ``method`` and ``correction``; the baselines are in
        ``part8.baselines``); ``"tokens"``, one row per token of ``table`` (the
        token table the result was computed from, e.g. what ``lamina.extract`` returned).
        """
        from lamina.study.result_view import frame

        return frame(self, kind, table)


# ----------------------------------------------------------------------------- JSON


def dumps_results(results: Mapping[str, Any]) -> str:
    """Serialise a results dict: objects indented, lists of scalars on one line."""
    return _dumps(results, 0) + "\n"


def _dumps(obj: Any, level: int) -> str:
    pad = "  " * (level + 1)
    if isinstance(obj, Mapping):
        if not obj:
            return "{}"
        items = [
            f"{pad}{json.dumps(str(k), ensure_ascii=False)}: {_dumps(v, level + 1)}"
            for k, v in obj.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + "  " * level + "}"
    if isinstance(obj, list | tuple):
        if all(not isinstance(v, Mapping | list | tuple) for v in obj):
            return "[" + ", ".join(_dumps(v, level + 1) for v in obj) + "]"
        items = [pad + _dumps(v, level + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + "  " * level + "]"
    return json.dumps(obj, ensure_ascii=False, allow_nan=False)


def jsonable(obj: Any) -> Any:
    """Plain Python for JSON: numpy to builtins, non-finite floats to None."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a ``results.json`` (a file, or a directory holding one) as a dict.

    Raises :class:`OutputError` if it is missing, not JSON, not lamina's, of a
    format version this lamina does not read, or lacks a section or field its
    version requires (checked by reading it back as a :class:`StudyResult`).
    """
    given = Path(path)
    file = given / "results.json" if given.is_dir() or not given.suffix else given
    if not file.is_file():
        raise OutputError(
            f"{file} does not exist; run `lamina run --out {given}` or `lamina analyze` first."
        )
    try:
        results = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"{file} is not readable JSON ({exc}); re-run the study.") from exc
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        raise OutputError(f"{file} is not a lamina results file; re-run the study.")
    version = results.get("format_version")
    if version not in READABLE_RESULTS_VERSIONS:
        raise OutputError(
            f"{file} has results format version {version!r}, which this lamina "
            f"({', '.join(map(str, READABLE_RESULTS_VERSIONS))}) does not read; re-run "
            "`lamina analyze` on its token table."
        )
    _check_sections(results, file)
    return results


def _check_sections(results: dict[str, Any], file: Path) -> None:
    """Refuse a results dict that lacks a section or field, or has one of the wrong kind."""
    hints = typing.get_type_hints(StudyResult)
    problem = None
    for f in dataclasses.fields(StudyResult):
        if f.name == "data" or (f.name not in results and f.default is None):
            continue  # the per-token data, and the optional sections (timings)
        if f.name not in results:
            problem = f"it lacks {f.name}"
            break
        hint, value = hints[f.name], results[f.name]
        kind = typing.get_origin(hint) or hint
        if (
            isinstance(kind, type)
            and issubclass(kind, Record | dict)
            and not isinstance(value, dict)
        ):
            problem = f"its {f.name} is not an object"
            break
        if isinstance(kind, type) and issubclass(kind, Record):
            try:
                kind.from_dict(value)
            except (TypeError, KeyError, ValueError, AttributeError) as exc:
                fields = re.findall(r"'(\w+)'", str(exc)) if "missing" in str(exc) else []
                problem = f"its {f.name} " + (
                    f"lacks {', '.join(fields)}" if fields else "is altered"
                )
                break
    if problem is not None:
        raise OutputError(
            f"{file} is not a complete lamina results file: {problem}; re-run `lamina analyze` "
            "on its token table to write it again."
        )
