"""The reference notebook's code, transcribed once in benchmarks/notebook_loop.py.

Tests compare lamina's seed compatibility mode with that transcription; this
module loads it from the benchmarks folder, which is not a package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "notebook_loop.py"
_spec = importlib.util.spec_from_file_location("notebook_loop", _PATH)
notebook_loop = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(notebook_loop)

symmetric_KL = notebook_loop.symmetric_KL
