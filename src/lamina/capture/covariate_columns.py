"""Per-token covariates that can make norms differ between correct and incorrect tokens.

Plain arrays in, columns out (numpy and the tokenizer's ``decode``; no model),
so any extraction path (one text, shards of a corpus) computes them the same
way. For a row that reads the logits at stream position ``p`` of a window
feeding positions ``[start, stop)``, with target ``tokens[p + 1]``:

``target_freq``
    ``ln(count(target id) / n_counted)``: the natural log of the target id's
    relative frequency, from ``counts`` (occurrences per token id) over
    ``n_counted`` tokens. Extraction passes the counts of the whole token
    stream of the text (every token, not only the scored ones), so every target
    occurs at least once and the value is finite; a corpus passes the counts
    over all its documents.
``target_repeat``
    the target id already occurs among the positions fed to the model before
    the target's position in the same window, ``tokens[start .. p]`` (the input
    token included): the model could copy it.
``input_is_first``
    ``p == start``: the row's input token is the first text token of its window
    (``ctx_pos == 0``; with ``--bos`` a BOS token precedes it and is never scored).
``input_is_delimiter``
    the row's input token decodes to a non-empty string made only of
    whitespace (newlines included) and punctuation: every character is
    ``str.isspace()`` or in a Unicode category ``P*`` (punctuation) or ``Z*``
    (separators). Each distinct id is decoded once.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import numpy as np

COVARIATES = ("target_freq", "target_repeat", "input_is_first", "input_is_delimiter")


def token_counts(tokens: np.ndarray, minlength: int = 0) -> np.ndarray:
    """Occurrences of every token id in ``tokens`` (int64, indexed by id)."""
    return np.bincount(np.asarray(tokens, dtype=np.int64), minlength=minlength)


def previous_occurrence(tokens: np.ndarray) -> np.ndarray:
    """For every position, the last earlier position holding the same id, or -1."""
    ids = np.asarray(tokens, dtype=np.int64)
    order = np.argsort(ids, kind="stable")  # positions grouped by id, ascending within an id
    previous = np.full(ids.size, -1, dtype=np.int64)
    same = ids[order[1:]] == ids[order[:-1]]
    previous[order[1:][same]] = order[:-1][same]
    return previous


def is_delimiter_text(text: str) -> bool:
    """Whether ``text`` is non-empty and only whitespace and punctuation (module docstring)."""
    return bool(text) and all(ch.isspace() or unicodedata.category(ch)[0] in "PZ" for ch in text)


def delimiter_ids(
    tokenizer: Any, token_ids: np.ndarray, cache: dict[int, bool] | None = None
) -> np.ndarray:
    """``is_delimiter_text(tokenizer.decode([id]))`` for every id, decoding each distinct id once."""
    cache = {} if cache is None else cache
    unique, inverse = np.unique(np.asarray(token_ids, dtype=np.int64), return_inverse=True)
    new = [int(i) for i in unique if int(i) not in cache]
    if new:
        texts = tokenizer.batch_decode([[i] for i in new])
        cache.update(zip(new, (is_delimiter_text(t) for t in texts), strict=True))
    flags = np.fromiter((cache[int(i)] for i in unique), dtype=bool, count=unique.size)
    return flags[inverse].reshape(np.shape(token_ids))


def covariate_columns(
    tokens: np.ndarray,
    text_pos: np.ndarray,
    window_start: np.ndarray,
    tokenizer: Any,
    *,
    counts: np.ndarray | None = None,
    n_counted: int | None = None,
    delimiter_cache: dict[int, bool] | None = None,
) -> dict[str, np.ndarray]:
    """The covariate columns of the rows at ``text_pos`` (see the module docstring).

    ``tokens``: the token stream (int); ``text_pos``: each row's position;
    ``window_start``: the first stream position its window feeds. ``counts``
    (occurrences per id) and ``n_counted`` default to those of ``tokens``; pass
    a corpus's to measure frequencies over all of it. ``delimiter_cache`` keeps
    decoded ids between calls (see :func:`delimiter_ids`).
    """
    stream = np.asarray(tokens, dtype=np.int64)
    pos = np.asarray(text_pos, dtype=np.int64)
    start = np.asarray(window_start, dtype=np.int64)
    if counts is None:
        counts, n_counted = token_counts(stream), stream.size
    elif n_counted is None:
        n_counted = int(np.sum(counts))
    target = stream[pos + 1]
    with np.errstate(divide="ignore"):
        target_freq = np.log(np.asarray(counts, dtype=np.float64)[target] / n_counted)
    return {
        "target_freq": target_freq.astype(np.float32),
        "target_repeat": previous_occurrence(stream)[pos + 1] >= start,
        "input_is_first": pos == start,
        "input_is_delimiter": delimiter_ids(tokenizer, stream[pos], delimiter_cache),
    }
