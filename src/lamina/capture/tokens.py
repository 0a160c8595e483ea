"""A text's token stream, tokenised in pieces so that memory follows the tokens kept.

A fast tokenizer given a whole book at once builds offsets, token strings and
alignments for every token (hundreds of bytes each) before lamina keeps 8 bytes of
it; given 300 MB of text it needs tens of GB. lamina tokenises a text in pieces of
about :data:`CHUNK_CHARS` characters instead, cut only where the tokenizer's
pre-tokenisation cuts anyway, so the ids are exactly those of the whole text
(``tests/reliability/test_bounded_input.py`` proves it on Alice with the embedded
SmolLM2 tokenizer and GPT-2's byte-level BPE).

Where to cut: just before a single space or newline that stands between two
non-space characters (GPT-2-style pre-tokenisers begin a piece there: `` word``),
or after CJK sentence punctuation. A cut is accepted only if tokenising
:data:`PROBE_CHARS` characters on each side of it in one piece and in two pieces
gives the same ids; a tokenizer that prefixes every input (a SentencePiece ``▁``
prepended to the text) or merges across spaces fails that check. After
:data:`MAX_REJECTED` rejected cuts in a row, or in a text without such places, the
rest of the text is tokenised in one piece, as it would be without chunking.

Only what the windows need is kept (:func:`token_stream`): ``all`` windows keep every
token, or with ``--max-tokens`` the first ``max_tokens + window + 1`` (enough for
the window plan to be the whole text's), and tokenising stops there; ``middle``
needs the text's length, so the text is counted piece by piece (nothing kept) and
only the pieces under the window are tokenised again and kept.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from lamina.capture.windows import Window, middle_span

#: Characters per piece: about 30,000 tokens of English prose.
CHUNK_CHARS = 1 << 17
#: Characters tokenised on each side of a candidate cut to check it.
PROBE_CHARS = 64
#: Rejected candidate cuts in a row after which the rest is tokenised in one piece.
MAX_REJECTED = 32

_CUT = re.compile(r"(?<=\S)[ \n](?=\S)|(?<=[。！？])(?=\S)")


def _encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


def _cut_is_clean(tokenizer: Any, text: str, cut: int) -> bool:
    left = text[max(0, cut - PROBE_CHARS) : cut]
    right = text[cut : cut + PROBE_CHARS]
    return _encode(tokenizer, left + right) == _encode(tokenizer, left) + _encode(tokenizer, right)


def text_pieces(
    tokenizer: Any, text: str, chunk_chars: int = CHUNK_CHARS
) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` character spans that tile ``text``, each tokenisable on its own."""
    start = 0
    while len(text) - start > chunk_chars:
        cut = None
        for rejected, match in enumerate(_CUT.finditer(text, start + chunk_chars)):
            if rejected >= MAX_REJECTED:
                break
            if _cut_is_clean(tokenizer, text, match.start()):
                cut = match.start()
                break
        if cut is None:
            break
        yield start, cut
        start = cut
    if start < len(text) or not text:
        yield start, len(text)


def _tokenize(
    tokenizer: Any, text: str, limit: int | None, chunk_chars: int
) -> tuple[np.ndarray, bool]:
    """The ids (at least ``limit`` of them when given) and whether the text's end was reached."""
    pieces: list[np.ndarray] = []
    n_ids = 0
    complete = True
    for start, stop in text_pieces(tokenizer, text, chunk_chars):
        if limit is not None and n_ids >= limit:
            complete = False
            break
        ids = np.asarray(_encode(tokenizer, text[start:stop]), dtype=np.int32)
        pieces.append(ids)
        n_ids += ids.size
    if not pieces:
        return np.zeros(0, dtype=np.int64), complete
    return np.concatenate(pieces).astype(np.int64, copy=False), complete


def tokenize(tokenizer: Any, text: str, *, chunk_chars: int = CHUNK_CHARS) -> np.ndarray:
    """The text's token stream as int64 ids, without special tokens (no BOS, no EOS).

    Equal to tokenising the whole text at once; memory grows with the ids, not the text.
    """
    return _tokenize(tokenizer, text, None, chunk_chars)[0]


def count_tokens(tokenizer: Any, text: str, *, chunk_chars: int = CHUNK_CHARS) -> int:
    """The number of tokens of ``tokenize(tokenizer, text)``, keeping none of them."""
    return sum(
        len(_encode(tokenizer, text[a:b])) for a, b in text_pieces(tokenizer, text, chunk_chars)
    )


@dataclasses.dataclass(frozen=True)
class TokenStream:
    """The part of a text's token stream that its windows need.

    ``ids`` are the stream's tokens ``[offset, offset + len(ids))``; ``n_tokens`` is
    the whole stream's length, or None when tokenising stopped once the windows
    had what they need (``all`` windows with ``max_tokens``). ``counts`` holds the
    occurrences of every token id among all the tokens read (the whole stream,
    or what was read before stopping), indexed by id: the frequencies of
    Part 7's ``target_freq`` covariate.
    """

    ids: np.ndarray
    offset: int
    n_tokens: int | None
    counts: np.ndarray | None = None

    @property
    def length(self) -> int:
        """The stream length to plan windows on (the plan is the whole text's)."""
        return self.n_tokens if self.n_tokens is not None else self.offset + self.ids.size

    def local(self, plan: Sequence[Window]) -> list[Window]:
        """``plan`` with positions counted from ``offset`` (indices into ``ids``)."""
        o = self.offset
        return [
            dataclasses.replace(w, start=w.start - o, stop=w.stop - o, score_from=w.score_from - o)
            for w in plan
        ]


def token_stream(
    tokenizer: Any,
    text: str,
    *,
    mode: str,
    window: int,
    max_tokens: int | None,
    chunk_chars: int = CHUNK_CHARS,
) -> TokenStream:
    """What the windows of ``mode`` need of the text's tokens (see the module docstring)."""
    if mode != "middle":
        limit = None if max_tokens is None else max_tokens + window + 1
        ids, complete = _tokenize(tokenizer, text, limit, chunk_chars)
        n_tokens = int(ids.size) if complete else None
        return TokenStream(ids=ids, offset=0, n_tokens=n_tokens, counts=np.bincount(ids))
    # middle: the window starts at half the stream's length (or at 0 for a text that fits
    # in it, :func:`middle_span`); count first, keep the window.
    spans, counts = [], []
    frequencies = np.zeros(0, dtype=np.int64)
    for start, stop in text_pieces(tokenizer, text, chunk_chars):
        spans.append((start, stop))
        piece = np.asarray(_encode(tokenizer, text[start:stop]), dtype=np.int64)
        counts.append(piece.size)
        frequencies = _add_counts(frequencies, piece)
    n_tokens = sum(counts)
    first, end = middle_span(n_tokens, window)
    last = min(n_tokens, end + 1)  # the window's positions and the last one's target
    kept, position, offset = [], 0, None
    for (start, stop), count in zip(spans, counts, strict=True):
        if position + count > first and position < last:
            offset = position if offset is None else offset
            kept.append(np.asarray(_encode(tokenizer, text[start:stop]), dtype=np.int64))
        position += count
    if offset is None:  # an empty stream: nothing to keep
        return TokenStream(
            ids=np.zeros(0, dtype=np.int64), offset=0, n_tokens=n_tokens, counts=frequencies
        )
    ids = np.concatenate(kept)[first - offset : last - offset]
    return TokenStream(ids=ids, offset=first, n_tokens=n_tokens, counts=frequencies)


def _add_counts(counts: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``counts`` (occurrences per id) with those of ``ids`` added; grows as ids need."""
    more = np.bincount(ids)
    if more.size > counts.size:
        more[: counts.size] += counts
        return more
    counts[: more.size] += more
    return counts
