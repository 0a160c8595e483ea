"""Set-up: fill the caches that make the defaults work offline (``lamina prepare``)."""

from __future__ import annotations

from lamina.sources.gguf import prepare_embedded_models
from lamina.sources.texts import seed_text_cache


def prepare(verbose: bool = True) -> None:
    """Seed the ``gutenberg:11`` text cache and cache the embedded model's weights.

    Idempotent and fast when already done (the cached files are only verified).
    Prints one line per step when ``verbose``.
    """

    def say(line: str) -> None:
        if verbose:
            print(line, flush=True)

    seed_text_cache(say)
    prepare_embedded_models(say)
