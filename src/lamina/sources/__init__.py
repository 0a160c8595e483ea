"""The two sources of every study: a causal language model and a text.

``load_model(spec)`` gives a :class:`LoadedModel` (model, tokenizer, :class:`ModelReport`);
``load_text(spec)`` gives a :class:`LoadedText` (text, :class:`TextProvenance`);
``prepare()`` fills the caches that make the defaults work offline.
See ``docs/sources.md``.
"""

from __future__ import annotations

from lamina.sources.models import (
    DEFAULT_MODEL,
    EMBEDDED_MODELS,
    EmbeddedModel,
    LoadedModel,
    ModelReport,
    load_model,
)
from lamina.sources.texts import (
    DEFAULT_TEXT,
    SEEDED_TEXTS,
    LoadedText,
    TextProvenance,
    load_text,
    strip_gutenberg_boilerplate,
)

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_TEXT",
    "EMBEDDED_MODELS",
    "SEEDED_TEXTS",
    "EmbeddedModel",
    "LoadedModel",
    "LoadedText",
    "ModelReport",
    "TextProvenance",
    "load_model",
    "load_text",
    "prepare",
    "strip_gutenberg_boilerplate",
]


def prepare(verbose: bool = True) -> None:
    """Set-up: seed the ``gutenberg:11`` text cache and cache the embedded model's weights.

    Idempotent and fast when already done (the cached files are only verified).
    Prints one line per step when ``verbose``.
    """
    from lamina.sources.models import prepare_embedded_models
    from lamina.sources.texts import seed_text_cache

    def say(line: str) -> None:
        if verbose:
            print(line, flush=True)

    seed_text_cache(say)
    prepare_embedded_models(say)
