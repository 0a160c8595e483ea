"""Forward hooks that reduce what each site writes to one L2 norm per scored position.

Each hook runs inside the forward pass and writes the norms of the last ``keep``
positions of every window of the batch into one buffer on the model's device,
so no layer's activations outlive its step: memory grows with
tokens x layers, not tokens x layers x hidden size. For a probe
(:mod:`lamina.capture.probe_run`) the hooks of the probed sites also keep the
batch's kept vectors until the batch is scored (``stash``): bounded by the batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lamina.capture.architectures import ResolvedSites, projection_layout
from lamina.errors import CaptureError

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class Column:
    """One hooked module and the table columns it fills."""

    site: str
    layer: int
    path: str
    first: int  # index of its first column in the norm buffer
    width: int  # number of columns (n_heads for attn_head, else 1)


class NormCapture:
    """Forward hooks that write per-position L2 norms into a per-batch buffer.

    The buffer is ``(n_columns, batch, keep)`` float32 on the model's device:
    column ``c``, window ``b`` and the last ``keep`` positions of the window.
    """

    def __init__(
        self, model: nn.Module, resolved: ResolvedSites, stash: Sequence[tuple[str, int]] = ()
    ):
        self.columns: list[Column] = []
        self.names: list[str] = resolved.column_names()
        first = 0
        for site in resolved.sites:
            for layer in range(resolved.n_layers):
                path = resolved.module_path(site, layer)
                width = resolved.n_heads if site == "attn_head" else 1
                self.columns.append(Column(site, layer, path, first, width))
                first += width
        self.model = model
        self.n_heads = resolved.n_heads
        self.batch_shape = (0, 0)
        self.keep = 0
        self.buffer: torch.Tensor | None = None
        self.filled = np.zeros(len(self.columns), dtype=bool)
        self._handles: list[Any] = []
        # the probed vectors of the batch (float32, (batch, keep, d)), in ``stash`` order
        slots = {tuple(where): slot for slot, where in enumerate(stash)}
        self.stash_slot = {
            i: slots[(c.site, c.layer)]
            for i, c in enumerate(self.columns)
            if (c.site, c.layer) in slots
        }
        self.vectors: list[torch.Tensor | None] = [None] * len(slots)

    def __enter__(self) -> NormCapture:
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
        self.vectors = [None] * len(self.vectors)

    def check_filled(self) -> None:
        if not self.filled.all():
            column = self.columns[int(np.argmin(self.filled))]
            raise CaptureError(
                f"the module {column.path} (site {column.site}) was not called during the "
                "forward pass; name the right module with a site template."
            )

    def first_nonfinite(self) -> Column | None:
        """The column whose norms in this batch are not all finite, earliest layer first."""
        bad = (~torch.isfinite(self.buffer)).flatten(1).any(dim=1).cpu().numpy()
        hits = [
            (c.layer, i, c)
            for i, c in enumerate(self.columns)
            if bad[c.first : c.first + c.width].any()
        ]
        return min(hits, key=lambda hit: hit[:2])[2] if hits else None

    def _positions(self, vectors: torch.Tensor, column: Column) -> torch.Tensor:
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

    def _output_hook(self, index: int, column: Column):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            vectors = self._positions(
                output[0] if isinstance(output, (tuple, list)) else output, column
            )
            kept = vectors[:, -self.keep :]
            self.buffer[column.first] = torch.linalg.vector_norm(kept, dim=-1, dtype=torch.float32)
            if index in self.stash_slot:
                self.vectors[self.stash_slot[index]] = kept.to(torch.float32, copy=True)
            self.filled[index] = True

        return hook

    def _head_hook(self, index: int, column: Column, module: nn.Module):
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
