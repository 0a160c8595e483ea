"""Run a causal LM over a text and build the token table.

For every window (see :mod:`lamina.capture.windows`) one forward pass of the
Hugging Face model runs with hooks on the site modules (see
:mod:`lamina.capture.sites`). Each hook reduces its module's output to one L2
norm per scored position (float32 accumulation) before the forward pass moves
on, so no layer's activations outlive its step: memory grows with
tokens x layers, not tokens x layers x hidden size. The logits of the scored
positions give the prediction columns (``correct``, ``target_rank``,
``target_logprob``, ``entropy``), computed in float32 with a few vectorised
tensor operations per window.
"""

from __future__ import annotations

import datetime
import hashlib
import inspect
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lamina import __version__
from lamina.capture.covariates import covariate_columns
from lamina.capture.hooks import NormCapture
from lamina.capture.scoring import decoded_lengths, score_next_tokens
from lamina.capture.sites import ResolvedSites, context_length, resolve_sites
from lamina.capture.windows import (
    Window,
    check_window_fits,
    default_stride,
    default_window,
    plan_windows,
)
from lamina.errors import CaptureError, InputError
from lamina.table import FORMAT_VERSION, SCORE_COLUMNS, build_table

if TYPE_CHECKING:
    import pyarrow as pa
    from torch import nn


def tokenize(tokenizer: Any, text: str) -> np.ndarray:
    """The text's token stream as int64 ids, without special tokens (no BOS, no EOS)."""
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return np.asarray(ids, dtype=np.int64)


def _batches(windows: Sequence[Window], batch_size: int) -> Iterator[list[Window]]:
    """Consecutive windows of equal length, at most ``batch_size`` at a time (no padding)."""
    group: list[Window] = []
    for w in windows:
        if group and (len(group) == batch_size or w.length != group[0].length):
            yield group
            group = []
        group.append(w)
    if group:
        yield group


def _text_and_provenance(text: Any) -> tuple[str, dict]:
    if isinstance(text, str):
        data = text.encode("utf-8")
        digest = hashlib.sha256(data).hexdigest()
        return text, {
            "spec": "<string>",
            "source": "string",
            "sha256": digest,
            "raw_sha256": digest,
            "n_chars": len(text),
            "boilerplate": "kept",
        }
    if hasattr(text, "text") and hasattr(text, "provenance"):
        provenance = text.provenance
        as_dict = provenance.to_dict() if hasattr(provenance, "to_dict") else dict(provenance)
        return text.text, as_dict
    raise InputError(f"text must be a string or a loaded text, not {type(text).__name__}.")


def _model_report(loaded: Any, model: nn.Module) -> dict:
    report = getattr(loaded, "report", None)
    if report is not None and hasattr(report, "to_dict"):
        return report.to_dict()
    config = model.config
    return {"name": type(model).__name__, "architecture": getattr(config, "model_type", None)}


def _context_length(loaded: Any, model: nn.Module) -> int | None:
    report = getattr(loaded, "report", None)
    value = getattr(report, "context_length", None)
    if isinstance(value, int) and value > 0:
        return value
    return context_length(model)


def _accepts(model: nn.Module, argument: str) -> bool:
    try:
        return argument in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _device(model: nn.Module) -> torch.device:
    embeddings = model.get_input_embeddings()
    if embeddings is not None and getattr(embeddings, "weight", None) is not None:
        return embeddings.weight.device
    return next(model.parameters()).device


def extract(
    loaded: Any,
    text: Any,
    *,
    sites: str | Iterable[str] = ("attn_out",),
    windows: str = "all",
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 1,
    max_tokens: int | None = None,
    bos: bool = False,
    site_template: str | Iterable[str] | Mapping[str, str] | None = None,
    progress: bool | None = True,
    command_line: str | None = None,
) -> pa.Table:
    """Score every planned token of ``text`` and record the norm each layer writes there.

    ``loaded`` is a :class:`lamina.sources.LoadedModel` (anything with ``model``,
    ``tokenizer`` and ``report``); ``text`` a :class:`lamina.sources.LoadedText` or
    a string. ``windows`` is ``"all"`` or ``"middle"``; ``window`` (default
    ``min(context, 1024)``) and ``stride`` (default ``window // 2``) count tokens;
    ``batch_size`` windows share a forward pass; ``max_tokens`` caps the scored
    tokens; ``bos`` prepends the tokenizer's BOS token to every window (it is fed,
    not scored). ``site_template`` names site modules explicitly (see
    :func:`lamina.capture.sites.parse_site_templates`). ``progress``: True shows a
    tqdm bar, False hides it, None shows it on a terminal only.

    Returns the token table (see :mod:`lamina.table`); ``.to_pandas()`` gives a
    DataFrame. Raises :class:`CaptureError` / :class:`InputError` before any
    forward pass for options that cannot work.
    """
    model = loaded.model
    tokenizer = loaded.tokenizer
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch size {batch_size!r} must be a positive number of windows.")
    resolved = resolve_sites(model, sites, site_template)
    text_str, text_provenance = _text_and_provenance(text)
    context = _context_length(loaded, model)
    if window is None:
        window = default_window(context, bos)
    check_window_fits(window, context, bos)
    bos_id = _bos_id(tokenizer) if bos else None

    tokens = tokenize(tokenizer, text_str)
    plan = plan_windows(len(tokens), windows, window, stride, max_tokens)
    started = time.perf_counter()
    capture = NormCapture(model, resolved)
    scores, norms = _forward(model, capture, plan, tokens, batch_size, bos_id, progress)
    seconds = time.perf_counter() - started

    columns = _columns(plan, tokens, scores, tokenizer)
    for j, name in enumerate(capture.names):
        columns[name] = norms[:, j]
    metadata = {
        "format_version": FORMAT_VERSION,
        "lamina_version": __version__,
        "model": _model_report(loaded, model),
        "text": text_provenance,
        "windows": {
            "mode": windows,
            "window": window,
            # the stride only applies to "all" windows
            "stride": None if windows == "middle" else stride or default_stride(window),
            "bos": bos,
            "batch_size": batch_size,
            "max_tokens": max_tokens,
            "n_windows": len(plan),
        },
        "n_text_tokens": len(tokens),
        "n_scored": len(columns["text_pos"]),
        **_sites_metadata(resolved),
        "seconds": round(seconds, 3),
        "command_line": command_line,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return build_table(columns, metadata)


def _bos_id(tokenizer: Any) -> int:
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        raise CaptureError("this tokenizer has no BOS token; run without --bos.")
    return bos_id


def _sites_metadata(resolved: ResolvedSites) -> dict[str, Any]:
    return {
        "sites": list(resolved.sites),
        "site_modules": dict(resolved.templates),
        "site_sources": dict(resolved.source),
        "n_layers": resolved.n_layers,
        "n_heads": resolved.n_heads,
    }


def _forward(
    model: nn.Module,
    capture: NormCapture,
    plan: Sequence[Window],
    tokens: np.ndarray,
    batch_size: int,
    bos_id: int | None,
    progress: bool | None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Run every window through the model; the prediction columns and the norms, row-aligned.

    Returns ``(scores, norms)``: ``scores`` maps each prediction column to an
    array with one entry per scored token; ``norms`` is float32
    ``(n_scored, n_columns)`` in the order of ``capture.names``.
    """
    from tqdm.auto import tqdm

    n_rows = sum(w.n_scored for w in plan)
    device = _device(model)
    token_tensor = torch.from_numpy(tokens).to(device)
    keep_logits = _accepts(model, "logits_to_keep")
    scores = {
        "correct": np.empty(n_rows, dtype=bool),
        "target_rank": np.empty(n_rows, dtype=np.int32),
        "target_logprob": np.empty(n_rows, dtype=np.float32),
        "entropy": np.empty(n_rows, dtype=np.float32),
    }
    norms = np.empty((n_rows, len(capture.names)), dtype=np.float32)
    was_training = model.training
    model.eval()
    bar = tqdm(
        total=n_rows,
        unit="tok",
        unit_scale=True,
        desc="extract",
        disable=None if progress is None else not progress,
        leave=False,
    )
    row = 0
    try:
        with capture, torch.inference_mode():
            for group in _batches(plan, batch_size):
                ids = torch.stack([token_tensor[w.start : w.stop] for w in group])
                if bos_id is not None:
                    bos_column = torch.full((len(group), 1), bos_id, device=device)
                    ids = torch.cat([bos_column, ids], dim=1)
                keep = max(w.n_scored for w in group)
                capture.start_batch(len(group), ids.shape[1], keep, device)
                kwargs: dict[str, Any] = {"use_cache": False}
                if keep_logits:
                    kwargs["logits_to_keep"] = keep
                logits = model(input_ids=ids, **kwargs).logits[:, -keep:]
                capture.check_filled()
                batch_norms = capture.buffer.permute(1, 2, 0).cpu().numpy()  # (B, keep, cols)
                for i, w in enumerate(group):
                    n = w.n_scored
                    targets = token_tensor[w.score_from + 1 : w.stop + 1]
                    window_scores = score_next_tokens(logits[i, keep - n :], targets)
                    for name, values in window_scores.items():
                        scores[name][row : row + n] = values.cpu().numpy()
                    norms[row : row + n] = batch_norms[i, keep - n :]
                    row += n
                del logits
                bar.update(sum(w.n_scored for w in group))
    finally:
        bar.close()
        model.train(was_training)
    return scores, norms


def _columns(
    plan: Sequence[Window], tokens: np.ndarray, scores: dict[str, np.ndarray], tokenizer: Any
) -> dict[str, np.ndarray]:
    """The per-token columns of the table (positions, ids, scores, covariates), in schema order."""
    text_pos = np.concatenate([np.arange(w.score_from, w.stop) for w in plan])
    columns: dict[str, np.ndarray] = {
        "text_pos": text_pos,
        "window": np.concatenate([np.full(w.n_scored, w.index) for w in plan]),
        "ctx_pos": np.concatenate([np.arange(w.score_from, w.stop) - w.start for w in plan]),
        "token_id": tokens[text_pos],
        "target_id": tokens[text_pos + 1],
        **scores,
    }
    chars = decoded_lengths(tokenizer, columns["target_id"])
    columns["target_chars"] = np.minimum(chars, np.iinfo(np.int16).max)
    window_start = np.concatenate([np.full(w.n_scored, w.start) for w in plan])
    covariates = covariate_columns(tokens, text_pos, window_start, tokenizer)
    return {**{name: columns[name] for name in SCORE_COLUMNS}, **covariates}
