"""The two sources of every study: a causal language model and a text.

``load_model(spec)`` gives a :class:`LoadedModel` (model, tokenizer, :class:`ModelReport`);
``load_text(spec)`` gives a :class:`LoadedText` (text, :class:`TextProvenance`);
``prepare()`` fills the caches that make the defaults work offline.
See ``docs/sources.md``. Names are imported lazily (no torch until a model loads).
"""

from lamina._lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_MODEL": ".models",
    "LoadedModel": ".models",
    "ModelReport": ".models",
    "load_model": ".models",
    "EMBEDDED_MODELS": ".embedded",
    "EmbeddedModel": ".embedded",
    "ConfigDims": ".hfconfig",
    "config_dims": ".hfconfig",
    "DEFAULT_TEXT": ".texts",
    "SEEDED_TEXTS": ".texts",
    "LoadedText": ".texts",
    "TextProvenance": ".texts",
    "load_text": ".texts",
    "strip_gutenberg_boilerplate": ".texts",
    "prepare": ".caches",
    "Corpus": ".corpus",
    "SkippedDocument": ".corpus",
    "load_corpus": ".corpus",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
