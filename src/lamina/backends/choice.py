"""Which backend runs the counts, and why: an argument, the environment, or a measurement.

Order of precedence: ``backend=`` other than ``"auto"``; else the environment
variable ``LAMINA_PERM_BACKEND``; else ``auto``. ``auto`` keeps numpy when torch
is not imported and the counts are too small to repay importing it (importing
torch costs 1-2 s); otherwise it takes the fastest backend available here by
the calibration of :mod:`lamina.backends.autotune` (a CUDA device is one of
the candidates whenever torch sees one). Every choice comes with a short,
stable reason (no timings), recorded in the result.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lamina.backends import autotune
from lamina.backends.products import NAMES, available, torch_imported
from lamina.errors import InputError

BACKENDS = ("auto", *NAMES)
#: Older names: ``numpy`` is the float32 BLAS product, ``torch`` torch's int8 product.
ALIASES = {"numpy": "numpy-float32", "torch": "torch-int8"}
ENVIRONMENT = "LAMINA_PERM_BACKEND"
#: Multiply-adds of counts from which ``auto`` imports torch to consider its backends.
AUTO_TORCH_MIN_WORK = 2e11

_NEEDS = {
    "torch-float32": "torch",
    "torch-int8": "torch's int8 matrix product (torch._int_mm) on this CPU",
    "cuda": "torch with a CUDA device",
}


@dataclass(frozen=True)
class Choice:
    """A backend name of :data:`BACKENDS` (not ``auto``) and why it was chosen."""

    name: str
    reason: str


def check_backend(backend: str, source: str = "backend") -> str:
    """The canonical name of ``backend`` (``auto`` or a backend), or an InputError."""
    name = ALIASES.get(backend, backend) if isinstance(backend, str) else backend
    if name not in BACKENDS:
        where = f"{source}={backend!r}" if source == "backend" else f"{source}={backend}"
        raise InputError(f"{where} is unknown; use one of {', '.join(BACKENDS)}.")
    return name


def choose_backend(
    backend: str = "auto", *, rows: int, tokens: int, bins: int, work: float | None = None
) -> Choice:
    """The backend for counts of blocks of ``rows`` labellings x ``tokens`` x ``bins``.

    ``work``: multiply-adds of all the counts of the test (default: one block's).
    """
    requested = check_backend(backend)
    if requested != "auto":
        _require(requested, f"backend={backend!r}")
        return Choice(requested, f"requested with backend={backend!r}")
    env = os.environ.get(ENVIRONMENT, "").strip()
    if env and env != "auto":
        name = check_backend(env, ENVIRONMENT)
        _require(name, f"{ENVIRONMENT}={env}")
        return Choice(name, f"set by {ENVIRONMENT}={env}")
    work = float(rows) * tokens * bins if work is None else work
    if not torch_imported() and work < AUTO_TORCH_MIN_WORK:
        return Choice(
            "numpy-float32",
            "torch is not imported and these counts are too small to repay importing it",
        )
    candidates = [name for name in NAMES if available(name)]
    if len(candidates) == 1:
        return Choice(candidates[0], f"the only backend available here ({candidates[0]})")
    name, path, cached = autotune.fastest(candidates, rows, tokens, bins)
    where = f"cached in {path}" if cached else f"not cached: {path} cannot be written"
    return Choice(
        name,
        f"calibrated on this machine: {name} fastest of {', '.join(candidates)} ({where})",
    )


def _require(name: str, source: str) -> None:
    if not available(name):
        raise InputError(
            f"{source} needs {_NEEDS[name]}, which is not available here; "
            "use 'auto' or 'numpy-float32'."
        )
