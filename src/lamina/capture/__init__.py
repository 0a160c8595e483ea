"""Capture: run a causal LM over a text and record, per scored token, what each layer writes.

``SITES`` names the vectors a layer writes (see :mod:`lamina.capture.sites`),
:func:`plan_windows` which positions are fed and scored (see
:mod:`lamina.capture.windows`), and :func:`extract` builds the token table (see
:mod:`lamina.capture.extract` and :mod:`lamina.table`).
"""

from lamina.capture.extract import decoded_lengths, extract, score_next_tokens, tokenize
from lamina.capture.sites import (
    FAMILY_SITES,
    SITES,
    FamilySites,
    ResolvedSites,
    parse_site_templates,
    parse_sites,
    resolve_sites,
)
from lamina.capture.windows import WINDOW_MODES, Window, default_window, plan_windows

__all__ = [
    "FAMILY_SITES",
    "SITES",
    "WINDOW_MODES",
    "FamilySites",
    "ResolvedSites",
    "Window",
    "decoded_lengths",
    "default_window",
    "extract",
    "parse_site_templates",
    "parse_sites",
    "plan_windows",
    "resolve_sites",
    "score_next_tokens",
    "tokenize",
]
