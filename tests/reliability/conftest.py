"""Fixtures of the reliability tests (the helpers are in ``faults.py``)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reliability.faults import GOLDEN, mount_tmpfs_at


@pytest.fixture
def synthetic_table(tmp_path) -> Path:
    """A copy of a token table lamina wrote: 600 tokens, 8 layers of attn_out."""
    path = tmp_path / "table" / "tokens.parquet"
    path.parent.mkdir()
    shutil.copy(GOLDEN / "synthetic" / "tokens.parquet", path)
    return path


@pytest.fixture
def lamina_cache(monkeypatch, tmp_path) -> Path:
    """An empty lamina cache directory for this test."""
    folder = tmp_path / "lamina-cache"
    monkeypatch.setenv("LAMINA_CACHE", str(folder))
    return folder


@pytest.fixture
def mount_tmpfs(tmp_path) -> Iterator[Callable[[str], Path]]:
    """``mount_tmpfs("size=8m")`` -> a fresh mounted tmpfs; skips the test if it cannot."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        target = tmp_path / f"tmpfs-{len(mounted)}"
        target.mkdir()
        why = mount_tmpfs_at(target, options)
        if why is not None:
            pytest.skip(
                f"a real tmpfs is needed for this fault ({why}); the patched test covers it"
            )
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)
