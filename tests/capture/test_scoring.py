"""Prediction columns equal a direct recomputation from the model's logits (numpy/scipy, float64)."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from lamina.capture import decoded_lengths, extract, score_next_tokens, tokenize
from tiny_models import CORPUS, tiny_loaded


def _expected(logits: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Scores by definition, in float64, one row at a time."""
    logits = logits.astype(np.float64)
    rows = np.arange(len(targets))
    target_logit = logits[rows, targets]
    return {
        "correct": logits.argmax(axis=1) == targets,
        "target_rank": np.array(
            [(row > t).sum() for row, t in zip(logits, target_logit, strict=True)]
        ),
        "target_logprob": scipy.special.log_softmax(logits, axis=1)[rows, targets],
        "entropy": scipy.stats.entropy(scipy.special.softmax(logits, axis=1), axis=1),
    }


def _assert_scores(actual: dict, expected: dict) -> None:
    np.testing.assert_array_equal(np.asarray(actual["correct"]), expected["correct"])
    np.testing.assert_array_equal(np.asarray(actual["target_rank"]), expected["target_rank"])
    np.testing.assert_allclose(
        np.asarray(actual["target_logprob"]), expected["target_logprob"], rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        np.asarray(actual["entropy"]), expected["entropy"], rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("chunk_elements", [7, 1000, None])
def test_score_next_tokens_matches_definition(chunk_elements):
    rng = np.random.default_rng(0)
    n, vocab = 40, 300
    logits = rng.normal(0, 3, size=(n, vocab)).astype(np.float32)
    targets = rng.integers(0, vocab, size=n)
    targets[:8] = logits[:8].argmax(axis=1)  # some correct predictions
    logits[8, 5] = logits[8, 17] = logits[8].max() + 1  # a tie for the top: argmax is index 5
    targets[8] = 17  # rank 0 but not correct
    targets[9] = 5
    logits[9] = logits[8]
    logits[10, :100] = -np.inf  # masked vocabulary entries
    logits[11] *= 40  # a near one-hot distribution
    scores = score_next_tokens(
        torch.from_numpy(logits), torch.from_numpy(targets), chunk_elements=chunk_elements
    )
    expected = _expected(logits, targets)
    assert expected["correct"][:8].all() and not expected["correct"][8] and expected["correct"][9]
    assert expected["target_rank"][8] == 0
    assert np.isfinite(scores["entropy"].numpy()).all()
    _assert_scores({k: v.numpy() for k, v in scores.items()}, expected)


@pytest.mark.parametrize("chunk_elements", [200, None])  # 3 rows a chunk (a short last one), or 1
def test_score_next_tokens_half_precision_logits(chunk_elements):
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(0, 2, size=(16, 64)).astype(np.float32)).bfloat16()
    targets = torch.from_numpy(rng.integers(0, 64, size=16))
    scores = score_next_tokens(logits, targets, chunk_elements=chunk_elements)
    _assert_scores(
        {k: v.numpy() for k, v in scores.items()},
        _expected(logits.float().numpy(), targets.numpy()),
    )


@functools.cache
def _greedy_text() -> str:
    """A text half of whose tokens the tiny GPT-2 predicts right: a prompt and its greedy continuation."""
    loaded = tiny_loaded("gpt2", seed=0)
    prompt = torch.from_numpy(tokenize(loaded.tokenizer, CORPUS[:80]))[None]
    with torch.no_grad():
        ids = loaded.model.generate(prompt, max_new_tokens=40, do_sample=False, pad_token_id=0)
    return loaded.tokenizer.decode(ids[0])


@pytest.mark.parametrize(
    ("window", "stride", "batch_size"), [(None, None, 1), (24, 8, 1), (24, 8, 4), (30, 30, 2)]
)
def test_table_scores_equal_direct_recomputation(window, stride, batch_size):
    loaded = tiny_loaded("gpt2", seed=0)
    text = _greedy_text()
    tokens = tokenize(loaded.tokenizer, text)
    table = extract(
        loaded, text, window=window, stride=stride, batch_size=batch_size, progress=False
    ).to_pandas()
    assert list(table["text_pos"]) == list(range(len(tokens) - 1))
    assert (table["token_id"] == tokens[table["text_pos"]]).all()
    assert (table["target_id"] == tokens[table["text_pos"] + 1]).all()
    for _, rows in table.groupby("window"):
        start = int((rows["text_pos"] - rows["ctx_pos"]).iloc[0])
        stop = int(rows["text_pos"].max()) + 1
        with torch.no_grad():
            logits = loaded.model(torch.from_numpy(tokens[start:stop])[None]).logits[0].numpy()
        expected = _expected(logits[rows["ctx_pos"]], tokens[rows["text_pos"] + 1])
        _assert_scores({k: rows[k].to_numpy() for k in expected}, expected)
    assert 0.2 < table["correct"].mean() < 0.8  # both outcomes are exercised
    chars = [len(loaded.tokenizer.decode([t])) for t in table["target_id"]]
    np.testing.assert_array_equal(table["target_chars"], chars)


def test_decoded_lengths_memoises_each_id():
    loaded = tiny_loaded("gpt2")
    calls = []

    class CountingTokenizer:
        def batch_decode(self, ids):
            calls.append(len(ids))
            return loaded.tokenizer.batch_decode(ids)

    ids = np.array([[5, 7, 5], [300, 7, 5]])
    cache: dict[int, int] = {}
    lengths = decoded_lengths(CountingTokenizer(), ids, cache)
    expected = [[len(loaded.tokenizer.decode([i])) for i in row] for row in ids]
    np.testing.assert_array_equal(lengths, expected)
    decoded_lengths(CountingTokenizer(), np.array([5, 300, 9]), cache)
    assert calls == [3, 1]


def test_prediction_and_token_strings_equal_a_direct_recomputation():
    """``pred_id`` is the argmax of the logits; ``vocab`` decodes every id the table uses."""
    loaded = tiny_loaded("gpt2", seed=0)
    text = _greedy_text()
    tokens = tokenize(loaded.tokenizer, text)
    table = extract(loaded, text, window=24, stride=8, progress=False)
    rows = table.to_pandas()
    assert table.schema.field("pred_id").type == "int32"
    for _, group in rows.groupby("window"):
        start = int((group["text_pos"] - group["ctx_pos"]).iloc[0])
        stop = int(group["text_pos"].max()) + 1
        with torch.no_grad():
            logits = loaded.model(torch.from_numpy(tokens[start:stop])[None]).logits[0].numpy()
        np.testing.assert_array_equal(group["pred_id"], logits[group["ctx_pos"]].argmax(axis=1))
    np.testing.assert_array_equal(rows["correct"], rows["pred_id"] == rows["target_id"])
    vocab = json.loads(table.schema.metadata[b"lamina"])["vocab"]
    used = set(rows["token_id"]) | set(rows["target_id"]) | set(rows["pred_id"])
    assert set(vocab) == {str(i) for i in used}
    assert all(vocab[str(i)] == loaded.tokenizer.decode([i]) for i in used)
    scores = score_next_tokens(
        torch.tensor([[0.0, 2.0, 2.0], [3.0, 1.0, 0.0]]), torch.tensor([2, 0])
    )
    assert scores["pred_id"].tolist() == [1, 0]  # the first index of the largest logit
