"""The ``stream`` windows: each token fed once, its left context kept in the key/value cache.

A segment starts with a fresh window (positions from 0, a BOS token first when
asked) run with the cache on. Each following chunk feeds only its new tokens:
the cache is first cut to its last ``score_from - start`` entries (the chunk's
left context; the BOS entry, when there is one, is kept too), the chunk's
positions continue the segment's (``position_ids``), and ``cache_position``
places it after the cut cache so the causal mask covers the cache and the chunk.
A token of the chunk thus attends to the cached keys and values of its left
context, computed by the earlier chunks with their own left context: the result
equals one forward pass over the segment with a mask that lets each chunk see
its window (tested against exactly that in tests/capture/test_stream.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from lamina.errors import CaptureError

if TYPE_CHECKING:
    from lamina.capture.windows import Window


def chunk_inputs(
    cache: Any, window: Window, sink: int, n_fed: int, device: torch.device
) -> dict[str, Any]:
    """Cut ``cache`` to a cached chunk's left context; the chunk's position and cache indices."""
    context = window.score_from - window.start
    keep_last(cache, context, sink)
    first = window.score_from - window.origin + sink
    return {
        "position_ids": torch.arange(first, first + n_fed, device=device)[None],
        "cache_position": torch.arange(sink + context, sink + context + n_fed, device=device),
    }


def keep_last(cache: Any, context: int, sink: int) -> None:
    """Cut every layer of a dynamic cache to its first ``sink`` and last ``context`` entries."""
    layers = getattr(cache, "layers", None)
    if not layers:
        raise CaptureError(
            "this model's key/value cache cannot be cut, so --windows stream cannot run it; "
            "use --windows all."
        )
    for layer in layers:
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if (
            not isinstance(keys, torch.Tensor)
            or keys.dim() != 4
            or type(layer).__name__ != ("DynamicLayer")
        ):
            raise CaptureError(
                f"this model's key/value cache ({type(layer).__name__}) cannot be cut to a window, "
                "so --windows stream cannot run it; use --windows all."
            )
        length = keys.shape[-2]
        if length <= sink + context:
            continue
        if sink:
            layer.keys = torch.cat([keys[..., :sink, :], keys[..., length - context :, :]], dim=-2)
            layer.values = torch.cat(
                [values[..., :sink, :], values[..., length - context :, :]], dim=-2
            )
        else:
            layer.keys = keys[..., length - context :, :]
            layer.values = values[..., length - context :, :]
