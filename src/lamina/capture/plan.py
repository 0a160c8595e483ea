"""The work of an extraction: documents as token streams, their windows, and content-keyed shards.

Every document is tokenized on its own (no special tokens) and cut into windows
that never cross a document boundary (:func:`lamina.capture.windows.plan_windows`).
Window indices count across the corpus, in document order. Consecutive windows of
one document are grouped into *shards*, the unit of work that is saved, resumed
and distributed. A shard's key is the sha256 of everything its rows depend on:
the model's fingerprint and dtype, the table format version, the sites and their
modules, the window plan, the document's sha256 and the token ids the shard
reads. Two runs with the same inputs share shards; runs with different inputs
never mix them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from lamina.capture.windows import Window, middle_note, plan_windows, stream_note
from lamina.errors import InputError, LaminaError
from lamina.table import FORMAT_VERSION

#: Windows per shard by default: a few seconds of CPU work with a small model.
DEFAULT_SHARD_WINDOWS = 8


@dataclasses.dataclass(frozen=True)
class Document:
    """One document of the corpus: its index, the token ids its windows need, its provenance.

    ``tokens`` are the stream's ids ``[offset, offset + len(tokens))`` (all of them
    unless the windows need less, see :func:`lamina.capture.tokens.token_stream`);
    ``length`` is the stream length the windows are planned on; ``n_tokens`` the
    whole stream's, or None when tokenizing stopped early. ``counts``: occurrences
    of every id among the tokens read (None: those of ``tokens``).
    """

    index: int
    tokens: np.ndarray
    provenance: dict[str, Any]
    offset: int = 0
    length: int | None = None
    n_tokens: int | None = None
    counts: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return str(self.provenance.get("spec") or f"document {self.index}")

    @property
    def stream_length(self) -> int:
        return self.length if self.length is not None else self.offset + len(self.tokens)

    def ids(self, start: int, stop: int) -> np.ndarray:
        """The ids at stream positions ``[start, stop)``."""
        return self.tokens[start - self.offset : stop - self.offset]

    def local(self, windows: Sequence[Window]) -> list[Window]:
        """``windows`` with positions counted from ``offset`` (indices into ``tokens``)."""
        o = self.offset
        return [
            dataclasses.replace(
                w,
                start=w.start - o,
                stop=w.stop - o,
                score_from=w.score_from - o,
                origin=w.origin - o,
            )
            for w in windows
        ]


@dataclasses.dataclass(frozen=True)
class Shard:
    """Consecutive windows of one document, saved as one file named by ``key``."""

    index: int
    doc: int
    windows: tuple[Window, ...]
    key: str

    @property
    def n_scored(self) -> int:
        return sum(w.n_scored for w in self.windows)


@dataclasses.dataclass
class ExtractionPlan:
    """Documents, windows and shards of one extraction, and what every shard depends on."""

    documents: list[Document]
    shards: list[Shard]
    mode: str
    window: int
    stride: int | None
    bos: bool
    max_tokens: int | None
    batch_size: int | str
    identity: dict[str, Any]
    #: sentences about middle windows that are not ``window`` tokens from the middle
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def windows(self) -> list[Window]:
        return [w for shard in self.shards for w in shard.windows]

    @property
    def n_scored(self) -> int:
        return sum(shard.n_scored for shard in self.shards)

    def windows_metadata(self) -> dict[str, Any]:
        """The ``windows`` entry of the table's metadata."""
        return {
            "mode": self.mode,
            "window": self.window,
            "stride": self.stride,
            "bos": self.bos,
            "batch_size": self.batch_size,
            "max_tokens": self.max_tokens,
            "n_windows": len(self.windows),
            **({"notes": list(self.notes)} if self.notes else {}),
        }


class Planner:
    """Plans the windows and shards of documents added one at a time.

    ``max_tokens`` counts over the corpus (:attr:`left` is what remains, so the
    caller tokenizes no more than the windows need); ``identity`` is what the rows
    depend on besides the text (model fingerprint and dtype, sites and their
    modules): it enters every shard's key.
    """

    def __init__(
        self,
        *,
        mode: str,
        window: int,
        stride: int | None,
        max_tokens: int | None,
        bos: bool,
        context_length: int | None,
        identity: dict[str, Any],
        shard_windows: int = DEFAULT_SHARD_WINDOWS,
        batch_size: int | str = 1,
    ) -> None:
        if (
            isinstance(shard_windows, bool)
            or not isinstance(shard_windows, int)
            or shard_windows < 1
        ):
            raise InputError(f"--shard-windows {shard_windows!r} must be a positive number.")
        self.plan = ExtractionPlan(
            documents=[],
            shards=[],
            mode=mode,
            window=window,
            stride=None if mode == "middle" else stride,
            bos=bos,
            max_tokens=max_tokens,
            batch_size=batch_size,
            identity=identity,
        )
        self.left = max_tokens
        self.context_length = context_length
        self.shard_windows = shard_windows
        self._n_windows = 0

    @property
    def full(self) -> bool:
        """Whether ``max_tokens`` are planned already (later documents get no windows)."""
        return self.left is not None and self.left <= 0

    def add(self, doc: Document) -> None:
        """Plan ``doc``'s windows (none once full) and group them into shards."""
        plan = self.plan
        plan.documents.append(doc)
        if self.full:
            return
        try:
            windows = plan_windows(
                doc.stream_length,
                plan.mode,
                plan.window,
                plan.stride,
                self.left,
                context_length=self.context_length,
                bos=plan.bos,
            )
        except LaminaError as exc:
            raise InputError(f"document {doc.name}: {exc}") from exc
        if plan.mode == "middle":
            note = middle_note(doc.stream_length, plan.window, doc.name)
            plan.notes += [note] if note else []
        elif plan.mode == "stream" and len(windows) > 1:
            note = stream_note(plan.window, plan.stride, self.context_length, plan.bos)
            plan.notes += [note] if note and note not in plan.notes else []
        windows = [dataclasses.replace(w, index=self._n_windows + k) for k, w in enumerate(windows)]
        self._n_windows += len(windows)
        if self.left is not None:
            self.left -= sum(w.n_scored for w in windows)
        for group in _groups(windows, self.shard_windows, plan.mode):
            key = shard_key(
                plan.identity, doc, group, mode=plan.mode, window=plan.window, bos=plan.bos
            )
            plan.shards.append(Shard(len(plan.shards), doc.index, tuple(group), key))


def _groups(windows: list[Window], size: int, mode: str) -> list[list[Window]]:
    """Consecutive groups of ``size`` windows; a ``stream`` shard starts a fresh segment."""
    groups: list[list[Window]] = []
    for w in windows:
        start_new = not groups or len(groups[-1]) >= size
        if mode == "stream" and w.cached:
            start_new = not groups  # a cached chunk needs the window before it
        elif mode == "stream" and groups and len(groups[-1]) < size:
            start_new = False
        if start_new:
            groups.append([])
        groups[-1].append(w)
    return groups


def shard_key(
    identity: dict[str, Any],
    doc: Document,
    windows: Sequence[Window],
    *,
    mode: str,
    window: int,
    bos: bool,
) -> str:
    """sha256 of everything a shard's rows depend on (see the module docstring)."""
    first, last = min(w.start for w in windows), max(w.stop for w in windows)
    span = np.ascontiguousarray(doc.ids(first, last + 1), dtype=np.int64)
    described = {
        "table_format": FORMAT_VERSION,
        **identity,
        "document_sha256": doc.provenance.get("sha256"),
        "tokens_sha256": hashlib.sha256(span.tobytes()).hexdigest(),
        "mode": mode,
        "window": window,
        "bos": bos,
        "windows": [
            [w.start - first, w.stop - first, w.score_from - first, w.cached, w.origin - first]
            for w in windows
        ],
    }
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
