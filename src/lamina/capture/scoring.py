"""What the model predicted at each scored position: correctness, rank, log-prob, entropy.

:func:`score_next_tokens` reads the logits of the scored positions in float32,
a chunk of rows at a time into reused buffers; :func:`decoded_lengths` gives
each target token's length in characters, decoding every distinct id once;
:func:`token_strings` the decoded text of every id a table uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

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
    index of the largest logit equals the target), ``pred_id`` (int32, the top-1
    prediction: that index), ``target_rank`` (int32,
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
    lowest = torch.finfo(torch.float32).min
    shifted_buffer = torch.empty((rows, vocab), dtype=torch.float32, device=device)
    scratch_buffer = torch.empty_like(shifted_buffer)
    # half-precision logits are converted into a reused buffer, not a fresh float32 copy
    # allocated per chunk
    upcast_buffer = None if logits.dtype == torch.float32 else torch.empty_like(shifted_buffer)
    # With s = x - max(x) <= 0 and Z = sum(exp(s)): log-softmax(x) = s - log Z and
    # entropy = log Z - sum(exp(s) * s) / Z; the shift keeps both well conditioned.
    for first in range(0, n, rows):
        x = logits[first : first + rows]
        if upcast_buffer is not None:
            x = upcast_buffer[: x.shape[0]].copy_(x)
        block = slice(first, first + x.shape[0])
        shifted, scratch = shifted_buffer[: x.shape[0]], scratch_buffer[: x.shape[0]]
        torch.max(x, dim=-1, out=(largest[block], argmax[block]))
        torch.gt(x, target_logit[block, None], out=scratch)
        torch.sum(scratch, dim=-1, out=above[block])
        torch.sub(x, largest[block, None], out=shifted)
        torch.exp(shifted, out=scratch)
        torch.sum(scratch, dim=-1, out=partition[block])
        # a -inf logit has exp 0; clamping its shift to the lowest float keeps 0 * s = 0
        # (not NaN) without a data-dependent branch, which would wait for the device
        shifted.clamp_(min=lowest)
        torch.sum(scratch.mul_(shifted), dim=-1, out=weighted[block])
    log_partition = partition.log()
    return {
        "correct": argmax == targets,
        "pred_id": argmax.to(torch.int32),
        "target_rank": above.to(torch.int32),
        "target_logprob": target_logit - largest - log_partition,
        "entropy": log_partition - weighted / partition,
    }


def token_strings(tokenizer: Any, *id_arrays: np.ndarray) -> dict[str, str]:
    """``{str(id): tokenizer.decode([id])}`` for every distinct id of the arrays, ascending.

    The token table keeps this map in its metadata (``vocab``), so a report can
    show the scored text and the predictions without the tokenizer.
    """
    ids = np.unique(np.concatenate([np.ravel(a) for a in id_arrays])) if id_arrays else []
    texts = tokenizer.batch_decode([[int(i)] for i in ids])
    return {str(int(i)): text for i, text in zip(ids, texts, strict=True)}


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
