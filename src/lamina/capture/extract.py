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

import dataclasses
import datetime
import hashlib
import inspect
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lamina import __version__
from lamina.capture.sites import (
    ResolvedSites,
    context_length,
    projection_layout,
    resolve_sites,
)
from lamina.capture.windows import (
    Window,
    check_window_fits,
    default_window,
    plan_windows,
)
from lamina.errors import CaptureError, InputError
from lamina.table import FORMAT_VERSION, SCORE_COLUMNS, build_table, site_column

if TYPE_CHECKING:
    import pyarrow as pa
    from torch import nn


def tokenize(tokenizer: Any, text: str) -> np.ndarray:
    """The text's token stream as int64 ids, without special tokens (no BOS, no EOS)."""
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return np.asarray(ids, dtype=np.int64)


# Elements of logits scored at a time: on a CPU a chunk that stays in cache makes the
# few passes over it cheap; on an accelerator larger chunks amortise kernel launches.
_CPU_CHUNK_ELEMENTS = 1 << 20
_ACCELERATOR_CHUNK_ELEMENTS = 1 << 26


def score_next_tokens(
    logits: torch.Tensor, targets: torch.Tensor, *, chunk_elements: int | None = None
) -> dict[str, torch.Tensor]:
    """Prediction columns for ``n`` positions from their logits.

    ``logits`` is ``(n, vocab)`` (any float dtype; scored in float32), ``targets``
    is ``(n,)``. Returns tensors of shape ``(n,)``: ``correct`` (bool, the first
    index of the largest logit equals the target), ``target_rank`` (int32,
    vocabulary entries with a logit strictly greater than the target's; 0 =
    top-1), ``target_logprob`` (float32, log-softmax at the target, nats) and
    ``entropy`` (float32, of the softmax distribution, nats). Rows are scored
    ``chunk_elements // vocab`` at a time into reused buffers.
    """
    n, vocab = logits.shape
    device = logits.device
    if chunk_elements is None:
        chunk_elements = (
            _CPU_CHUNK_ELEMENTS if device.type == "cpu" else _ACCELERATOR_CHUNK_ELEMENTS
        )
    rows = max(1, min(n, chunk_elements // vocab))
    targets = targets.to(device=device, dtype=torch.long)
    target_logit = logits.gather(1, targets[:, None])[:, 0].float()
    largest = torch.empty(n, dtype=torch.float32, device=device)
    argmax = torch.empty(n, dtype=torch.long, device=device)
    above = torch.empty(n, dtype=torch.float32, device=device)
    partition = torch.empty(n, dtype=torch.float32, device=device)
    weighted = torch.empty(n, dtype=torch.float32, device=device)
    shifted_buffer = torch.empty((rows, vocab), dtype=torch.float32, device=device)
    scratch_buffer = torch.empty_like(shifted_buffer)
    # With s = x - max(x) <= 0 and Z = sum(exp(s)): log-softmax(x) = s - log Z and
    # entropy = log Z - sum(exp(s) * s) / Z; the shift keeps both well conditioned.
    for first in range(0, n, rows):
        x = logits[first : first + rows].float()
        block = slice(first, first + x.shape[0])
        shifted, scratch = shifted_buffer[: x.shape[0]], scratch_buffer[: x.shape[0]]
        torch.max(x, dim=-1, out=(largest[block], argmax[block]))
        torch.gt(x, target_logit[block, None], out=scratch)
        torch.sum(scratch, dim=-1, out=above[block])
        torch.sub(x, largest[block, None], out=shifted)
        torch.exp(shifted, out=scratch)
        torch.sum(scratch, dim=-1, out=partition[block])
        torch.sum(scratch.mul_(shifted), dim=-1, out=weighted[block])
    masked = weighted.isnan().nonzero()[:, 0]  # rows with -inf logits: 0 * -inf
    if len(masked):
        s = logits[masked].float() - largest[masked, None]
        weighted[masked] = torch.where(s > -torch.inf, s.exp() * s, 0.0).sum(dim=-1)
    log_partition = partition.log()
    return {
        "correct": argmax == targets,
        "target_rank": above.to(torch.int32),
        "target_logprob": target_logit - largest - log_partition,
        "entropy": log_partition - weighted / partition,
    }


def decoded_lengths(tokenizer: Any, token_ids: np.ndarray, cache: dict[int, int] | None = None):
    """``len(tokenizer.decode([id]))`` for every id, decoding each distinct id once.

    ``cache`` (id -> length) is read and extended, so repeated calls decode each id
    once overall. Returns an int64 array shaped like ``token_ids``.
    """
    cache = {} if cache is None else cache
    unique, inverse = np.unique(token_ids, return_inverse=True)
    new = [int(i) for i in unique if int(i) not in cache]
    if new:
        texts = tokenizer.batch_decode([[i] for i in new])
        cache.update(zip(new, (len(t) for t in texts), strict=True))
    lengths = np.fromiter((cache[int(i)] for i in unique), dtype=np.int64, count=len(unique))
    return lengths[inverse].reshape(np.shape(token_ids))


@dataclasses.dataclass(frozen=True)
class _Column:
    """One hooked module and the table columns it fills."""

    site: str
    layer: int
    path: str
    first: int  # index of its first column in the norm buffer
    width: int  # number of columns (n_heads for attn_head, else 1)


class _NormCapture:
    """Forward hooks that write per-position L2 norms into a per-batch buffer.

    The buffer is ``(n_columns, batch, keep)`` float32 on the model's device:
    column ``c``, window ``b`` and the last ``keep`` positions of the window.
    """

    def __init__(self, model: nn.Module, resolved: ResolvedSites):
        self.columns: list[_Column] = []
        self.names: list[str] = []
        for site in resolved.sites:
            for layer in range(resolved.n_layers):
                path = resolved.module_path(site, layer)
                width = resolved.n_heads if site == "attn_head" else 1
                self.columns.append(_Column(site, layer, path, len(self.names), width))
                if site == "attn_head":
                    self.names += [site_column(site, layer, h) for h in range(width)]
                else:
                    self.names.append(site_column(site, layer))
        self.model = model
        self.n_heads = resolved.n_heads
        self.batch_shape = (0, 0)
        self.keep = 0
        self.buffer: torch.Tensor | None = None
        self.filled = np.zeros(len(self.columns), dtype=bool)
        self._handles: list[Any] = []

    def __enter__(self) -> _NormCapture:
        try:
            for index, column in enumerate(self.columns):
                module = self.model.get_submodule(column.path)
                if column.site == "attn_head":
                    hook = self._head_hook(index, column, module)
                    self._handles.append(module.register_forward_pre_hook(hook))
                else:
                    hook = self._output_hook(index, column)
                    self._handles.append(module.register_forward_hook(hook))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def start_batch(self, batch: int, length: int, keep: int, device: torch.device) -> None:
        self.batch_shape = (batch, length)
        self.keep = keep
        self.buffer = torch.empty(
            (len(self.names), batch, keep), dtype=torch.float32, device=device
        )
        self.filled[:] = False

    def check_filled(self) -> None:
        if not self.filled.all():
            column = self.columns[int(np.argmin(self.filled))]
            raise CaptureError(
                f"the module {column.path} (site {column.site}) was not called during the "
                "forward pass; name the right module with a site template."
            )

    def _positions(self, vectors: torch.Tensor, column: _Column) -> torch.Tensor:
        """``vectors`` as ``(batch, positions, features)``; OPT flattens batch and positions."""
        batch, length = self.batch_shape
        if vectors.dim() == 3 and vectors.shape[:2] == (batch, length):
            return vectors
        if vectors.dim() == 2 and vectors.shape[0] == batch * length:
            return vectors.unflatten(0, (batch, length))
        raise CaptureError(
            f"the module {column.path} gave a tensor of shape {tuple(vectors.shape)}, not "
            f"(batch {batch}, positions {length}, features); name another module with a "
            "site template."
        )

    def _output_hook(self, index: int, column: _Column):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            vectors = self._positions(
                output[0] if isinstance(output, (tuple, list)) else output, column
            )
            self.buffer[column.first] = torch.linalg.vector_norm(
                vectors[:, -self.keep :], dim=-1, dtype=torch.float32
            )
            self.filled[index] = True

        return hook

    def _head_hook(self, index: int, column: _Column, module: nn.Module):
        """Per-head norms from the output projection's input.

        With ``x_h`` the projection's input slice of head ``h`` (``head_dim``
        features) and ``W_h`` that head's ``(head_dim, d_out)`` slice of the weight
        (as ``y = x @ W``), head ``h`` writes ``x_h @ W_h``; its squared norm is
        ``x_h @ G_h @ x_h`` with the Gram matrix ``G_h = W_h @ W_h.T``, which costs
        ``head_dim**2`` instead of ``head_dim * d_out`` per head and position.
        """
        n_heads = self.n_heads
        weight = module.weight.detach()
        weight_in_out = weight if projection_layout(module) == "conv1d" else weight.T
        d_in = weight_in_out.shape[0]
        head_dim = d_in // n_heads
        per_head = weight_in_out.float().reshape(n_heads, head_dim, -1)
        gram = per_head @ per_head.transpose(1, 2)  # (heads, head_dim, head_dim)

        def hook(module: nn.Module, args: tuple) -> None:
            x = self._positions(args[0], column)[:, -self.keep :]
            x = x.float().unflatten(-1, (n_heads, head_dim))
            # (batch, keep, heads, head_dim) @ (heads, head_dim, head_dim), per head
            projected = torch.einsum("bkhe,hef->bkhf", x, gram)
            squared = (projected * x).sum(dim=-1).clamp_min_(0.0)
            norms = squared.sqrt_()  # (batch, keep, heads)
            self.buffer[column.first : column.first + n_heads] = norms.permute(2, 0, 1)
            self.filled[index] = True

        return hook


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
    from tqdm.auto import tqdm

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
    bos_id = None
    if bos:
        bos_id = getattr(tokenizer, "bos_token_id", None)
        if bos_id is None:
            raise CaptureError("this tokenizer has no BOS token; run without --bos.")

    tokens = tokenize(tokenizer, text_str)
    plan = plan_windows(len(tokens), windows, window, stride, max_tokens)
    # the stride only applies to "all" windows
    stride_used = None if windows == "middle" else stride or max(1, window // 2)
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
    was_training = model.training
    model.eval()
    started = time.perf_counter()
    bar = tqdm(
        total=n_rows,
        unit="tok",
        unit_scale=True,
        desc="extract",
        disable=None if progress is None else not progress,
        leave=False,
    )
    capture = _NormCapture(model, resolved)
    norms = np.empty((n_rows, len(capture.names)), dtype=np.float32)
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
    seconds = time.perf_counter() - started

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
    columns = {name: columns[name] for name in SCORE_COLUMNS}
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
            "stride": stride_used,
            "bos": bos,
            "batch_size": batch_size,
            "max_tokens": max_tokens,
            "n_windows": len(plan),
        },
        "n_text_tokens": len(tokens),
        "n_scored": n_rows,
        "sites": list(resolved.sites),
        "site_modules": dict(resolved.templates),
        "site_sources": dict(resolved.source),
        "n_layers": resolved.n_layers,
        "n_heads": resolved.n_heads,
        "seconds": round(seconds, 3),
        "command_line": command_line,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return build_table(columns, metadata)
