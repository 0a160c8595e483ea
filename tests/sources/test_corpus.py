"""Corpus inputs: directories, globs, JSONL, Parquet, Gutenberg lists; bad documents."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lamina.errors import TextLoadError
from lamina.sources import load_corpus, load_text


def _write(folder, names_texts):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in names_texts.items():
        (folder / name).write_text(text, encoding="utf-8")


def test_a_directory_is_every_txt_sorted_and_each_keeps_its_provenance(tmp_path):
    _write(tmp_path / "books", {"b.txt": "Second book.", "a.txt": "First book.", "n.md": "no"})
    (tmp_path / "books" / "sub").mkdir()
    (tmp_path / "books" / "sub" / "c.txt").write_text("not read", encoding="utf-8")
    corpus = load_corpus(str(tmp_path / "books"))
    assert [d.text for d in corpus.documents] == ["First book.", "Second book."]
    first = corpus.documents[0].provenance
    assert first.spec.endswith("a.txt")
    assert first.sha256 == hashlib.sha256(b"First book.").hexdigest()
    listing = "".join(d.provenance.sha256 + "\n" for d in corpus.documents)
    assert corpus.sha256 == hashlib.sha256(listing.encode()).hexdigest()
    meta = corpus.text_provenance()
    assert meta["n_documents"] == 2 and meta["n_chars"] == len("First book.Second book.")


def test_one_document_keeps_the_single_text_provenance(tmp_path):
    _write(tmp_path, {"one.txt": "Only text."})
    corpus = load_corpus([str(tmp_path / "one.txt")])
    single = load_text(str(tmp_path / "one.txt"))
    assert corpus.text_provenance() == single.provenance.to_dict()
    assert corpus.sha256 == single.provenance.sha256


def test_globs_jsonl_parquet_and_several_specs_in_order(tmp_path):
    _write(tmp_path / "g", {"x1.txt": "Glob one.", "x2.txt": "Glob two.", "y.txt": "Not this."})
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(
        json.dumps({"body": "Line one."}) + "\n\n" + json.dumps({"body": "Line two."}) + "\n",
        encoding="utf-8",
    )
    parquet = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"body": ["Row zero.", "Row one."]}), parquet)
    corpus = load_corpus(
        [str(tmp_path / "g" / "x*.txt"), str(jsonl), str(parquet)], text_field="body"
    )
    assert [d.text for d in corpus.documents] == [
        "Glob one.",
        "Glob two.",
        "Line one.",
        "Line two.",
        "Row zero.",
        "Row one.",
    ]
    names = [d.provenance.spec for d in corpus.documents]
    assert names[2] == f"{jsonl}:1" and names[3] == f"{jsonl}:3"
    assert names[4] == f"{parquet}:0"


def test_gutenberg_lists_expand_in_order(lamina_cache):
    # Two cached ebooks written as the cache does; no network is touched.
    from lamina.sources import texts

    for number, body in ((11, "Eleven."), (12, "Twelve.")):
        path = texts.gutenberg_cache_path(number)
        texts._write_cache(path, body.encode(), "test", texts.gutenberg_url(number))
    corpus = load_corpus("gutenberg:12, 11")
    assert [d.provenance.spec for d in corpus.documents] == ["gutenberg:12", "gutenberg:11"]
    assert [d.text for d in corpus.documents] == ["Twelve.", "Eleven."]


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: (p / "empty").mkdir() or str(p / "empty"), "has no *.txt file"),
        (
            lambda p: (p / "d.jsonl").write_text('{"other": "x"}\n') and str(p / "d.jsonl"),
            "d.jsonl:1 has no 'text' field",
        ),
        (
            lambda p: (p / "l.jsonl").write_bytes(b'{"text": "caf\xe9"}\n') and str(p / "l.jsonl"),
            "l.jsonl:1 is not valid UTF-8",
        ),
        (lambda p: str(p / "nothing-*.txt"), "matches no file"),
    ],
)
def test_bad_corpus_input_is_one_sentence_naming_the_document(tmp_path, make, needle):
    spec = make(tmp_path)
    with pytest.raises(TextLoadError) as info:
        load_corpus(spec)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_duplicates_are_refused_or_skipped_and_listed(tmp_path):
    _write(tmp_path / "d", {"a.txt": "Same text.", "b.txt": "Same text.", "c.txt": "Other."})
    _write(tmp_path / "d", {"e.txt": ""})
    with pytest.raises(TextLoadError, match=r"b\.txt has the same text as .*a\.txt"):
        load_corpus(str(tmp_path / "d"))
    corpus = load_corpus(str(tmp_path / "d"), skip_bad_docs=True)
    assert [d.text for d in corpus.documents] == ["Same text.", "Other."]
    skipped = {s.name.rsplit("/", 1)[-1]: s.reason for s in corpus.skipped}
    assert set(skipped) == {"b.txt", "e.txt"}
    assert "empty" in skipped["e.txt"]
    assert "skipped" in corpus.summary()


def test_all_documents_bad_is_one_sentence(tmp_path):
    _write(tmp_path / "d", {"a.txt": "", "b.txt": "  \n"})
    with pytest.raises(TextLoadError, match="no usable document"):
        load_corpus(str(tmp_path / "d"), skip_bad_docs=True)


def test_the_text_itself_given_as_a_spec_is_one_sentence():
    """A long string is not a file name: one sentence, not the OS's 'File name too long'."""
    from lamina.errors import TextLoadError
    from lamina.sources import load_corpus

    text = "Alice was beginning to get very tired of sitting by her sister. " * 20
    with pytest.raises(TextLoadError) as err:
        load_corpus(text)
    message = str(err.value)
    assert "'Alice was beginning to get very tired of...'" in message
    assert "(1,280 characters) is not a usable path (File name too long)" in message
    assert "lamina.extract, which takes the text itself" in message and "\n" not in message
