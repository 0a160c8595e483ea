"""A :class:`~lamina.study.result.StudyResult` for a notebook: a short text, HTML, data frames.

(The result is typed ``Any`` here: importing its module would close an import cycle.)

``short_text`` is the result's ``repr`` (a few lines, under 1,000 characters however
many permutations or layers); ``html`` its ``_repr_html_`` (the headline and the
per-layer table, every string escaped; the pipeline's :class:`~lamina.pipeline.run.StudyRun`
adds the laminar figure); ``frame`` its ``to_pandas``. pandas is an optional
dependency (``pip install lamina[notebook]``), imported only by ``frame``.
"""

from __future__ import annotations

import html as _html
import textwrap
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lamina._format import format_p, layer_list
from lamina.errors import InputError
from lamina.stats.catalog import CORRECTION_LABELS, is_divergence, short

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

#: The kinds of :meth:`StudyResult.to_pandas`.
FRAME_KINDS = ("layers", "sites", "controls", "probes", "tokens")

#: Lags of the log-norm's autocorrelation given their own column (as in ``layers.csv``).
ACF_LAGS = 5

_MAX_NAME = 60
_MAX_HEADLINE = 480


def require_pandas() -> Any:
    """pandas, or one sentence saying how to install it."""
    try:
        import pandas
    except ImportError as exc:
        raise InputError(
            "data frames need pandas, which is not installed here: pip install 'lamina[notebook]'."
        ) from exc
    return pandas


def _clip(value: Any, width: int = _MAX_NAME) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _names(result: Any) -> tuple[str, str]:
    model = result.part1.model
    return (
        _clip(model.get("name") or model.get("spec") or "the model"),
        _clip(result.part1.text.get("spec") or "the text"),
    )


def short_text(result: Any) -> str:
    """The result in a few lines: model, text, tokens, accuracy, significant layers, headline."""
    model, text = _names(result)
    p2, p5, p6 = result.part2, result.part5, result.part6
    lines = [
        f"StudyResult: {model} on {text} (site {_clip(result.part1.site, 30)}, "
        f"{len(p6.layers)} layers)",
        f"  tokens      {p2.n_tokens:,} scored, {p2.n_correct:,} correct "
        f"(accuracy {p2.accuracy:.1%})",
        f"  layer {p5.layer:<5} {_clip(short(p5.statistic_name), 20)} p = {format_p(p5.pvalue)} "
        f"({p5.n_permutations:,} permutations)",
        f"  all layers  {_n_significant(result)} significant at α = {p6.alpha:g} "
        f"({CORRECTION_LABELS.get(p6.correction, p6.correction)})",
    ]
    headline = textwrap.shorten(result.headline, _MAX_HEADLINE, placeholder=" …")
    lines += textwrap.wrap(headline, 92, initial_indent="  ", subsequent_indent="  ")
    lines.append('  (to_pandas("layers") for the table; a notebook shows it as HTML)')
    return "\n".join(lines)


def _n_significant(result: Any) -> str:
    rows = result.part6.layers
    significant = [r.layer for r in rows if r.significant]
    word = "layer" if len(significant) == 1 else "layers"
    listed = f" ({word} {_clip(layer_list(significant), 40)})" if significant else ""
    return f"{len(significant)} of {len(rows)}{listed}"


def layer_table_rows(result: Any) -> tuple[list[str], list[list[str]]]:
    """The per-layer table as text cells: (header, rows), the console summary's columns."""
    statistic = result.part6.statistic_name
    divergence = is_divergence(statistic)
    unit = "bits" if divergence else result.part6.statistic_unit
    header = [
        "layer",
        "mean ln‖·‖ correct",
        "mean ln‖·‖ incorrect",
        "difference",
        f"{short(statistic)} ({unit})",
        "p",
        "p corrected",
        "AUROC",
        "Hedges' g",
        "significant",
    ]
    rows = []
    for r in result.part6.layers:
        value = r.statistic_bits if divergence else r.statistic
        rows.append(
            [
                str(r.layer),
                _number(r.mean_log_norm_correct, ".4f"),
                _number(r.mean_log_norm_incorrect, ".4f"),
                _number(r.difference, "+.4f"),
                _number(value, ".4g"),
                format_p(r.pvalue),
                format_p(r.pvalue_corrected),
                _number(r.auroc, ".3f"),
                _number(r.hedges_g, "+.3f"),
                "yes" if r.significant else "",
            ]
        )
    return header, rows


def _number(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def html(result: Any, figure_html: str = "") -> str:
    """``_repr_html_``: the headline, the laminar figure (``figure_html``, given by the
    pipeline) and the per-layer table. Every string from the result is escaped."""
    esc = _html.escape
    model, text = _names(result)
    p2 = result.part2
    header, rows = layer_table_rows(result)
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    note = f"<p><em>{esc(result.compat_note)}</em></p>" if result.compat_note else ""
    return (
        '<div class="lamina-result">'
        f"<p><strong>lamina</strong>: {esc(model)} on {esc(text)}, site "
        f"<code>{esc(result.part1.site)}</code>, {p2.n_tokens:,} tokens scored, "
        f"accuracy {p2.accuracy:.1%}</p>"
        f"{note}<p>{esc(result.headline)}</p>{figure_html}"
        f'<table class="lamina-layers"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def frame(result: Any, kind: str = "layers", table: pa.Table | None = None) -> pd.DataFrame:
    """:meth:`StudyResult.to_pandas` (see there)."""
    if kind not in FRAME_KINDS:
        raise InputError(f"unknown frame {kind!r}: use one of {', '.join(FRAME_KINDS)}.")
    pd = require_pandas()
    if kind == "tokens":
        if table is None:
            raise InputError(
                "the per-token frame needs the token table: pass table= (what lamina.extract "
                "returned), or use StudyRun.to_pandas('tokens') after run_study."
            )
        return table.to_pandas()
    if kind == "controls":
        if result.part7 is None:
            raise InputError(
                "Part 7 did not run (no controls, or the notebook mode), so there is no "
                "controls frame: use 'layers'."
            )
        return pd.DataFrame([row.to_dict() for row in result.part7.layers])
    if kind == "probes":
        if result.part8 is None:
            reason = result.part8_reason or "the table has no probe scores"
            raise InputError(
                f"Part 8 did not run ({reason.rstrip('.')}), so there is no probes frame."
            )
        p8 = result.part8
        shared = {"site": p8.site, "method": p8.method, "correction": p8.correction}
        return pd.DataFrame([{**shared, **row.to_dict()} for row in p8.layers])
    if kind == "sites":
        return pd.DataFrame(_site_rows(result))
    return pd.DataFrame(_layer_rows(result))


def _layer_rows(result: Any) -> list[dict[str, Any]]:
    """Part 6's rows under ``layers.csv``'s names, with the columns that file repeats."""
    p6 = result.part6
    shared = {
        "statistic_name": p6.statistic_name,
        "statistic_unit": p6.statistic_unit,
        "correction": p6.correction,
        "compat": result.compat,
    }
    return [{"site": p6.site, **_flat(row.to_dict()), **shared} for row in p6.layers]


def _site_rows(result: Any) -> list[dict[str, Any]]:
    """Every analysed site's rows (per head for ``attn_head``); Part 6's without a sites
    section."""
    if result.sites is None:
        return _layer_rows(result)
    scope = result.sites.correction_scope
    return [
        {"site": profile.site, **_flat(row.to_dict()), "correction_scope": scope}
        for profile in result.sites.profiles
        for row in profile.rows
    ]


def _flat(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row with its autocorrelation list as ``norm_acf_lag1`` ... columns."""
    out = {k: v for k, v in row.items() if k != "norm_autocorrelation"}
    acf = list(row.get("norm_autocorrelation") or [])
    acf += [None] * (ACF_LAGS - len(acf))
    for lag in range(1, ACF_LAGS + 1):
        out[f"norm_acf_lag{lag}"] = acf[lag - 1]
    return out
