"""How long each stage of a run took: load, extraction, analysis, figures, report."""

from __future__ import annotations

import time

#: The stages a run reports, in order.
STAGES = ("load", "extraction", "analysis", "figures", "report")


class Stopwatch:
    """Wall-clock seconds per stage, accumulated between marks."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._mark = time.perf_counter()

    def mark(self) -> None:
        """Start timing the next stage from now."""
        self._mark = time.perf_counter()

    def lap(self, stage: str) -> None:
        """Add the time since the last mark to ``stage``, and mark."""
        now = time.perf_counter()
        self.add(stage, now - self._mark)
        self._mark = now

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def to_dict(self) -> dict[str, float]:
        """Seconds per stage (every stage, 0 when it did not run), and their total."""
        out = {stage: round(self.seconds.get(stage, 0.0), 3) for stage in STAGES}
        out["total"] = round(sum(self.seconds.values()), 3)
        return out
