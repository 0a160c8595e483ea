"""Rendering the figures leaves matplotlib's backend alone (a notebook keeps its inline plots)."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import matplotlib
from lamina.report.figures.render import warm_up
before = matplotlib.get_backend()
warm_up()
print(before, matplotlib.get_backend(), matplotlib.rcParams["backend"])
"""


def test_warm_up_keeps_the_users_backend():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MPLBACKEND": "pdf"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["pdf", "pdf", "pdf"]
