"""The shard files of a shards directory (not its plan.parquet), sorted by name."""

from __future__ import annotations

from pathlib import Path

from lamina.capture.assemble import PLAN_FILE


def shard_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).glob("*.parquet") if p.name != PLAN_FILE)
