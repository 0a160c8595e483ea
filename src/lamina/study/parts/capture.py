"""Part 1: model and capture, what was run on what (a table in the report, no figure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.study.records import Capture

if TYPE_CHECKING:
    import pyarrow as pa

MODEL_FIELDS = (
    "spec",
    "name",
    "source",
    "architecture",
    "n_layers",
    "hidden_size",
    "n_heads",
    "context_length",
    "n_params",
    "dtype",
    "device",
    "revision",
    "fingerprint",
)
TEXT_FIELDS = ("spec", "source", "sha256", "n_chars", "boilerplate")


def capture_summary(
    meta: Mapping[str, Any],
    site: str,
    layers: Sequence[int],
    table: pa.Table,
    table_path: str | None,
) -> Capture:
    """Part 1 from the table's metadata and its position columns."""
    model = meta.get("model", {})
    windows = meta.get("windows", {})
    text = meta.get("text", {})
    n_windows = windows.get("n_windows")
    if n_windows is None and "window" in table.column_names:
        n_windows = int(np.unique(table.column("window").to_numpy()).size)
    text_pos = (
        table.column("text_pos").to_numpy() if "text_pos" in table.column_names else np.zeros(0)
    )
    return Capture(
        model={
            **{k: model.get(k) for k in MODEL_FIELDS},
            # why --dtype auto chose the dtype on a CPU, where it did
            **({"dtype_reason": model["dtype_reason"]} if model.get("dtype_reason") else {}),
        },
        text={k: text.get(k) for k in TEXT_FIELDS},
        site=site,
        site_module=(meta.get("site_modules") or {}).get(site),
        sites_captured=list(meta.get("sites", [])),
        n_layers=len(layers),
        layers=list(layers),
        windows=dict(windows),
        n_windows=n_windows,
        n_tokens_scored=table.num_rows,
        n_text_tokens=meta.get("n_text_tokens"),
        text_positions=[int(text_pos.min()), int(text_pos.max())] if text_pos.size else None,
        table=table_path,
    )
