"""Which token positions are fed to the model, in which windows, and which are scored.

The text is one token stream ``tokens[0:N]``. The token at position ``p`` is
*scored* by reading the model's logits at ``p`` and comparing them with its
target ``tokens[p + 1]``; only positions ``0 .. N - 2`` have a target. A window
feeds the model the contiguous positions ``[start, stop)``; its scored positions
``[score_from, stop)`` are always a suffix of it (so a window never feeds tokens
after its last scored position), and a scored token's left context is
``p - start`` tokens (plus a BOS token when one is prepended).

Modes:

``middle``
    the reference study: one window of ``W`` tokens starting at ``N // 2``,
    every position scored; targets come from the whole stream, so the
    window's last position is scored against the token after the window (and
    dropped only when the text ends there). A text whose scorable positions
    fit in one window (``N - 1 <= W``) is scored whole: its middle window is
    ``[0, N - 1)``, not its second half (:func:`middle_span`;
    :func:`middle_note` says so, and says when a longer text ends before its
    middle window's ``W`` tokens).
``all``
    windows of ``W`` tokens every ``S`` tokens cover the stream; every
    position with a target is scored exactly once, from the window in which it
    has the most left context: the first window scores all its positions, each
    later window only its last ``S`` (the last window is moved back to end at
    the stream's last scorable position, so it scores only what is left and
    every window has ``W`` tokens).
``stream``
    every token is fed once: a first window of ``W`` tokens, then chunks of
    ``S`` tokens that attend, through the model's key/value cache, to the last
    ``W - S`` tokens before them (computed by the earlier chunks, with their own
    left context), so a scored token has between ``W - S`` and ``W - 1`` tokens
    of left context as in ``all``, at about ``S / W`` of its compute. Positions
    count from the start of a *segment*; when the next chunk would pass the
    model's context length, a new segment starts with a fresh ``W``-token window
    (as in ``all``), so positions stay valid for the model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lamina.errors import CaptureError, InputError

WINDOW_MODES = ("all", "middle", "stream")
DEFAULT_WINDOW = 1024


@dataclasses.dataclass(frozen=True)
class Window:
    """One forward pass's slice of the token stream (positions are stream indices).

    ``start``/``stop``: the positions the model attends to, ``[start, stop)``.
    ``score_from``: the first scored position; ``[score_from, stop)`` are scored.
    ``cached`` (``stream`` mode): only ``[score_from, stop)`` is fed; the keys and
    values of ``[start, score_from)`` come from the cache of the window before.
    ``origin``: the stream position fed at model position 0 (the segment start).
    """

    index: int
    start: int
    stop: int
    score_from: int
    cached: bool = False
    origin: int = 0

    @property
    def length(self) -> int:
        """Number of text tokens fed to the model."""
        return self.stop - self.start

    @property
    def n_scored(self) -> int:
        """Number of scored positions (a suffix of the window)."""
        return self.stop - self.score_from

    @property
    def fed(self) -> tuple[int, int]:
        """The stream positions fed in this forward pass: ``[start, stop)``, or the new chunk."""
        return (self.score_from, self.stop) if self.cached else (self.start, self.stop)


@dataclasses.dataclass(frozen=True)
class WindowOptions:
    """How the text is cut into windows for the forward pass (see the module docstring).

    The default is the reference study's: one window from the middle of the
    text of ``window`` tokens (None: 1024, or the model's context if shorter).
    ``mode`` is ``"middle"``, ``"all"`` or ``"stream"``; ``stride`` (``all`` and
    ``stream``) defaults to half a window; ``batch_size`` windows share a forward
    pass (``"auto"``: as many as fit); ``max_tokens``
    caps the scored tokens; ``bos`` prepends the BOS token to every window.
    """

    mode: str = "middle"
    window: int | None = None
    stride: int | None = None
    batch_size: int | str = 1
    max_tokens: int | None = None
    bos: bool = False

    def __post_init__(self) -> None:
        if self.mode not in WINDOW_MODES:
            raise InputError(
                f"--windows {self.mode!r} is unknown: use one of {', '.join(WINDOW_MODES)}."
            )
        sizes = [("--window", self.window), ("--stride", self.stride)]
        sizes.append(("--max-tokens", self.max_tokens))
        if self.batch_size != "auto":
            sizes.append(("--batch-size", self.batch_size))
        for option, value in sizes:
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputError(f"{option} {value!r} must be a positive number.")
        if self.stride is not None and self.window is not None and self.stride > self.window:
            raise InputError(
                f"--stride {self.stride} is longer than the window {self.window}, which would "
                "leave tokens unscored; use a stride of at most the window."
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default_window(context_length: int | None, bos: bool = False) -> int:
    """``min(context, 1024)`` text tokens, one fewer when a BOS token takes a context slot."""
    window = DEFAULT_WINDOW if context_length is None else min(context_length, DEFAULT_WINDOW)
    if bos and context_length is not None and window + 1 > context_length:
        window -= 1
    return window


def default_stride(window: int) -> int:
    """The stride of ``all`` windows when none is given: half a window (at least 1 token)."""
    return max(1, window // 2)


def plan_windows(
    n_tokens: int,
    mode: str = "all",
    window: int = DEFAULT_WINDOW,
    stride: int | None = None,
    max_tokens: int | None = None,
    *,
    context_length: int | None = None,
    bos: bool = False,
) -> list[Window]:
    """Windows over a stream of ``n_tokens`` tokens (see the module docstring).

    ``window`` (W) and ``stride`` (S, default ``W // 2``; used by ``all`` and
    ``stream``) count tokens; ``max_tokens`` caps the number of scored positions
    (the first ones in stream order). ``context_length`` (and ``bos``, which
    takes one position) bounds a ``stream`` segment. Raises :class:`InputError`
    for a text shorter than two tokens or options that cannot be used.
    """
    if mode not in WINDOW_MODES:
        raise InputError(f"unknown window mode {mode!r}; use 'all' or 'middle'.")
    if not isinstance(window, int) or window < 1:
        raise InputError(f"window {window!r} must be a positive number of tokens.")
    if stride is None:
        stride = default_stride(window)
    if not isinstance(stride, int) or stride < 1:
        raise InputError(f"stride {stride!r} must be a positive number of tokens.")
    if stride > window:
        raise InputError(
            f"stride {stride} is longer than the window {window}, which would leave tokens "
            "unscored; use a stride of at most the window."
        )
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise InputError(f"max_tokens {max_tokens!r} must be a positive number of tokens.")
    if n_tokens < 2:
        raise InputError(
            f"the text has {n_tokens} token{'s' if n_tokens != 1 else ''}, but scoring needs "
            "at least two (a token and its target); give a longer text."
        )
    last = n_tokens - 1  # positions [0, last) have a target

    if mode == "middle":
        start, stop = middle_span(n_tokens, window)
        if stop <= start:  # pragma: no cover - a text of two or more tokens has a span
            raise InputError(
                f"the text has {n_tokens} tokens, too few for a middle window; give a longer text."
            )
        windows = [Window(0, start, stop, start, origin=start)]
    elif mode == "stream":
        windows = _stream_windows(last, window, stride, context_length, bos)
    else:
        windows = []
        start, scored_to = 0, 0
        while scored_to < last:
            stop = min(start + window, last)
            begin = max(stop - window, 0)
            windows.append(Window(len(windows), begin, stop, scored_to, origin=begin))
            scored_to = stop
            start += stride
    return _cap(windows, max_tokens) if max_tokens is not None else windows


def middle_span(n_tokens: int, window: int) -> tuple[int, int]:
    """The stream positions ``[start, stop)`` that the middle window feeds and scores.

    ``[N // 2, min(N // 2 + W, N - 1))`` as in the reference study, except
    for a text whose ``N - 1`` scorable positions fit in the window: then the
    whole text, ``[0, N - 1)`` (the last token has no target).
    """
    last = n_tokens - 1
    if last <= window:
        return 0, max(last, 0)
    start = n_tokens // 2
    return start, min(start + window, last)


def middle_note(n_tokens: int, window: int, name: str = "the text") -> str | None:
    """A sentence when the middle window of ``n_tokens`` tokens is not ``window`` tokens from
    the middle: the whole of a short text, or fewer tokens where the text ends first."""
    start, stop = middle_span(n_tokens, window)
    if start == 0 and n_tokens >= 2:
        fits = "is shorter than" if n_tokens <= window else "fits, but for its last token, in"
        return (
            f"{name} ({n_tokens:,} tokens) {fits} the window ({window:,}): its middle window "
            "is the whole text, every token scored but the last (which has no next token)"
        )
    if 0 < stop - start < window:
        return (
            f"{name} ({n_tokens:,} tokens) ends {stop - start:,} tokens after its middle: its "
            f"middle window has those {stop - start:,} tokens, not {window:,} "
            "(--windows all scores every token)"
        )
    return None


def stream_note(
    window: int, stride: int | None, context_length: int | None, bos: bool = False
) -> str | None:
    """A sentence when ``stream`` cannot carry a cache past its first window: a segment is
    bounded by the model's context (positions count from the segment's start, and absolute
    position embeddings end there), so where a window and one chunk do not fit in it every
    segment is one fresh window, and ``stream`` feeds each token as often as ``all``."""
    if not context_length:
        return None
    stride = stride or max(window // 2, 1)
    limit = context_length - (1 if bos else 0)
    if window + stride <= limit:
        return None
    return (
        f"--windows stream: this model's context ({context_length:,} positions) holds no "
        f"{stride:,}-token chunk after a {window:,}-token window, so every segment is one "
        "fresh window and each token is fed as often as with --windows all; a --window of at "
        f"most {(2 * limit) // 3:,} (with its default stride) lets a segment carry its cache"
    )


def _stream_windows(
    last: int, window: int, stride: int, context_length: int | None, bos: bool
) -> list[Window]:
    """The ``stream`` plan: fresh windows where a segment starts, cached chunks after."""
    limit = (context_length if context_length else window) - (1 if bos else 0)
    keep = window - stride  # tokens of left context held in the cache
    stop = min(window, last)
    windows = [Window(0, 0, stop, 0, origin=0)]
    origin, scored_to = 0, stop
    while scored_to < last:
        stop = min(scored_to + stride, last)
        if stop - origin > limit or keep == 0:
            begin = max(stop - window, 0)
            windows.append(Window(len(windows), begin, stop, scored_to, origin=begin))
            origin = begin
        else:
            start = max(scored_to - keep, origin)
            windows.append(Window(len(windows), start, stop, scored_to, cached=True, origin=origin))
        scored_to = stop
    return windows


def _cap(windows: list[Window], max_tokens: int) -> list[Window]:
    capped: list[Window] = []
    left = max_tokens
    for w in windows:
        if left <= 0:
            break
        if w.n_scored > left:
            w = dataclasses.replace(w, stop=w.score_from + left)
        capped.append(w)
        left -= w.n_scored
    return capped


def check_window_fits(window: int, context_length: int | None, bos: bool) -> None:
    """Raise :class:`CaptureError` if ``window`` tokens (plus BOS) exceed the model's context."""
    if context_length is None:
        return
    needed = window + (1 if bos else 0)
    if needed > context_length:
        fits = context_length - (1 if bos else 0)
        raise CaptureError(
            f"a window of {window} tokens{' plus BOS' if bos else ''} is longer than the "
            f"model's context of {context_length} tokens; pass a window of at most {fits}."
        )
