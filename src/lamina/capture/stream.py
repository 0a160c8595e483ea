"""The ``stream`` windows: each token fed once, its left context kept in the key/value cache.

A segment starts with a fresh window (positions from 0, a BOS token first when
asked) run with the cache on. Each following chunk feeds only its new tokens:
the cache is first cut to its first entry, the segment's *attention sink* (the
BOS token, or the segment's first text token), and its last ``score_from -
start`` entries (the chunk's left context); the chunk's positions continue the
segment's (``position_ids``), and ``cache_position`` places it after the cut
cache so the causal mask covers the cache and the chunk. A token of the chunk
thus attends to the sink and to the cached keys and values of its left context,
computed by the earlier chunks with their own left context: the result equals
one forward pass over the segment with a mask that lets each chunk see the sink
and its window (tested against exactly that in tests/capture/test_stream.py).

Why the sink: language models put much of their attention on the first token
they see (Xiao et al. 2024, "Efficient Streaming Language Models with Attention
Sinks"). A chunk that attends only to a recent slice of a long segment loses
that token and predicts markedly worse (SmolLM2-135M on Alice: top-1 accuracy
0.35 against 0.44 for a fresh window over the same left context); keeping the
segment's first entry restores it (0.44). The sink is the one token a ``stream``
row sees beyond the left context an ``all`` window gives it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from lamina.errors import CaptureError

if TYPE_CHECKING:
    from lamina.capture.windows import Window


#: Cache entries kept at the start of a segment: the attention sink (BOS, or the first token).
SINK_ENTRIES = 1


def chunk_inputs(
    cache: Any, window: Window, offset: int, n_fed: int, device: torch.device
) -> dict[str, Any]:
    """Cut ``cache`` to the sink and a cached chunk's left context; the chunk's position and
    cache indices. ``offset`` is 1 when a BOS token precedes the segment's text, else 0."""
    context = window.score_from - window.start
    keep_last(cache, context, SINK_ENTRIES)
    first = window.score_from - window.origin + offset
    kept = SINK_ENTRIES + context
    return {
        "position_ids": torch.arange(first, first + n_fed, device=device)[None],
        "cache_position": torch.arange(kept, kept + n_fed, device=device),
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
