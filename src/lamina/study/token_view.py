"""The token view's data: the scored text with each token's prediction and log-norms.

:func:`token_view` reads a token table (its columns and its ``vocab`` metadata)
and returns a JSON-ready dict that the report's token view draws: per shown
token the target and the prediction (ids, with their decoded strings in
``vocab``), correctness, rank, log-probability, entropy, position, and the
log-norm of the primary site at every layer.

Size: up to :data:`SHOW_ALL` tokens are shown whole, in pages of
:data:`PAGE_TOKENS`. A larger table (a whole book) is sampled as
:data:`PASSAGES` passages of :data:`PAGE_TOKENS` consecutive tokens, evenly
spaced from its first token to its last, one page each; ``sampling`` says so.
Log-norms are quantised per layer to 16 bits over the layer's range (a step of
range / 65,534, far below the three decimals shown) and stored base64-encoded,
little-endian, with 65,535 marking a zero or non-finite norm.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.study.options import StudyOptions
from lamina.table import layer_matrix, site_layers, table_metadata

if TYPE_CHECKING:
    import pyarrow as pa

#: Tables with at most this many scored tokens are shown whole.
SHOW_ALL = 4096
#: Tokens per page of the view (and per passage of a sampled table).
PAGE_TOKENS = 1024
#: Passages shown of a table with more than ``SHOW_ALL`` tokens.
PASSAGES = 4
#: The quantised value that marks a zero or non-finite norm.
MISSING = 65535

NO_TEXT = (
    "the token table stores no token strings (it was written before lamina kept them); "
    "re-extract it with `lamina run --no-reuse` or `lamina extract` to see the text"
)


def token_view(table: pa.Table, options: StudyOptions) -> dict[str, Any]:
    """The token view of ``table`` at the primary site, or ``{"available": False, "reason"}``."""
    meta = table_metadata(table)
    vocab = meta.get("vocab")
    if not isinstance(vocab, dict) or not vocab or table.num_rows == 0:
        return {"available": False, "reason": NO_TEXT if table.num_rows else "no scored tokens"}
    n = table.num_rows
    pages = _pages(n)
    rows = np.concatenate([np.arange(a, b) for a, b in pages])
    starts = np.cumsum([0] + [b - a for a, b in pages])
    column = {name: table.column(name).to_numpy(zero_copy_only=False) for name in _COLUMNS}
    has_pred = "pred_id" in table.column_names
    pred = table.column("pred_id").to_numpy()[rows] if has_pred else None
    with np.errstate(divide="ignore", invalid="ignore"):
        log_norm = np.log(np.asarray(layer_matrix(table, options.site), dtype=np.float64))
    target = column["target_id"][rows]
    first_inputs = column["token_id"][[a for a, _ in pages]]
    used = {int(i) for i in np.concatenate([target, first_inputs, [] if pred is None else pred])}
    return {
        "available": True,
        "site": options.site,
        "layers": site_layers(table, options.site),
        "layer": options.layer,
        "n_tokens": n,
        "n_shown": int(rows.size),
        "sampling": _sampling(n, pages),
        "pages": [
            {"from": int(starts[k]), "to": int(starts[k + 1]), "context": int(first_inputs[k])}
            for k in range(len(pages))
        ],
        "vocab": {str(i): vocab.get(str(i), "") for i in sorted(used)},
        "has_pred": has_pred,
        "text_pos": column["text_pos"][rows].tolist(),
        "target": target.tolist(),
        "pred": None if pred is None else pred.tolist(),
        "correct": "".join("1" if c else "0" for c in column["correct"][rows]),
        "rank": column["target_rank"][rows].tolist(),
        "logprob": _rounded(column["target_logprob"][rows]),
        "entropy": _rounded(column["entropy"][rows]),
        "norms": _quantised(log_norm, rows),
    }


_COLUMNS = (
    "text_pos",
    "token_id",
    "target_id",
    "correct",
    "target_rank",
    "target_logprob",
    "entropy",
)


def _pages(n: int) -> list[tuple[int, int]]:
    """Row ranges shown: every row in pages, or evenly spaced passages of a large table."""
    if n <= SHOW_ALL:
        return [(a, min(a + PAGE_TOKENS, n)) for a in range(0, n, PAGE_TOKENS)]
    last = n - PAGE_TOKENS
    starts = [round(k * last / (PASSAGES - 1)) for k in range(PASSAGES)]
    return [(a, a + PAGE_TOKENS) for a in starts]


def _sampling(n: int, pages: list[tuple[int, int]]) -> str:
    if n <= SHOW_ALL:
        return f"all {n:,} scored tokens"
    return (
        f"{len(pages)} passages of {PAGE_TOKENS:,} consecutive tokens, evenly spaced through "
        f"the {n:,} scored tokens ({len(pages) * PAGE_TOKENS:,} shown)"
    )


def _rounded(values: np.ndarray) -> list[float | None]:
    out = np.round(np.asarray(values, dtype=np.float64), 4)
    return [float(v) if np.isfinite(v) else None for v in out]


def _quantised(log_norm: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
    """Per layer: the offset, the step, the 2nd and 98th percentiles, the shown values."""
    lo, step, q02, q98, data = [], [], [], [], []
    for j in range(log_norm.shape[1]):
        column = log_norm[:, j]
        finite = column[np.isfinite(column)]
        low = float(finite.min()) if finite.size else 0.0
        high = float(finite.max()) if finite.size else 0.0
        width = (high - low) / (MISSING - 1) if high > low else 1.0
        shown = column[rows]
        ok = np.isfinite(shown)
        q = np.full(rows.size, MISSING, dtype="<u2")
        q[ok] = np.clip(np.rint((shown[ok] - low) / width), 0, MISSING - 1).astype("<u2")
        lo.append(low)
        step.append(width)
        q02.append(float(np.quantile(finite, 0.02)) if finite.size else 0.0)
        q98.append(float(np.quantile(finite, 0.98)) if finite.size else 0.0)
        data.append(base64.b64encode(q.tobytes()).decode("ascii"))
    return {"lo": lo, "step": step, "q02": q02, "q98": q98, "data": data}
