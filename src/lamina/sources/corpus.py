"""A corpus: every document that one or more ``--text`` specs name, each with its provenance.

A spec is any single-text spec of :mod:`lamina.sources.texts` (``gutenberg:N``,
a file, ``-``, a URL) or names several documents:

* ``gutenberg:11,12,1342``: those ebooks, in that order;
* a directory: every ``*.txt`` in it (not in sub-directories), sorted by name;
* a glob (``books/*.txt``, quoted in the shell): the matching files, sorted;
* a ``.jsonl`` file: one document per line, a JSON object whose ``text_field``
  (default ``text``) holds the text, named ``FILE:LINE``;
* a ``.parquet`` file: one document per row of its ``text_field`` column,
  named ``FILE:ROW``.

Specs are expanded in the order given. A document that cannot be used (not
UTF-8, empty, a JSONL line without the field, the same text as an earlier
document) stops the load with one sentence naming it, or, with
``skip_bad_docs=True``, is skipped and listed in :attr:`Corpus.skipped`.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from lamina.errors import InputError, LaminaError, TextLoadError
from lamina.sources.texts import (
    DEFAULT_TEXT,
    LoadedText,
    load_text,
    text_cap,
    text_from_bytes,
    too_large,
)

__all__ = ["Corpus", "SkippedDocument", "load_corpus"]

_GUTENBERG_LIST = re.compile(r"gutenberg:\s*\d+\s*(,\s*\d+\s*)+", re.IGNORECASE)
_GLOB_CHARS = re.compile(r"[*?[]")


@dataclasses.dataclass(frozen=True)
class SkippedDocument:
    """A document left out with ``skip_bad_docs``, and why."""

    name: str
    reason: str


@dataclasses.dataclass
class Corpus:
    """The documents of a study, in order, and those skipped."""

    specs: list[str]
    documents: list[LoadedText]
    skipped: list[SkippedDocument]

    @property
    def sha256(self) -> str:
        """One text's sha256, or for several the sha256 of their sha256s joined by newlines."""
        if len(self.documents) == 1:
            return self.documents[0].provenance.sha256
        listing = "\n".join(d.provenance.sha256 for d in self.documents) + "\n"
        return hashlib.sha256(listing.encode("ascii")).hexdigest()

    @property
    def n_chars(self) -> int:
        return sum(d.provenance.n_chars for d in self.documents)

    def text_provenance(self) -> dict[str, Any]:
        """The ``text`` metadata of a table: the document's own for one, a summary for several."""
        if len(self.documents) == 1:
            return self.documents[0].provenance.to_dict()
        return {
            "spec": ", ".join(self.specs),
            "source": f"corpus of {len(self.documents)} documents",
            "sha256": self.sha256,
            "raw_sha256": None,
            "n_chars": self.n_chars,
            "boilerplate": _common({d.provenance.boilerplate for d in self.documents}),
            "n_documents": len(self.documents),
        }

    def summary(self) -> str:
        """A multi-line human summary (``lamina info``)."""
        lines = [
            f"corpus        {len(self.documents):,} document(s), {self.n_chars:,} characters"
            f" (sha256 {self.sha256[:12]})"
        ]
        for doc in self.documents[:20]:
            lines.append(f"  {doc.provenance.spec}  {doc.provenance.n_chars:,} characters")
        if len(self.documents) > 20:
            lines.append(f"  ... and {len(self.documents) - 20:,} more")
        for skipped in self.skipped:
            lines.append(f"  skipped {skipped.name}: {skipped.reason}")
        return "\n".join(lines)


def _common(values: set[str]) -> str:
    return values.pop() if len(values) == 1 else "mixed"


def load_corpus(
    specs: str | Sequence[str] | None = None,
    *,
    text_field: str = "text",
    keep_boilerplate: bool = False,
    skip_bad_docs: bool = False,
    max_bytes: int | None = None,
) -> Corpus:
    """Every document the specs name (default: ``gutenberg:11``), loaded and checked.

    ``max_bytes`` caps every document's bytes (default
    :data:`lamina.sources.texts.MAX_TEXT_BYTES`). Raises :class:`TextLoadError`
    (one sentence naming the document) for a bad or duplicate document unless
    ``skip_bad_docs``, and when no document is left.
    """
    if specs is None or (not isinstance(specs, str) and not list(specs)):
        specs = [DEFAULT_TEXT]
    spec_list = [specs] if isinstance(specs, str) else list(specs)
    documents: list[LoadedText] = []
    skipped: list[SkippedDocument] = []
    seen: dict[str, str] = {}
    reading = _Reading(text_field, keep_boilerplate, text_cap(max_bytes))
    for name, load in _expand(spec_list, reading):
        try:
            doc = load()
            earlier = seen.get(doc.provenance.sha256)
            if earlier is not None:
                raise TextLoadError(
                    f"document {name} has the same text as {earlier} (sha256 "
                    f"{doc.provenance.sha256[:12]}); give each document once"
                    + ("." if skip_bad_docs else ", or pass --skip-bad-docs.")
                )
        except LaminaError as exc:
            if not skip_bad_docs:
                raise
            skipped.append(SkippedDocument(name, str(exc)))
            continue
        seen[doc.provenance.sha256] = name
        documents.append(doc)
    if not documents:
        raise TextLoadError(
            f"no usable document in {', '.join(spec_list)}: all {len(skipped)} were skipped "
            f"({skipped[0].name}: {skipped[0].reason})"
            if skipped
            else f"no document in {', '.join(spec_list)}: give a text with some content."
        )
    return Corpus(specs=spec_list, documents=documents, skipped=skipped)


Loader = Callable[[], LoadedText]


@dataclasses.dataclass(frozen=True)
class _Reading:
    """How every document is read: its text field, boilerplate, the cap on its bytes."""

    text_field: str
    keep_boilerplate: bool
    cap: int


def _check_path_spec(spec: str, path: Path) -> None:
    """A spec that cannot be a path (the text itself, passed as a spec) is one sentence."""
    try:
        path.exists()
    except OSError as exc:
        shown = spec[:40].replace("\n", " ") + ("..." if len(spec) > 40 else "")
        raise TextLoadError(
            f"the text spec {shown!r} ({len(spec):,} characters) is not a usable path "
            f"({exc.strerror or exc}): a spec is gutenberg:N, a path, - or a URL; to analyse a "
            "string, write it to a file, or give it to lamina.extract, which takes the text itself."
        ) from exc


def _expand(specs: list[str], reading: _Reading) -> Iterator[tuple[str, Loader]]:
    """(document name, loader) for every document of every spec, in order."""
    for spec in specs:
        if not isinstance(spec, str) or not spec.strip():
            raise InputError(f"empty text spec {spec!r}: give gutenberg:N, a path, - or a URL.")
        if _GUTENBERG_LIST.fullmatch(spec.strip()):
            for number in spec.split(":", 1)[1].split(","):
                one = f"gutenberg:{number.strip()}"
                yield one, _single(one, reading)
            continue
        if spec == "-" or spec.lower().startswith(("gutenberg:", "http://", "https://")):
            yield spec, _single(spec, reading)
            continue
        path = Path(spec).expanduser()
        _check_path_spec(spec, path)
        if path.is_dir():
            files = sorted(p for p in path.glob("*.txt") if p.is_file())
            if not files:
                raise TextLoadError(
                    f"directory {spec!r} has no *.txt file: put the documents there as UTF-8 "
                    "*.txt files, or name the files."
                )
            for file in files:
                yield str(file), _single(str(file), reading)
        elif path.is_file() and path.suffix.lower() == ".jsonl":
            yield from _jsonl_documents(path, reading)
        elif path.is_file() and path.suffix.lower() == ".parquet":
            yield from _parquet_documents(path, reading)
        elif not path.exists() and _GLOB_CHARS.search(spec):
            matches = sorted(glob.glob(str(path)))
            files = [m for m in matches if Path(m).is_file()]
            if not files:
                raise TextLoadError(f"the pattern {spec!r} matches no file: check the path.")
            for file in files:
                yield file, _single(file, reading)
        else:
            yield spec, _single(spec, reading)


def _single(spec: str, reading: _Reading) -> Loader:
    return lambda: load_text(spec, keep_boilerplate=reading.keep_boilerplate, max_bytes=reading.cap)


def _member(name: str, value: Any, source: str, reading: _Reading) -> Loader:
    """A loader for one text held inside a JSONL or Parquet file."""

    def load() -> LoadedText:
        if isinstance(value, bytes):
            raw = value
        elif isinstance(value, str):
            raw = value.encode("utf-8", errors="surrogatepass")
        else:
            raise TextLoadError(
                f"document {name} holds a {type(value).__name__}, not text: give strings "
                "in the text field."
            )
        if len(raw) > reading.cap:
            raise too_large(f"document {name}", reading.cap)
        return text_from_bytes(raw, name, source, keep_boilerplate=reading.keep_boilerplate)

    return load


def _jsonl_documents(path: Path, reading: _Reading) -> Iterator[tuple[str, Loader]]:
    source = str(path.resolve())
    try:
        raw_lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise TextLoadError(f"cannot read {str(path)!r}: {exc.strerror}.") from exc
    found = False
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        found = True
        name = f"{path}:{number}"
        yield name, _jsonl_loader(name, raw, source, reading)
    if not found:
        raise TextLoadError(f"{str(path)!r} has no JSON line: give one JSON object per line.")


def _jsonl_loader(name: str, raw: bytes, source: str, reading: _Reading) -> Loader:
    def load() -> LoadedText:
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise TextLoadError(
                f"document {name} is not valid UTF-8 (byte 0x{raw[exc.start]:02x}): convert "
                "the file to UTF-8."
            ) from exc
        except ValueError as exc:
            raise TextLoadError(f"document {name} is not valid JSON ({exc.msg}).") from exc
        if not isinstance(record, dict) or reading.text_field not in record:
            raise TextLoadError(
                f"document {name} has no {reading.text_field!r} field: name the field that "
                "holds the text with --text-field."
            )
        return _member(name, record[reading.text_field], source, reading)()

    return load


def _parquet_documents(path: Path, reading: _Reading) -> Iterator[tuple[str, Loader]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TextLoadError(f"{str(path)!r} is not a readable Parquet file ({exc}).") from exc
    text_field = reading.text_field
    if text_field not in table.column_names:
        raise TextLoadError(
            f"{str(path)!r} has no {text_field!r} column (columns: "
            f"{', '.join(table.column_names)}): name the text column with --text-field."
        )
    if table.num_rows == 0:
        raise TextLoadError(f"{str(path)!r} has no rows: give a file with documents.")
    source = str(path.resolve())
    for row, value in enumerate(table.column(text_field).to_pylist()):
        name = f"{path}:{row}"
        yield name, _member(name, value, source, reading)
