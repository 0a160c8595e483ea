"""Window plans: coverage, context lengths, the reference study's middle window, and extraction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.capture import SITES, extract, plan_windows, tokenize
from lamina.capture.windows import default_window
from lamina.errors import InputError
from tiny_models import CORPUS, tiny_loaded


@settings(max_examples=300, deadline=None)
@given(
    n_tokens=st.integers(2, 400),
    window=st.integers(1, 64),
    stride_fraction=st.floats(0.01, 1.0),
    max_tokens=st.one_of(st.none(), st.integers(1, 500)),
)
def test_all_mode_scores_every_token_once_with_most_context(
    n_tokens, window, stride_fraction, max_tokens
):
    stride = max(1, round(window * stride_fraction))
    plan = plan_windows(n_tokens, "all", window, stride, max_tokens)
    scored = np.concatenate([np.arange(w.score_from, w.stop) for w in plan])
    n_expected = n_tokens - 1 if max_tokens is None else min(max_tokens, n_tokens - 1)
    # every position with a target, in stream order, exactly once
    np.testing.assert_array_equal(scored, np.arange(n_expected))
    for w in plan:
        assert 0 <= w.start <= w.score_from < w.stop <= n_tokens - 1
        assert w.length <= window
        if max_tokens is None:
            assert w.length == min(window, n_tokens - 1)
    for p in range(n_expected):
        containing = [w for w in plan if w.start <= p < w.stop]
        scoring = [w for w in containing if w.score_from <= p]
        assert len(scoring) == 1
        # no planned window gives p more left context than the one that scores it
        assert scoring[0].start == min(w.start for w in containing)
        # strided windows give every token at least W - S tokens of context
        assert p - scoring[0].start >= min(p, window - stride)


def test_all_mode_first_window_scores_everything_later_ones_their_last_stride():
    plan = plan_windows(101, "all", window=20, stride=5)
    assert (plan[0].start, plan[0].score_from, plan[0].stop) == (0, 0, 20)
    assert (plan[1].start, plan[1].score_from, plan[1].stop) == (5, 20, 25)
    assert all(w.n_scored == 5 for w in plan[1:])
    assert plan[-1].stop == 100  # the last token (position 100) has no target


def test_all_mode_last_window_moves_back():
    plan = plan_windows(48, "all", window=20, stride=10)  # 47 positions with a target
    assert [(w.start, w.score_from, w.stop) for w in plan] == [
        (0, 0, 20),
        (10, 20, 30),
        (20, 30, 40),
        (27, 40, 47),
    ]


def test_middle_mode_follows_reference_indexing():
    n_tokens, window = 1001, 128
    (w,) = plan_windows(n_tokens, "middle", window)
    # reference: start_idx = len(allTokens[0]) // 2; tokens = allTokens[:, start:start + W];
    # target of window position i is allTokens[0, start_idx + i + 1]
    assert (w.start, w.score_from, w.stop) == (500, 500, 628)
    # the window runs past the text's end: positions without a target are dropped
    (w,) = plan_windows(600, "middle", 512)
    assert (w.start, w.stop) == (300, 599)


def test_default_window():
    assert default_window(8192) == 1024
    assert default_window(512) == 512
    assert default_window(512, bos=True) == 511
    assert default_window(None) == 1024


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_tokens": 1}, "at least two"),
        ({"n_tokens": 0}, "at least two"),
        ({"n_tokens": 100, "window": 10, "stride": 11}, "stride 11 is longer than the window 10"),
        ({"n_tokens": 100, "window": 0}, "window 0"),
        ({"n_tokens": 100, "stride": 0}, "stride 0"),
        ({"n_tokens": 100, "max_tokens": 0}, "max_tokens 0"),
        ({"n_tokens": 100, "mode": "first"}, "unknown window mode 'first'"),
    ],
)
def test_bad_window_options(kwargs, match):
    with pytest.raises(InputError, match=match):
        plan_windows(**{"window": 16, **kwargs})


# ----------------------------------------------------------------------------- extraction

TEXT = CORPUS[:200]


def _direct(loaded, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits and layer-0 attn_out norms of one plain forward pass over ``ids``."""
    norms = []
    module = loaded.model.transformer.h[0].attn.c_proj
    handle = module.register_forward_hook(lambda m, a, o: norms.append(o[0].norm(dim=-1)))
    try:
        with torch.no_grad():
            logits = loaded.model(torch.from_numpy(ids)[None]).logits[0]
    finally:
        handle.remove()
    return logits.numpy(), norms[0].numpy()


def test_all_with_a_window_covering_the_text_is_one_forward_pass():
    loaded = tiny_loaded("gpt2")
    tokens = tokenize(loaded.tokenizer, TEXT)
    assert len(tokens) < 128
    table = extract(loaded, TEXT, window=128, progress=False).to_pandas()
    assert (table["window"] == 0).all()
    np.testing.assert_array_equal(table["ctx_pos"], np.arange(len(tokens) - 1))
    logits, norms = _direct(loaded, tokens)  # the whole text, last token included
    np.testing.assert_allclose(table["attn_out.0"], norms[:-1], rtol=1e-5)
    targets = tokens[1:]
    logprob = torch.log_softmax(torch.from_numpy(logits[:-1]).double(), -1)
    np.testing.assert_allclose(
        table["target_logprob"], logprob[np.arange(len(targets)), targets], atol=1e-5
    )


def test_middle_window_of_a_text():
    loaded = tiny_loaded("gpt2")
    tokens = tokenize(loaded.tokenizer, TEXT)
    table = extract(loaded, TEXT, windows="middle", window=20, progress=False).to_pandas()
    start = len(tokens) // 2
    np.testing.assert_array_equal(table["text_pos"], np.arange(start, start + 20))
    np.testing.assert_array_equal(table["ctx_pos"], np.arange(20))
    np.testing.assert_array_equal(table["target_id"], tokens[start + 1 : start + 21])
    _, norms = _direct(loaded, tokens[start : start + 20])
    np.testing.assert_allclose(table["attn_out.0"], norms, rtol=1e-5)


def test_bos_is_fed_but_not_scored():
    loaded = tiny_loaded("gpt2")
    tokens = tokenize(loaded.tokenizer, TEXT)
    table = extract(loaded, TEXT, windows="middle", window=20, bos=True, progress=False)
    table = table.to_pandas()
    start = len(tokens) // 2
    np.testing.assert_array_equal(table["ctx_pos"], np.arange(20))
    ids = np.concatenate([[loaded.tokenizer.bos_token_id], tokens[start : start + 20]])
    _, norms = _direct(loaded, ids)
    np.testing.assert_allclose(table["attn_out.0"], norms[1:], rtol=1e-5)


def test_batching_and_max_tokens_do_not_change_values():
    loaded = tiny_loaded("llama")
    options = {"window": 24, "stride": 10, "sites": SITES, "progress": False}
    one = extract(loaded, TEXT, batch_size=1, **options).to_pandas()
    batched = extract(loaded, TEXT, batch_size=5, **options).to_pandas()
    capped = extract(loaded, TEXT, batch_size=3, max_tokens=37, **options).to_pandas()
    assert len(capped) == 37
    for name in one.columns:
        if one[name].dtype.kind == "f":
            np.testing.assert_allclose(batched[name], one[name], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(capped[name], one[name][:37], rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(batched[name], one[name])
            np.testing.assert_array_equal(capped[name], one[name][:37])


def test_stream_where_the_context_is_the_window_is_all_and_says_so():
    from lamina.capture.windows import plan_windows, stream_note

    # GPT-2: 1,024 positions, a 1,024-token window: no segment holds a chunk after its window
    stream = plan_windows(5000, "stream", 1024, None, context_length=1024)
    every = plan_windows(5000, "all", 1024, None)
    assert not any(w.cached for w in stream)
    assert [(w.start, w.stop, w.score_from) for w in stream] == [
        (w.start, w.stop, w.score_from) for w in every
    ]
    assert stream_note(1024, None, 1024) == (
        "--windows stream: this model's context (1,024 positions) holds no 512-token chunk "
        "after a 1,024-token window, so every segment is one fresh window and each token is "
        "fed as often as with --windows all; a --window of at most 682 (with its default "
        "stride) lets a segment carry its cache"
    )
    # the window it suggests does carry the cache
    assert any(w.cached for w in plan_windows(5000, "stream", 682, None, context_length=1024))
    assert stream_note(682, None, 1024) is None and stream_note(1024, 512, None) is None
    assert stream_note(1024, 512, 8192) is None  # SmolLM2's context
