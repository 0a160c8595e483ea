"""How many windows share a forward pass: a number, or ``auto`` (as many as fit).

``auto`` estimates the memory one window's forward pass needs (activations,
attention scores, the kept logits) from the model's config, and takes the
largest power of two whose batch fits a budget: on a CPU a quarter of the
memory available now (at most 4 GiB; batches beyond 16 windows bring nothing
there), on a GPU 80% of its free memory (at most 256 windows). On a GPU an
out-of-memory error halves the batch and retries it (:meth:`ShardComputer`),
and the size that worked is remembered in lamina's cache for the next run of
the same model, window and device.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina._io import atomic_open, cache_dir
from lamina.errors import InputError, LaminaError
from lamina.sources.hfconfig import config_dims

if TYPE_CHECKING:
    from torch import nn

CPU_BUDGET_BYTES = 4 * 2**30
CPU_MAX_BATCH = 16
GPU_MAX_BATCH = 256
_MEMORY_FILE = "batch-sizes.json"


def resolve_batch_size(
    batch_size: int | str, model: nn.Module, window: int, n_sites: int, *, probe_sites: int = 0
) -> int:
    """``batch_size`` as a number of windows (``"auto"`` estimated for this model and device;
    ``probe_sites``: sites whose vectors a probe keeps until the batch is scored)."""
    if batch_size == "auto":
        return auto_batch_size(model, window, n_sites, probe_sites=probe_sites)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(
            f"batch size {batch_size!r} must be a positive number of windows or 'auto'."
        )
    return batch_size


def window_bytes(model: nn.Module, window: int, n_sites: int, probe_sites: int = 0) -> int:
    """Estimated peak memory of one window's forward pass, in bytes.

    A probe keeps every layer's vector of ``probe_sites`` sites per position (float32) and
    a float64 copy of one of them while it is added to the sums.
    """
    dims = config_dims(model.config)
    config = (
        model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    )
    hidden = dims.hidden_size or 1024
    intermediate = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None)
    intermediate = intermediate or 4 * hidden
    vocab = getattr(config, "vocab_size", 50_000) or 50_000
    heads = dims.n_heads or 16
    element = next(model.parameters()).element_size()
    per_token = (16 * hidden + 2 * intermediate) * element + vocab * 4 + 8 * n_sites
    if probe_sites:
        per_token += probe_sites * (dims.n_layers or 1) * hidden * 4 + hidden * 8
    return window * per_token + heads * window * window * 4


def auto_batch_size(model: nn.Module, window: int, n_sites: int, probe_sites: int = 0) -> int:
    import torch

    from lamina.capture.device import model_device

    device = model_device(model)
    remembered = recall(model, window, device)
    if remembered is not None:
        return remembered
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget, cap = int(0.8 * free), GPU_MAX_BATCH
    else:
        budget, cap = min(_available_memory() // 4, CPU_BUDGET_BYTES), CPU_MAX_BATCH
    size = 1
    per_window = max(window_bytes(model, window, n_sites, probe_sites), 1)
    while size * 2 <= cap and size * 2 * per_window <= budget:
        size *= 2
    return size


def available_memory() -> int:
    """The memory this machine has available now, in bytes (``MemAvailable`` on Linux)."""
    return _available_memory()


def _available_memory() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return 2 * 2**30


def _key(model: nn.Module, window: int, device: Any) -> str:
    import torch

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    fingerprint = getattr(model.config, "_name_or_path", "") or type(model).__name__
    return f"{fingerprint}|{window}|{name}"


def recall(model: nn.Module, window: int, device: Any) -> int | None:
    """A batch size that worked before for this model, window and GPU (None on a CPU)."""
    if device.type != "cuda":
        return None
    try:
        memory = json.loads((cache_dir() / _MEMORY_FILE).read_text(encoding="utf-8"))
        value = memory.get(_key(model, window, device))
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value >= 1 else None


def remember(model: nn.Module, window: int, device: Any, size: int) -> None:
    """Remember the batch size that fit (best effort: a cache that cannot be written is skipped)."""
    path = cache_dir() / _MEMORY_FILE
    try:
        memory = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(memory, dict):
            memory = {}
    except (OSError, ValueError):
        memory = {}
    memory[_key(model, window, device)] = size
    with contextlib.suppress(OSError, LaminaError), atomic_open(path) as fh:
        json.dump(memory, fh, indent=1, sort_keys=True)
