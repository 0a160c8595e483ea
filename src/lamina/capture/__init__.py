"""Capture: run a causal LM over a text and record, per scored token, what each layer writes.

``SITES`` names the vectors a layer writes (see :mod:`lamina.capture.architectures`),
:func:`plan_windows` which positions are fed and scored (see
:mod:`lamina.capture.windows`), and :func:`extract` builds the token table (see
:mod:`lamina.capture.extraction` and :mod:`lamina.table`). Names are imported
lazily: ``from lamina.capture import SITES`` does not import torch.
"""

from lamina._lazy import lazy_exports

_EXPORTS = {
    "extract": ".extraction",
    "tokenize": ".tokens",
    "count_tokens": ".tokens",
    "decoded_lengths": ".scoring",
    "score_next_tokens": ".scoring",
    "FAMILY_SITES": ".architectures",
    "SITES": ".architectures",
    "FamilySites": ".architectures",
    "ResolvedSites": ".architectures",
    "parse_site_templates": ".architectures",
    "parse_sites": ".architectures",
    "resolve_sites": ".architectures",
    "WINDOW_MODES": ".windows",
    "Window": ".windows",
    "default_stride": ".windows",
    "default_window": ".windows",
    "plan_windows": ".windows",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
