"""The reference study's parts as one analysis of a token table.

:func:`analyze_table` turns a token table (see :mod:`lamina.table`) into a
:class:`~lamina.study.result.StudyResult`, from the table alone (no model):

1. model and capture: what was run on what (:mod:`.parts.capture`);
2. prediction accuracy: overall, by position, and the targets' length in
   characters for correct vs incorrect predictions (:mod:`.parts.accuracy`);
3. one layer: histograms of the log-norms (natural log of the L2 norm) of the
   site's vectors for correct vs incorrect tokens on shared bins
   (:mod:`.parts.layer`);
4. divergences at the chosen bins, the JS bin-count sweep with its permutation
   null, and binless estimators (:mod:`.parts.divergences`);
5. significance of the chosen statistic at the one layer (:mod:`.parts.significance`);
6. the laminar profile: every layer tested at once, corrected for testing them
   all, with effect sizes (:mod:`.parts.profile`);
7. controls: the covariates' balance between the classes, the test of every
   layer conditional on them, a logistic regression view and effect sizes
   that say which differences are negligible (:mod:`.parts.controls`);
8. probes: when the table holds held-out probe scores, what the direction of each
   layer's vectors tells of correctness beside the norm, the controls and the model's
   confidence (:mod:`.parts.probes`).

Parts 1-6 analyse the primary site (``options.site``); the ``sites`` section
gives every analysed site its profile, ``attn_head`` per head, with corrections
per site and over the whole run (:mod:`.site_profiles`).

Conventions: ``correct`` (top-1 prediction equals the target) is the first
group, so ``difference = mean(correct) - mean(incorrect)`` and
``KL(correct || incorrect)`` is written ``kl_correct_incorrect``. Divergences
are computed in nats; every divergence field has a ``_bits`` twin. Tokens whose
vector has a zero or non-finite norm at any analysed layer are counted,
reported and excluded from Parts 3-7 (:mod:`.prepare`).
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING

from lamina import __version__
from lamina.study.options import (
    CORRECT_DEFINITION,
    NOTEBOOK_COMPAT_NOTE,
    StudyOptions,
    WindowOptions,
    check_windows,
    notebook_windows,
)
from lamina.study.result import StudyData, StudyResult, load_results

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "StudyData",
    "StudyOptions",
    "StudyResult",
    "WindowOptions",
    "analyze_table",
    "check_windows",
    "load_results",
    "notebook_windows",
]


def analyze_table(
    table: pa.Table,
    options: StudyOptions | None = None,
    *,
    command_line: str | None = None,
    table_path: str | None = None,
    created: str | None = None,
) -> StudyResult:
    """Run Parts 1-8 on a token table (Part 8 when it holds probe scores).

    ``table`` is a token table as written by :func:`lamina.capture.extract`;
    only its columns and metadata are used. ``created`` is the result's one
    timestamp (UTC ISO 8601; now if omitted). Raises :class:`InputError` for
    options the table cannot satisfy (a layer it does not have, a class with
    fewer than two tokens, ...) and :class:`TableError` for a table without the
    needed columns.
    """
    from lamina.study.describe import headline, units
    from lamina.study.parts import notebook
    from lamina.study.parts.accuracy import accuracy
    from lamina.study.parts.capture import capture_summary
    from lamina.study.parts.controls import controls
    from lamina.study.parts.divergences import divergences
    from lamina.study.parts.layer import layer_histograms
    from lamina.study.parts.probes import probes
    from lamina.study.parts.profile import all_layers_test, laminar_profile
    from lamina.study.parts.significance import significance, single_layer_test
    from lamina.study.prepare import prepare_table
    from lamina.study.site_profiles import site_profiles
    from lamina.table import table_metadata

    options = options or StudyOptions()
    if options.notebook:
        notebook.check_table(table_metadata(table))
    data = prepare_table(table, options)
    x, labels = data.layer_values, data.labels

    perm = all_layers_test(data, options)
    part6 = laminar_profile(perm, data, options)
    single, column = single_layer_test(data, options, perm)
    part3 = layer_histograms(x, labels, options, all_values=data.values, layers=data.layers)
    part8, part8_reason = probes(table, data, part6, options)
    result = StudyResult(
        lamina_version=__version__,
        created=created or _utc_now(),
        compat=options.compat,
        compat_note=NOTEBOOK_COMPAT_NOTE if options.notebook else None,
        command_line=command_line,
        parameters={
            **options.to_dict(),
            "correction": options.resolved_correction,
            "bins_used": part3.n_bins,
            "correct_definition": CORRECT_DEFINITION,
        },
        units=units(options.effective_statistic),
        provenance=_provenance(data.meta, table_path, data.n_table_rows),
        exclusions=data.exclusions,
        headline="",
        part1=capture_summary(data.meta, options.site, data.layers, table, table_path),
        part2=accuracy(data.correct, data.ctx_pos, data.target_chars, options.running_mean_tokens),
        part3=part3,
        part4=divergences(x, labels, options, part3.edges),
        part5=significance(single, column, options),
        part6=part6,
        sites=site_profiles(table, options, data, perm),
        part7=controls(part6, data, options),
        part8=part8,
        part8_reason=part8_reason,
        data=StudyData(
            correct=data.correct,
            ctx_pos=data.ctx_pos,
            log_norm_layer=data.log_norm[:, data.layer_index],
        ),
    )
    result.headline = headline(result.to_dict())
    return result


def _provenance(meta: dict, table_path: str | None, n_rows: int) -> dict:
    return {
        "model": meta.get("model", {}),
        "text": meta.get("text", {}),
        # every document of a corpus with its provenance (source, sha256, characters, tokens)
        "documents": meta.get("documents", []),
        "windows": meta.get("windows", {}),
        "sites": meta.get("sites", []),
        "table": {
            "path": table_path,
            "format_version": meta.get("format_version"),
            "lamina_version": meta.get("lamina_version"),
            "command_line": meta.get("command_line"),
            "n_rows": n_rows,
        },
    }


def _utc_now() -> str:
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    return now.isoformat().replace("+00:00", "Z")
