"""``--windows stream``: each token fed once, its left context kept in the key/value cache.

The independent computation: one forward pass over a whole segment with an
attention mask that lets each token see exactly the tokens its chunk sees
(the segment's first entry, BOS or first token, as the attention sink; the
chunk's cached left context; the chunk up to itself), positions from the
segment's start. With eager attention that pass and lamina's chunked passes
through the cache must give the same norms and predictions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lamina.capture import extract, plan_windows
from lamina.capture.architectures import STREAM_FAMILIES, resolve_sites
from lamina.errors import CaptureError
from tiny_models import CONTEXT, DISCOVERY_FAMILIES, FAMILIES, tiny_loaded


def _tokens(n: int = 150, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 300, n).astype(np.int64)


def _reference(loaded, tokens, windows, bos_id):
    """Norms of attn_out at every layer and predictions, segment by segment, in one pass each."""
    model = loaded.model
    resolved = resolve_sites(model, ("attn_out",))
    norms, preds = [], []
    captured: dict[int, torch.Tensor] = {}

    def keep(layer: int):
        def hook(module, args, output) -> None:
            captured[layer] = output[0] if isinstance(output, tuple) else output

        return hook

    for origin in sorted({w.origin for w in windows}):
        segment = [w for w in windows if w.origin == origin]
        stop = segment[-1].stop
        ids = torch.from_numpy(tokens[origin:stop])
        sink = 0 if bos_id is None else 1
        if bos_id is not None:
            ids = torch.cat([torch.tensor([bos_id]), ids])
        n = ids.numel()
        allowed = torch.zeros(n, n, dtype=torch.bool)
        allowed[:, 0] = True  # the attention sink: BOS, or the segment's first token
        for w in segment:
            first = w.score_from if w.cached else w.start
            for q in range(first, w.stop):
                allowed[q - origin + sink, w.start - origin + sink : q - origin + sink + 1] = True
        mask = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)[None, None]
        captured.clear()
        hooks = [
            model.get_submodule(resolved.module_path("attn_out", layer)).register_forward_hook(
                keep(layer)
            )
            for layer in range(resolved.n_layers)
        ]
        with torch.inference_mode():
            logits = model(input_ids=ids[None], attention_mask=mask, use_cache=False).logits[0]
        for h in hooks:
            h.remove()
        rows = np.concatenate([np.arange(w.score_from, w.stop) for w in segment]) - origin + sink
        norms.append(
            np.stack(
                [torch.linalg.vector_norm(captured[k][0], dim=-1).numpy()[rows] for k in captured],
                axis=1,
            )
        )
        preds.append(logits.argmax(-1).numpy()[rows])
    return np.concatenate(norms), np.concatenate(preds)


@pytest.mark.parametrize("family", STREAM_FAMILIES)
@pytest.mark.parametrize("bos", [False, True])
def test_stream_equals_one_pass_with_the_chunks_mask(family, bos):
    loaded = tiny_loaded(family)
    loaded.model.config._attn_implementation = "eager"
    tokens = _tokens()
    text = loaded.tokenizer.decode(tokens.tolist())
    ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    tokens = np.asarray(ids, dtype=np.int64)
    window = 40 if not bos else 39
    table = extract(
        loaded, text, windows="stream", window=window, stride=12, bos=bos, progress=False
    )
    plan = plan_windows(len(tokens), "stream", window, 12, context_length=CONTEXT, bos=bos)
    assert len({w.origin for w in plan}) > 1, "the test needs more than one segment"
    assert any(w.cached for w in plan)
    norms, preds = _reference(loaded, tokens, plan, loaded.tokenizer.bos_token_id if bos else None)
    got = np.stack([table.column(f"attn_out.{k}").to_numpy() for k in range(norms.shape[1])], 1)
    np.testing.assert_allclose(got, norms, rtol=2e-5, atol=1e-6)
    np.testing.assert_array_equal(table.column("pred_id").to_numpy(), preds)


def test_stream_feeds_each_token_once_and_keeps_the_context_of_all():
    n, window, stride, context = 1000, 128, 64, 512
    stream = plan_windows(n, "stream", window, stride, context_length=context)
    full = plan_windows(n, "all", window, stride)
    fed = np.zeros(n, dtype=int)
    for w in stream:
        fed[w.fed[0] : w.fed[1]] += 1
    segments = [w for w in stream if not w.cached]
    # each token fed once, but the left context of a new segment's first window, fed twice
    refed = np.zeros(n, dtype=int)
    for w in segments[1:]:
        refed[w.start : w.score_from] = 1
    np.testing.assert_array_equal(fed[: n - 1], 1 + refed[: n - 1])
    assert fed.sum() < 1.2 * n and fed.sum() < 0.65 * sum(w.length for w in full)
    # the same rows scored, with the same left context, as the windows of "all"
    same = {(w.score_from, w.stop, w.start) for w in full}
    assert all((w.score_from, w.stop, w.start) in same for w in stream)
    for w in stream:  # positions stay within the model's context
        assert w.stop - w.origin <= context


def test_every_tested_family_is_verified_or_refused():
    assert set(FAMILIES) | set(DISCOVERY_FAMILIES) == set(STREAM_FAMILIES) | {"bloom", "opt"}


@pytest.mark.parametrize("family", ["bloom", "opt"])
def test_architectures_whose_cache_cannot_be_cut_are_refused(family):
    loaded = tiny_loaded(family)
    with pytest.raises(CaptureError, match="use --windows all") as info:
        extract(loaded, "Alice was beginning to get very tired.", windows="stream", progress=False)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_the_sink_keeps_a_real_models_predictions_as_good_as_fresh_windows():
    """Without the segment's first token a chunk predicts far worse; with it, as well as `all`.

    The embedded SmolLM2 on 2,500 tokens of Alice: the chunks' top-1 accuracy equals the
    `all` windows' (same rows, same left context) within 3 points, and at least 90% of
    their predictions agree.
    """
    from lamina.sources import load_model, load_text

    loaded = load_model("smollm2-135m", progress=False)
    text = load_text("gutenberg:11").text
    tokens = loaded.tokenizer(text[:20_000], add_special_tokens=False)["input_ids"][:2_501]
    prefix = loaded.tokenizer.decode(tokens)
    kwargs = dict(window=512, stride=256, progress=False)
    stream = extract(loaded, prefix, windows="stream", **kwargs)
    full = extract(loaded, prefix, windows="all", **kwargs)
    np.testing.assert_array_equal(stream.column("text_pos"), full.column("text_pos"))
    chunks = stream.column("ctx_pos").to_numpy() >= 256
    a, b = (t.column("correct").to_numpy()[chunks] for t in (stream, full))
    assert abs(a.mean() - b.mean()) < 0.03
    agree = stream.column("pred_id").to_numpy()[chunks] == full.column("pred_id").to_numpy()[chunks]
    assert agree.mean() > 0.9
