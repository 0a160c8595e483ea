"""Number formatting shared by the study's prose and the report (no dependencies)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_p(p: float | None) -> str:
    """A p-value for prose and tables: three decimals, or scientific below 0.0005."""
    if p is None:
        return "n/a"
    # 1 / 1001, the smallest p of 1000 permutations, reads 0.001.
    if p < 0.0005:
        return f"{p:.1e}"
    return f"{p:.3f}"


def layer_list(layers: Sequence[int]) -> str:
    """Layers as compressed runs: ``[0, 1, 2, 3, 7, 9, 10, 11]`` -> ``"0-3, 7, 9-11"``."""
    if not layers:
        return "none"
    parts, start, prev = [], layers[0], layers[0]
    for layer in [*layers[1:], None]:
        if layer is not None and layer == prev + 1:
            prev = layer
            continue
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        if layer is not None:
            start = prev = layer
    return ", ".join(parts)


def csv_cell(value: Any) -> str:
    """One CSV cell: empty for None, ``true``/``false``, numbers as shortest round-trip
    decimals, text quoted (RFC 4180) when it holds a comma, a quote or a newline."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float | int):
        return repr(value)
    text = str(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def layers_phrase(layers: Sequence[int]) -> str:
    """``"layer 17"`` for one layer, ``"layers 2-4, 9"`` for several (:func:`layer_list`)."""
    return f"layer {layers[0]}" if len(layers) == 1 else f"layers {layer_list(layers)}"
