"""Which count backend is fastest here, measured once per machine and product shape, and cached.

A calibration times each candidate backend (:mod:`lamina.backends.products`) on
a product shaped like the real one (rows of labellings x tokens x bins, reduced
to about :data:`CALIBRATION_WORK` multiply-adds, tens of milliseconds in all):
a one-call screen drops any candidate :data:`SCREEN_RATIO` times slower than
the best (so a slow kernel, e.g. int8 without AVX-512, costs little), then the
rest run :data:`REPEATS` times and the fastest minimum wins.

The result is cached in ``calibration.json`` in lamina's cache directory
(:func:`lamina._io.cache_dir`), keyed by the machine (CPU model, usable cores,
numpy and torch versions, torch's CPU kernels, CUDA device) and the product's
shape class (powers of two of rows, tokens and bins); the file is written
atomically. A corrupt file, another machine's entry or a different set of
candidates is ignored and measured again.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lamina._io import atomic_open, cache_dir
from lamina.errors import OutputError

CACHE_NAME = "calibration.json"
CACHE_FORMAT = "lamina-count-backend-calibration"
CACHE_VERSION = 1
#: Multiply-adds of one calibration product (a few milliseconds in float32).
CALIBRATION_WORK = 1e8
#: Largest rows, tokens and bins of a calibration product.
MAX_ROWS, MAX_TOKENS, MAX_BINS = 512, 8192, 4096
#: A candidate this many times slower than the best in the screen is not timed further.
SCREEN_RATIO = 8.0
REPEATS = 3
#: Shape classes kept per machine.
MAX_ENTRIES = 256


def fastest(candidates: list[str], rows: int, tokens: int, bins: int) -> tuple[str, Path, bool]:
    """``(fastest backend, cache file, whether the file holds it)``, measuring if needed."""
    path = cache_dir() / CACHE_NAME
    machine = machine_key(candidates)
    shape = shape_class(rows, tokens, bins)
    entry = _read(path).get("machines", {}).get(machine, {}).get(shape_key(shape))
    if _valid(entry, candidates):
        return entry["fastest"], path, True
    entry = calibrate(candidates, *shape)
    data = _read(path)  # again: another process may have added entries meanwhile
    data = {"format": CACHE_FORMAT, "version": CACHE_VERSION, **data}
    entries = data.setdefault("machines", {}).setdefault(machine, {})
    entries[shape_key(shape)] = entry
    while len(entries) > MAX_ENTRIES:
        entries.pop(next(iter(entries)))
    try:
        with atomic_open(path) as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
    except (OSError, OutputError):  # an unwritable cache costs a new measurement next time
        return entry["fastest"], path, False
    return entry["fastest"], path, True


def calibrate(candidates: list[str], rows: int, tokens: int, bins: int) -> dict[str, Any]:
    """Time every candidate on one product of the shape class; the cache entry."""
    work_rows = int(min(rows, max(min(16, rows), CALIBRATION_WORK // (tokens * bins))))
    screen_rows = max(1, work_rows // 8)
    screen = {name: measure(name, screen_rows, tokens, bins, 1) for name in candidates}
    best = min(screen.values())
    kept = [name for name in candidates if screen[name] <= SCREEN_RATIO * best]
    seconds = {name: measure(name, work_rows, tokens, bins, REPEATS) for name in kept}
    winner = min(kept, key=lambda name: (seconds[name], candidates.index(name)))
    return {
        "fastest": winner,
        "candidates": list(candidates),
        "product": [work_rows, tokens, bins],
        "seconds": seconds,
        "screen_seconds": screen,
        "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def measure(name: str, rows: int, tokens: int, bins: int, repeats: int) -> float:
    """The fastest of ``repeats`` timed count products (rows x tokens x bins) on ``name``."""
    from lamina.backends.counts import OneHotCounts

    rng = np.random.default_rng(0)
    index = rng.integers(0, bins, size=(tokens, 1)).astype(np.uint16)
    counts = OneHotCounts(index, np.array([bins]), name)
    block = rng.random((rows, tokens)) < 0.5
    counts(block[:1])  # first-call costs (kernels, threads, a CUDA context) are not timed
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        counts(block)
        best = min(best, time.perf_counter() - start)
    return best


def shape_class(rows: int, tokens: int, bins: int) -> tuple[int, int, int]:
    """The calibration product's rows, tokens and bins: powers of two near the real ones."""
    return (
        _power_of_two(min(rows, MAX_ROWS)),
        _power_of_two(min(tokens, MAX_TOKENS)),
        _power_of_two(min(bins, MAX_BINS)),
    )


def shape_key(shape: tuple[int, int, int]) -> str:
    return "rows {} x tokens {} x bins {}".format(*shape)


def machine_key(candidates: list[str]) -> str:
    """What the timings depend on: CPU model, usable cores, library versions, torch's CPU
    kernels (``ATEN_CPU_CAPABILITY`` can lower them), CUDA device."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [f"cpu={cpu_model()}", f"arch={platform.machine()}", f"cores={cores}"]
    parts.append(f"numpy={np.__version__}")
    if any(name != "numpy-float32" for name in candidates):
        torch = sys.modules.get("torch")
        parts.append(f"torch={getattr(torch, '__version__', None)}")
        with contextlib.suppress(AttributeError, RuntimeError):
            parts.append(f"torch_cpu={torch.backends.cpu.get_cpu_capability()}")
        if "cuda" in candidates and torch is not None:
            parts.append(f"cuda={torch.cuda.get_device_name(torch.cuda.current_device())}")
    return "; ".join(parts)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what :mod:`platform` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _power_of_two(x: int) -> int:
    return 2 ** round(math.log2(max(1, x)))


def _read(path: Path) -> dict[str, Any]:
    """The cache's content, or {} if it is missing, unreadable, corrupt or of another format."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    ok = (
        isinstance(data, dict)
        and data.get("format") == CACHE_FORMAT
        and data.get("version") == CACHE_VERSION
        and isinstance(data.get("machines"), dict)
        and all(isinstance(v, dict) for v in data["machines"].values())
    )
    return data if ok else {}


def _valid(entry: Any, candidates: list[str]) -> bool:
    return (
        isinstance(entry, dict)
        and entry.get("candidates") == list(candidates)
        and entry.get("fastest") in candidates
    )
