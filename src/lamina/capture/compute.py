"""The forward passes of one shard: what the model predicts and what each site writes.

:class:`ShardComputer` holds a loaded model with its site hooks and computes a
shard's columns (:data:`lamina.capture.shards.SHARD_SCHEMA` plus one float32
column per site and layer) for the shard's scored positions, in plan order.
Fresh windows of equal length run in batches; a ``stream`` segment runs its
chunks one after the other through the model's key/value cache
(:mod:`lamina.capture.stream`). Scores and norms stay on the model's device
until a batch is done, then move to the host in one transfer each. With a probe,
:meth:`ShardComputer.compute_probed` also returns the shard's class sums per fold
(pass 1) and :meth:`ShardComputer.project` runs the same forward passes again
for the held-out probe scores (pass 2, no scoring: :mod:`lamina.capture.probe_run`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lamina.capture.device import accepts, model_device
from lamina.capture.hooks import NormCapture
from lamina.capture.scoring import score_next_tokens
from lamina.capture.stream import chunk_inputs
from lamina.capture.windows import Window
from lamina.errors import CaptureError

if TYPE_CHECKING:
    from torch import nn

    from lamina.capture.architectures import ResolvedSites
    from lamina.capture.probe_math import Directions, ShardSums
    from lamina.capture.probe_spec import ProbeSpec

SCORE_DTYPES = {
    "correct": np.bool_,
    "pred_id": np.int32,
    "target_rank": np.int32,
    "target_logprob": np.float32,
    "entropy": np.float32,
}


class Interrupted(Exception):
    """Raised between batches when the caller asked extraction to stop (e.g. on SIGINT)."""


def batches(windows: Sequence[Window], batch_size: Callable[[], int]) -> Iterator[list[Window]]:
    """Consecutive fresh windows of equal length, at most ``batch_size()`` at a time (no padding).

    The size is asked for each batch: one halved after an out-of-memory error holds from the
    next batch on, so a failing size is not tried again.
    """
    group: list[Window] = []
    for w in windows:
        if group and (len(group) >= batch_size() or w.length != group[0].length):
            yield group
            group = []
        group.append(w)
    if group:
        yield group


class ShardComputer:
    """A model with hooks on its sites, ready to compute shards (see the module docstring).

    ``batch_size`` is the number of fresh windows per forward pass; ``bos_id``
    the BOS token prepended to every fresh window (None: none); ``should_stop``
    is asked between batches and raises :class:`Interrupted` when it says yes.
    A NaN or inf logit or norm stops the computation with a :class:`CaptureError`
    naming the first layer and site, unless ``allow_nonfinite``: then the rows are
    marked in the ``nonfinite`` column.
    """

    def __init__(
        self,
        model: nn.Module,
        resolved: ResolvedSites,
        *,
        batch_size: int = 1,
        bos_id: int | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_batch: Callable[[int], None] | None = None,
        allow_nonfinite: bool = False,
        probe: ProbeSpec | None = None,
    ) -> None:
        self.model = model
        self.resolved = resolved
        self.probe = probe
        self.capture = NormCapture(model, resolved, probe.vector_columns() if probe else ())
        self.names = list(self.capture.names)
        self.batch_size = batch_size
        self.bos_id = bos_id
        self.device = model_device(model)
        self.keep_logits = accepts(model, "logits_to_keep")
        # transformers 5 calls the key/value cache argument `cache`, earlier `past_key_values`
        self.cache_argument = "cache" if accepts(model, "cache") else "past_key_values"
        self.should_stop = should_stop
        self.on_batch = on_batch
        self.allow_nonfinite = allow_nonfinite
        self._row = 0  # the shard row the next scored position is
        self._folds: np.ndarray | None = None
        self._accumulator: Any = None
        self._kept: list | None = None
        self._projection: Any = None  # pass 2's hooks while projecting

    def compute_probed(
        self,
        tokens: np.ndarray,
        windows: Sequence[Window],
        folds: np.ndarray,
        keep_vectors: bool = False,
    ) -> tuple[dict[str, np.ndarray], ShardSums]:
        """Pass 1 of a probe: the shard's columns and its class sums per fold (``folds``: the
        fold of each of the shard's rows); ``keep_vectors``: the sums also carry the batches'
        probed vectors (``kept``), for :meth:`project_kept`."""
        from lamina.capture.probe_hooks import SumsAccumulator
        from lamina.sources.hfconfig import config_dims

        hidden = config_dims(self.model.config).hidden_size or 1
        self._folds = np.asarray(folds)
        self._accumulator = SumsAccumulator(self.probe, self._folds, self.device, hidden)
        self._kept = [] if keep_vectors else None
        try:
            columns = self.compute(tokens, windows)
            sums = self._accumulator.result()
            sums.kept = self._kept
            return columns, sums
        finally:
            self._folds, self._accumulator, self._kept = None, None, None

    def project(
        self,
        tokens: np.ndarray,
        windows: Sequence[Window],
        folds: np.ndarray,
        directions: Directions,
    ) -> dict[str, np.ndarray]:
        """Pass 2 of a probe: every row's held-out score, ``probe.{site}.{layer}`` (float32)."""
        capture, self.capture = self.capture, self._projection_capture(directions)
        self._folds = np.asarray(folds)
        try:
            return self.compute(tokens, windows)
        finally:
            self.capture, self._folds = capture, None

    def project_kept(
        self, kept: list, folds: np.ndarray, directions: Directions
    ) -> dict[str, np.ndarray]:
        """:meth:`project` from the vectors pass 1 kept (``ShardSums.kept``), without a forward
        pass: the same arithmetic on the same tensors, batch by batch."""
        capture = self._projection_capture(directions)
        self._folds = np.asarray(folds)
        self._row = 0
        parts = []
        try:
            for group, keep, vectors in kept:
                capture.set_folds(self._fold_matrix(group, keep))
                buffer = torch.stack(
                    [capture.score(v, j).to(torch.float32) for j, v in enumerate(vectors)]
                )
                parts.append(self._collect_projections(buffer, group, keep, capture.names))
        finally:
            self._folds = None
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def _projection_capture(self, directions: Directions) -> Any:
        from lamina.capture.probe_hooks import ProjectionCapture

        if self._projection is None or self._projection[0] is not directions:
            self._projection = (
                directions,
                ProjectionCapture(self.model, self.resolved, directions),
            )
        return self._projection[1]

    @property
    def projecting(self) -> bool:
        return self._projection is not None and self.capture is self._projection[1]

    def _start_batch(self, group: Sequence[Window], length: int, keep: int) -> None:
        """Size the hooks' buffers; when projecting, give every kept position its fold."""
        self.capture.start_batch(len(group), length, keep, self.device)
        if self.projecting:
            self.capture.set_folds(self._fold_matrix(group, keep))

    def _fold_matrix(self, group: Sequence[Window], keep: int) -> np.ndarray:
        """The fold of every kept position ``(windows, keep)`` of a batch starting at ``_row``."""
        matrix = np.zeros((len(group), keep), dtype=np.int64)
        row = self._row
        for i, w in enumerate(group):
            matrix[i, keep - w.n_scored :] = self._folds[row : row + w.n_scored]
            row += w.n_scored
        return matrix

    def _logits_kept(self, keep: int) -> int:
        """Logits the model computes per window: one while projecting (they are not read)."""
        return 1 if self.projecting else keep

    def compute(self, tokens: np.ndarray, windows: Sequence[Window]) -> dict[str, np.ndarray]:
        """The shard's columns for ``windows`` of the token stream ``tokens``, in plan order."""
        token_tensor = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64)).to(
            self.device
        )
        parts: list[dict[str, np.ndarray]] = []
        self._row = 0
        was_training = self.model.training
        self.model.eval()
        try:
            with self.capture, torch.inference_mode():
                for segment, group in _runs(windows):
                    if segment:
                        parts.append(self.forward_segment(token_tensor, group))
                        self._after_batch(sum(w.n_scored for w in group))
                        continue
                    for batch in batches(group, lambda: self.batch_size):
                        parts.extend(self._fresh_fitting(token_tensor, batch))
                        self._after_batch(sum(w.n_scored for w in batch))
        finally:
            self.model.train(was_training)
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def _after_batch(self, n_scored: int) -> None:
        if self.on_batch is not None:
            self.on_batch(n_scored)
        if self.should_stop is not None and self.should_stop():
            raise Interrupted

    def _fresh_fitting(self, token_tensor: torch.Tensor, batch: list[Window]) -> list[dict]:
        """``forward_fresh``, halving the batch (and remembering the size) when it does not fit."""
        try:
            return [self.forward_fresh(token_tensor, batch)]
        except torch.OutOfMemoryError as exc:
            if len(batch) == 1:
                raise CaptureError(
                    f"one window of {batch[0].length} tokens does not fit in the {self.device} "
                    "memory; give a smaller --window or --dtype bfloat16."
                ) from exc
        from lamina.capture.batching import remember

        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.batch_size = min(self.batch_size, len(batch) // 2)
        remember(self.model, batch[0].length, self.device, self.batch_size)
        parts: list[dict] = []
        done = 0
        while done < len(batch):  # the size may halve again on the way: ask it each time
            part = batch[done : done + self.batch_size]
            parts.extend(self._fresh_fitting(token_tensor, part))
            done += len(part)
        return parts

    def forward_fresh(self, token_tensor: torch.Tensor, group: list[Window]) -> dict[str, Any]:
        """One forward pass of fresh windows of equal length; their scored rows' columns."""
        ids = torch.stack([token_tensor[w.start : w.stop] for w in group])
        if self.bos_id is not None:
            bos_column = torch.full((len(group), 1), self.bos_id, device=self.device)
            ids = torch.cat([bos_column, ids], dim=1)
        keep = max(w.n_scored for w in group)
        self._start_batch(group, ids.shape[1], keep)
        kwargs: dict[str, Any] = {"use_cache": False}
        if self.keep_logits:
            kwargs["logits_to_keep"] = self._logits_kept(keep)
        logits = self.model(input_ids=ids, **kwargs).logits[:, -keep:]
        self.capture.check_filled()
        return self.collect(logits, self.capture.buffer, token_tensor, group, keep)

    def forward_segment(self, token_tensor: torch.Tensor, segment: list[Window]) -> dict:
        """One ``stream`` segment: a fresh window, then chunks through the key/value cache."""
        from transformers import DynamicCache

        cache = DynamicCache()
        offset = 1 if self.bos_id is not None else 0
        parts = []
        for k, w in enumerate(segment):
            if k == 0:
                ids = token_tensor[w.start : w.stop][None]
                if self.bos_id is not None:
                    bos = torch.full((1, 1), self.bos_id, device=self.device)
                    ids = torch.cat([bos, ids], dim=1)
                kwargs: dict[str, Any] = {}
            else:
                ids = token_tensor[w.score_from : w.stop][None]
                kwargs = chunk_inputs(cache, w, offset, ids.shape[1], self.device)
            if self.keep_logits:
                kwargs["logits_to_keep"] = self._logits_kept(w.n_scored)
            self._start_batch([w], ids.shape[1], w.n_scored)
            kwargs[self.cache_argument] = cache
            output = self.model(input_ids=ids, use_cache=True, **kwargs)
            self.capture.check_filled()
            logits = output.logits[:, -w.n_scored :]
            parts.append(self.collect(logits, self.capture.buffer, token_tensor, [w], w.n_scored))
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def _nonfinite(
        self, logits: torch.Tensor, buffer: torch.Tensor, group: Sequence[Window], keep: int
    ) -> np.ndarray:
        """The scored rows' non-finite flags; without ``allow_nonfinite`` a flag stops here."""
        any_bad, flags = _nonfinite_rows(logits, buffer, group, keep)
        if any_bad and not self.allow_nonfinite:
            column = self.capture.first_nonfinite()
            where = (
                f"at layer {column.layer}, site {column.site} ({column.path})"
                if column is not None
                else "in the logits (every recorded norm was finite)"
            )
            raise CaptureError(
                f"the model's output became NaN or infinite {where}: check the weights and the "
                "dtype (float16 overflows easily), or pass --allow-nonfinite to keep such "
                "tokens, marked and left out of the analysis."
            )
        return flags

    def collect(
        self,
        logits: torch.Tensor,
        buffer: torch.Tensor,
        token_tensor: torch.Tensor,
        group: Sequence[Window],
        keep: int,
    ) -> dict[str, np.ndarray]:
        """Score the windows' scored rows and move scores and norms to the host, once each."""
        if self.projecting:
            return self._collect_projections(buffer, group, keep)
        flags = self._nonfinite(logits, buffer, group, keep)
        rows = [logits[i, keep - w.n_scored :] for i, w in enumerate(group)]
        targets = torch.cat([token_tensor[w.score_from + 1 : w.stop + 1] for w in group])
        scores = score_next_tokens(rows[0] if len(rows) == 1 else torch.cat(rows), targets)
        norms = torch.cat(
            [buffer[:, i, keep - w.n_scored :] for i, w in enumerate(group)], dim=1
        )  # (columns, rows)
        out = {
            name: scores[name].cpu().numpy().astype(dtype) for name, dtype in SCORE_DTYPES.items()
        }
        out["nonfinite"] = flags
        host = norms.T.float().cpu().numpy()
        for j, name in enumerate(self.names):
            out[name] = host[:, j]
        if self._accumulator is not None:
            self._accumulate(out["correct"], flags, group, keep)
        self._row += len(flags)
        return out

    def _accumulate(
        self, correct: np.ndarray, flags: np.ndarray, group: Sequence[Window], keep: int
    ) -> None:
        """Add the batch's probed vectors to the shard's sums, by fold and class (non-finite
        rows left out)."""
        vectors = [
            torch.cat([v[i, keep - w.n_scored :] for i, w in enumerate(group)])
            if len(group) > 1
            else v[0, keep - group[0].n_scored :]  # a view: no copy of one window's vectors
            for v in self.capture.vectors
        ]
        folds = self._folds[self._row : self._row + len(correct)]
        self._accumulator.add(vectors, correct, folds, flags)
        if self._kept is not None:
            self._kept.append((list(group), keep, list(self.capture.vectors)))

    def _collect_projections(
        self,
        buffer: torch.Tensor,
        group: Sequence[Window],
        keep: int,
        names: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:
        scores = torch.cat([buffer[:, i, keep - w.n_scored :] for i, w in enumerate(group)], dim=1)
        host = scores.T.cpu().numpy()
        self._row += host.shape[0]
        return {name: host[:, j] for j, name in enumerate(names or self.capture.names)}


def _nonfinite_rows(
    logits: torch.Tensor, buffer: torch.Tensor, group: Sequence[Window], keep: int
) -> tuple[bool, np.ndarray]:
    """Whether any scored row's logits or norms are NaN or inf, and the flag of every row.

    A ``-inf`` logit is a masked vocabulary entry (probability 0), not a fault: a
    row's logits are bad when their maximum is not finite (a NaN, a ``+inf``, or
    every one ``-inf``). A few reductions on the device per batch.
    """
    finite = torch.isfinite(logits.amax(dim=-1)) & torch.isfinite(buffer).all(dim=0)
    if bool(finite.all()):
        return False, np.zeros(sum(w.n_scored for w in group), dtype=bool)
    bad = (~finite).cpu().numpy()  # (B, keep)
    flags = np.concatenate([bad[i, keep - w.n_scored :] for i, w in enumerate(group)])
    return bool(flags.any()), flags


def _runs(windows: Sequence[Window]) -> Iterator[tuple[bool, list[Window]]]:
    """Split a shard's windows into ``(is_segment, windows)`` runs.

    A ``stream`` segment is a fresh window followed by the cached chunks that
    continue it; every other run is consecutive fresh windows.
    """
    runs: list[tuple[bool, list[Window]]] = []
    for k, w in enumerate(windows):
        next_cached = k + 1 < len(windows) and windows[k + 1].cached
        if w.cached:
            runs[-1][1].append(w)
        elif next_cached:
            runs.append((True, [w]))
        elif runs and not runs[-1][0]:
            runs[-1][1].append(w)
        else:
            runs.append((False, [w]))
    yield from runs
