"""The covariates of the token table against a plain recomputation from the token stream."""

from __future__ import annotations

import numpy as np
import pytest

from lamina.capture import extract, tokenize
from lamina.capture.covariate_columns import covariate_columns, is_delimiter_text
from lamina.study.table_covariates import table_covariates
from tiny_models import CORPUS, tiny_loaded

TEXT = CORPUS + "\n\n" + CORPUS.upper() + " -- (yes!)\n"


class Decoder:
    def __init__(self, strings):
        self.strings = strings
        self.calls = 0

    def batch_decode(self, ids):
        self.calls += 1
        return [self.strings[i[0]] for i in ids]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" ", True),
        ("\n", True),
        (",", True),
        (" —", True),
        ("«", True),
        ("\u3000", True),
        ("", False),
        ("a", False),
        (" the", False),
        ("1", False),
        ("$", False),
        ("\ufffd", False),
    ],
)
def test_delimiters_are_whitespace_and_punctuation(text, expected):
    assert is_delimiter_text(text) is expected


def test_covariates_equal_a_plain_loop():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 12, 400)
    strings = ["a", " ", "b", ",", "\n", "cd", ".", "e", "f", "g", "!?", "h"]
    starts = [0, 100, 150, 300]
    text_pos, window_start = [], []
    for s, first in zip(starts, [0, 180, 200, 350], strict=True):
        stop = min(s + 100, 399)
        text_pos += list(range(max(first, s), stop))
        window_start += [s] * (stop - max(first, s))
    text_pos, window_start = np.array(text_pos), np.array(window_start)
    decoder = Decoder(strings)
    got = covariate_columns(tokens, text_pos, window_start, decoder)
    counts = np.bincount(tokens, minlength=12)
    for k, (p, s) in enumerate(zip(text_pos, window_start, strict=True)):
        target = tokens[p + 1]
        assert got["target_freq"][k] == pytest.approx(np.log(counts[target] / tokens.size), 1e-6)
        assert got["target_repeat"][k] == (target in tokens[s : p + 1].tolist())
        assert got["input_is_first"][k] == (p == s)
        text = strings[tokens[p]]
        assert got["input_is_delimiter"][k] == (text.strip(" ,\n.!?") == "")
    assert decoder.calls == 1  # every distinct id decoded once, in one call
    corpus = covariate_columns(tokens, text_pos, window_start, decoder, counts=counts * 3 + 1)
    expected = np.log((counts * 3 + 1)[tokens[text_pos + 1]] / (counts * 3 + 1).sum())
    np.testing.assert_allclose(corpus["target_freq"], expected, rtol=1e-6)


@pytest.mark.parametrize("windows", ["all", "middle"])
def test_extraction_records_covariates_and_old_tables_derive_the_same(windows):
    loaded = tiny_loaded("gpt2")
    table = extract(loaded, TEXT, windows=windows, window=24, stride=10, progress=False)
    df = table.to_pandas()
    tokens = tokenize(loaded.tokenizer, TEXT)
    counts = np.bincount(tokens)
    for row in df.itertuples():
        p, start = row.text_pos, row.text_pos - row.ctx_pos
        target = tokens[p + 1]
        assert row.target_repeat == (target in tokens[start : p + 1].tolist())
        assert row.input_is_first == (row.ctx_pos == 0)
        assert row.target_freq == pytest.approx(np.log(counts[target] / tokens.size), rel=1e-6)
        decoded = loaded.tokenizer.decode([row.token_id])
        assert row.input_is_delimiter == is_delimiter_text(decoded)
    assert df["input_is_delimiter"].any() and df["target_repeat"].any()
    # a table written before the covariates: drop them and derive what can be derived
    names = ["target_freq", "target_repeat", "input_is_first", "input_is_delimiter"]
    old = table.drop_columns(names)
    derived = table_covariates(old)
    assert (derived.values["target_repeat"] == df["target_repeat"]).all()
    assert (derived.values["input_is_first"] == df["input_is_first"]).all()
    ids = df["target_id"].to_numpy()
    freq = np.log(
        np.unique(ids, return_counts=True)[1][np.unique(ids, return_inverse=True)[1]] / ids.size
    )
    np.testing.assert_allclose(derived.values["target_freq"], freq)
    assert set(derived.missing) == {"input_is_delimiter"}
    recorded = table_covariates(table)
    assert not recorded.missing
    assert recorded.sources["target_repeat"] == "the table's column"
