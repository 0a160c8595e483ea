"""The probe on the model's device: pass 1's class sums, pass 2's held-out projections.

Pass 1: :class:`~lamina.capture.hooks.NormCapture` keeps each batch's probed vectors
(``stash``); once the batch is scored, :class:`SumsAccumulator` adds them, by fold
and class, into one shard's sums (float64, on the device; on the CPU for ``mps``,
which has no float64). Pass 2: :class:`ProjectionCapture`'s hooks project every
kept position's vector on its fold's direction (one small matrix product and a
gather per layer) into a ``(columns, batch, keep)`` buffer, as the norms are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lamina.capture.hooks import Column, NormCapture
from lamina.capture.probe_math import ShardSums, fields

if TYPE_CHECKING:
    from torch import nn

    from lamina.capture.architectures import ResolvedSites
    from lamina.capture.probe_math import Directions
    from lamina.capture.probe_spec import ProbeSpec


def work_device(device: torch.device) -> torch.device:
    """Where float64 sums and projections are computed: the model's device, but not ``mps``."""
    return torch.device("cpu") if device.type == "mps" else device


class SumsAccumulator:
    """One shard's class sums per fold (see :mod:`lamina.capture.probe_math`).

    ``shard_folds``: the fold of each of the shard's rows; ``hidden``: the vectors'
    size, used only when no row is added (every row non-finite).
    """

    def __init__(
        self, spec: ProbeSpec, shard_folds: np.ndarray, device: torch.device, hidden: int
    ) -> None:
        self.names = [f"{s}.{layer}" for s, layer in spec.vector_columns()]
        self.fields = fields(spec.second_moments)
        self.folds = np.unique(shard_folds).astype(np.int16)
        self.slot_of = np.full(spec.folds, -1, dtype=np.int64)
        self.slot_of[self.folds] = np.arange(len(self.folds))
        self.count = np.zeros((len(self.folds), 2), dtype=np.int64)
        self.device = work_device(device)
        self.hidden = hidden
        self.moments: list[dict[str, torch.Tensor]] = [{} for _ in self.names]

    def _allocate(self, j: int, d: int) -> dict[str, torch.Tensor]:
        if not self.moments[j]:
            lead = (len(self.folds), 2)
            shapes = {"sum": (d,), "xx": (d, d), "qx": (d,), "q4": ()}
            self.moments[j] = {
                f: torch.zeros((*lead, *shapes[f]), dtype=torch.float64, device=self.device)
                for f in self.fields
            }
        return self.moments[j]

    def add(
        self,
        vectors: Sequence[torch.Tensor],
        correct: np.ndarray,
        folds: np.ndarray,
        skip: np.ndarray | None = None,
    ) -> None:
        """Add ``n`` rows: ``vectors[j]`` ``(n, d)``, their labels, folds and rows to skip."""
        groups = self.slot_of[folds] * 2 + correct.astype(np.int64)
        valid = np.ones(len(groups), dtype=bool) if skip is None else ~np.asarray(skip, dtype=bool)
        for group in np.unique(groups[valid]):
            rows = np.flatnonzero(valid & (groups == group))
            slot, c = divmod(int(group), 2)
            self.count[slot, c] += len(rows)
            index = None if len(rows) == len(groups) else torch.from_numpy(rows).to(self.device)
            for j, x in enumerate(vectors):
                x = x.to(self.device)
                xg = (x if index is None else x.index_select(0, index)).double()
                moments = self._allocate(j, xg.shape[1])
                moments["sum"][slot, c] += xg.sum(dim=0)
                if "xx" in moments:
                    moments["xx"][slot, c] += xg.T @ xg
                    q = (xg * xg).sum(dim=1)
                    moments["qx"][slot, c] += q @ xg
                    moments["q4"][slot, c] += (q * q).sum()

    def result(self) -> ShardSums:
        """The shard's sums as host arrays."""
        moments = {}
        for j, name in enumerate(self.names):
            tensors = self._allocate(j, self.hidden)
            moments[name] = {f: tensors[f].cpu().numpy() for f in self.fields}
        return ShardSums(self.folds, self.count.copy(), moments)


class ProjectionCapture(NormCapture):
    """Pass 2's hooks: each kept position's held-out probe score, in a per-batch buffer.

    Before each forward pass :meth:`set_folds` gives the fold of every kept position
    ``(batch, keep)``; position ``p`` of window ``b`` then scores
    ``x . w[fold] - offset[fold]`` (float64, stored as float32).
    """

    def __init__(self, model: nn.Module, resolved: ResolvedSites, directions: Directions) -> None:
        from lamina.capture.device import model_device

        names = list(directions.w)
        self.columns = []
        for k, name in enumerate(names):
            site, layer = name.rsplit(".", 1)
            self.columns.append(
                Column(site, int(layer), resolved.module_path(site, int(layer)), k, 1)
            )
        self.names = [f"probe.{name}" for name in names]
        self.model = model
        self.n_heads = resolved.n_heads
        self.batch_shape = (0, 0)
        self.keep = 0
        self.buffer = None
        self.filled = np.zeros(len(self.columns), dtype=bool)
        self._handles: list[Any] = []
        self.stash_slot, self.vectors = {}, []
        self.device = work_device(model_device(model))
        self.w = [torch.from_numpy(directions.w[n].T.copy()).to(self.device) for n in names]
        self.offset = [torch.from_numpy(directions.offset[n].copy()).to(self.device) for n in names]
        self.folds: torch.Tensor | None = None

    def set_folds(self, folds: np.ndarray) -> None:
        self.folds = torch.from_numpy(np.asarray(folds, dtype=np.int64)).to(self.device)

    def _output_hook(self, index: int, column: Column):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            vectors = self._positions(
                output[0] if isinstance(output, (tuple, list)) else output, column
            )
            scores = self.score(vectors[:, -self.keep :], index)
            self.buffer[column.first] = scores.to(self.buffer.device, torch.float32)
            self.filled[index] = True

        return hook

    def score(self, kept: torch.Tensor, index: int) -> torch.Tensor:
        """Held-out scores ``(batch, keep)`` (float64) of kept vectors ``(batch, keep, d)`` of
        column ``index``, each on its position's fold's direction (:meth:`set_folds`)."""
        projected = kept.to(self.device).double() @ self.w[index]  # (batch, keep, folds)
        scores = projected.gather(-1, self.folds[..., None])[..., 0]
        scores -= self.offset[index][self.folds]
        return scores
