"""Whether ``--dtype auto`` runs a model in bfloat16 on this CPU.

bfloat16 on a CPU is worth it only where the CPU multiplies it natively (AVX512_BF16 or AMX
on x86, BF16 on Arm): elsewhere torch emulates it, slower than float32. And it is safe only
for a model whose study it does not change. So ``auto`` on a CPU is bfloat16 when all three
hold, float32 otherwise, and the model's report says which and why:

1. the CPU's flags name a native bfloat16 instruction set;
2. a measured product shaped like a small model's linear layer (1,024 x 576 by 576 x 1,536,
   torch's own kernels, this process's threads) runs at least :data:`MIN_SPEEDUP` times
   faster in bfloat16 than in float32: measured once per machine and cached in
   ``cpu_precision.json`` in lamina's cache (atomically; a corrupt file is measured again);
3. ``lamina precision`` has compared the study in both precisions for these very weights
   (their fingerprint) and the agreement held; its ``precision.json`` is kept in the cache
   under ``precision/``.

``ATEN_CPU_CAPABILITY`` and ``ONEDNN_MAX_CPU_ISA`` (which cap the kernels torch uses) enter the
machine's key, so an emulated AVX2-only run is measured on its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from lamina._io import atomic_open, cache_dir
from lamina.errors import LaminaError

CACHE_NAME = "cpu_precision.json"
AGREEMENT_DIR = "precision"
#: bfloat16 must multiply at least this many times faster than float32 to be chosen.
MIN_SPEEDUP = 1.5
#: The measured product: rows x inner x columns (a 135M model's MLP up-projection per window).
PRODUCT_SHAPE = (1024, 576, 1536)
REPEATS = 5
NATIVE_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_flags(flags: set[str] | None = None) -> list[str]:
    """The native bfloat16 flags this CPU has."""
    flags = cpu_flags() if flags is None else flags
    return [f for f in NATIVE_FLAGS if f in flags]


def _machine_key() -> str:
    import torch

    parts = [
        cpu_name(),
        platform.machine(),
        f"threads={torch.get_num_threads()}",
        f"torch={torch.__version__}",
        f"capability={torch.backends.cpu.get_cpu_capability()}",
        f"ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '')}",
        f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '')}",
        ",".join(native_flags()),
    ]
    return "|".join(parts)


def measure_speedup() -> dict[str, float]:
    """Seconds of the product in float32 and bfloat16 (the best of :data:`REPEATS`)."""
    import torch

    rows, inner, cols = PRODUCT_SHAPE
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(rows, inner, generator=generator)
    b = torch.randn(inner, cols, generator=generator)
    best = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        x, y = a.to(dtype), b.to(dtype)
        torch.mm(x, y)  # warm-up: kernels chosen, memory touched
        times = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            torch.mm(x, y)
            times.append(time.perf_counter() - started)
        best[name] = min(times)
    best["speedup"] = best["float32"] / best["bfloat16"]
    return best


def machine_speedup() -> dict[str, Any]:
    """This machine's measured bfloat16 speed-up, from the cache or measured now."""
    path = cache_dir() / CACHE_NAME
    key = _machine_key()
    cached = _read_json(path).get(key)
    if isinstance(cached, dict) and isinstance(cached.get("speedup"), float):
        return cached
    measured = measure_speedup()
    data = _read_json(path)
    data[key] = measured
    with contextlib.suppress(OSError, LaminaError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
    return measured


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _agreement_path(fingerprint: str, dtype: str) -> Path:
    digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:32]
    return cache_dir() / AGREEMENT_DIR / f"{digest}-{dtype}.json"


def record_agreement(fingerprint: str, dtype: str, agreement: dict[str, Any]) -> None:
    """Keep ``lamina precision``'s agreement for these weights (best effort: a cache that
    cannot be written only means ``auto`` stays float32)."""
    path = _agreement_path(fingerprint, dtype)
    with contextlib.suppress(OSError, LaminaError):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "w", encoding="utf-8") as fh:
            json.dump({"fingerprint": fingerprint, **agreement}, fh, indent=1)


def recorded_agreement(fingerprint: str, dtype: str = "bfloat16") -> dict[str, Any] | None:
    """The agreement ``lamina precision`` recorded for these weights, if any."""
    data = _read_json(_agreement_path(fingerprint, dtype))
    return data if data.get("fingerprint") == fingerprint else None


def auto_cpu_dtype(fingerprint: str | None) -> tuple[str, str]:
    """``(dtype, reason)`` of ``--dtype auto`` on this CPU for a model's weights."""
    flags = native_flags()
    if not flags:
        return "float32", "auto: float32 (this CPU has no native bfloat16 instructions)"
    agreement = recorded_agreement(fingerprint) if fingerprint else None
    if agreement is None:
        return "float32", (
            f"auto: float32 (the CPU has {', '.join(flags)}, but `lamina precision` has not "
            "checked this model in bfloat16)"
        )
    if not agreement.get("holds"):
        return "float32", (
            "auto: float32 (`lamina precision` found that bfloat16 changes this model's study)"
        )
    speed = machine_speedup()
    if speed["speedup"] < MIN_SPEEDUP:
        return "float32", (
            f"auto: float32 (bfloat16 multiplies only {speed['speedup']:.2f}x faster here, "
            f"under {MIN_SPEEDUP}x)"
        )
    return "bfloat16", (
        f"auto: bfloat16 (the CPU has {', '.join(flags)}; a measured product is "
        f"{speed['speedup']:.1f}x faster; `lamina precision` found the same study for these "
        f"weights{_checked_on(agreement)}: {agreement.get('label_agreement', 0):.2%} of the "
        "labels agree)"
    )


def _checked_on(agreement: dict[str, Any]) -> str:
    """`` on TEXT (N tokens, --windows MODE)``: what the recorded check ran on, if known."""
    checked = agreement.get("checked_on")
    if not isinstance(checked, dict) or not checked.get("text"):
        return ""
    details = []
    if isinstance(checked.get("n_scored"), int):
        details.append(f"{checked['n_scored']:,} tokens")
    if checked.get("windows"):
        details.append(f"--windows {checked['windows']}")
    return f" on {checked['text']}" + (f" ({', '.join(details)})" if details else "")
