"""Running a plan's shards in this process: reuse what is saved, compute and save the rest.

With a shards directory, every shard whose file is whole and carries its key is
read back instead of computed, every computed shard is saved as soon as it is
done, and ``manifest.json`` lists the shards done so far. A stop requested
between batches (SIGINT) raises :class:`~lamina.errors.ExtractionInterrupted`
after saving every finished shard, so the same command resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.capture.compute import Interrupted, ShardComputer
from lamina.capture.plan import ExtractionPlan, Shard
from lamina.capture.shards import (
    MANIFEST_FORMAT,
    SHARD_SCHEMA,
    read_shard,
    remove_stale_temporaries,
    save_manifest,
    write_shard,
)
from lamina.errors import ExtractionInterrupted

if TYPE_CHECKING:
    from lamina.capture.probe_run import ProbeJob


@dataclasses.dataclass
class RunCounts:
    """What a run computed and what it reused (shards, windows, scored tokens)."""

    shards_computed: int = 0
    shards_reused: int = 0
    windows_computed: int = 0
    tokens_computed: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def shard_columns_names(computer_names: list[str]) -> list[str]:
    return [*SHARD_SCHEMA.names, *computer_names]


@dataclasses.dataclass
class Saving:
    """What a run saves beside its shards: the directory, the model report, the table's
    metadata and the shards' column names (so the directory alone can be assembled)."""

    shards_dir: Path
    metadata: dict[str, Any]
    columns: list[str]
    report: dict[str, Any] | None = None


def manifest_of(plan: ExtractionPlan, done: list[str], saving: Saving) -> dict[str, Any]:
    """The manifest of a shards directory for ``plan`` with the shards ``done``.

    It carries the model report of the run that computed them and the table's
    metadata, so a later run that only reuses shards can still describe the model
    and ``lamina analyze`` can assemble the directory.
    """
    return {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "identity": plan.identity,
        "model": saving.report,
        "metadata": saving.metadata,
        "columns": saving.columns,
        "windows": plan.windows_metadata(),
        "documents": [
            {"spec": d.provenance.get("spec"), "sha256": d.provenance.get("sha256")}
            for d in plan.documents
        ],
        "shards": [
            {
                "key": s.key,
                "doc": s.doc,
                "windows": [s.windows[0].index, s.windows[-1].index],
                "rows": s.n_scored,
            }
            for s in plan.shards
        ],
        "done": done,
    }


def reuse_saved(
    plan: ExtractionPlan, shards_dir: Path | None, names: list[str]
) -> dict[str, dict[str, np.ndarray]]:
    """The columns of every shard already saved whole in ``shards_dir``, by key."""
    found: dict[str, dict[str, np.ndarray]] = {}
    if shards_dir is None or not Path(shards_dir).is_dir():
        return found
    for shard in plan.shards:
        table = read_shard(Path(shards_dir), shard.key, shard.n_scored, names)
        if table is not None:
            found[shard.key] = {n: table.column(n).to_numpy(zero_copy_only=False) for n in names}
    return found


def start_saving(
    plan: ExtractionPlan, saving: Saving, skeleton_columns: dict[str, np.ndarray], started: float
) -> None:
    """Prepare a shards directory: remove a killed run's temporaries, save the plan's skeleton."""
    from lamina.capture.assemble import save_skeleton

    saving.shards_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(saving.shards_dir, older_than=started)
    if (saving.shards_dir / "probe").is_dir():
        remove_stale_temporaries(saving.shards_dir / "probe", older_than=started)
    save_skeleton(saving.shards_dir, plan, skeleton_columns)


def run_local(
    plan: ExtractionPlan,
    computer: ShardComputer,
    *,
    saving: Saving | None = None,
    skeleton_columns: dict[str, np.ndarray] | None = None,
    on_reused: Callable[[int], None] | None = None,
    probe: ProbeJob | None = None,
) -> tuple[dict[str, dict[str, np.ndarray]], RunCounts]:
    """Every shard's columns, reused or computed (and saved with ``saving``).

    With a ``probe`` (pass 1): a shard is reused only with its saved sums, and every
    shard's sums are added to the probe's totals in plan order.
    """
    started = time.time()
    names = shard_columns_names(computer.names)
    shards_dir = saving.shards_dir if saving is not None else None
    results = reuse_saved(plan, shards_dir, names)
    if probe is not None:
        probe.keep_reusable(results, shards_dir, plan)
    counts = RunCounts(shards_reused=len(results))
    if on_reused is not None:
        on_reused(sum(s.n_scored for s in plan.shards if s.key in results))
    if saving is not None:
        start_saving(plan, saving, skeleton_columns or {}, started)
        save_manifest(saving.shards_dir, manifest_of(plan, sorted(results), saving))
    for shard in plan.shards:
        if shard.key in results:
            if probe is not None:
                probe.add_saved(shards_dir, shard)
            continue
        try:
            doc = plan.documents[shard.doc]
            if probe is None:
                columns = computer.compute(doc.tokens, doc.local(shard.windows))
            else:
                folds = probe.shard_folds[shard.key]
                columns, sums = computer.compute_probed(
                    doc.tokens, doc.local(shard.windows), folds, probe.keep_vectors
                )
        except Interrupted:
            raise _interrupted(plan, results, shards_dir) from None
        results[shard.key] = columns
        _count(counts, shard)
        if saving is not None:
            if probe is not None:
                probe.save_sums(saving.shards_dir, shard, sums)
            write_shard(saving.shards_dir, shard.key, columns)
            save_manifest(saving.shards_dir, manifest_of(plan, sorted(results), saving))
        if probe is not None:
            probe.totals.add(sums)
            if sums.kept is not None:
                probe.kept[shard.key] = sums.kept
    return results, counts


def _count(counts: RunCounts, shard: Shard) -> None:
    counts.shards_computed += 1
    counts.windows_computed += len(shard.windows)
    counts.tokens_computed += shard.n_scored


def _interrupted(
    plan: ExtractionPlan, results: Mapping[str, Any], shards_dir: Path | None
) -> ExtractionInterrupted:
    done = len(results)
    where = (
        f"saved in {shards_dir}; run the same command again to resume"
        if shards_dir is not None
        else "not saved (no shards directory)"
    )
    return ExtractionInterrupted(
        f"interrupted after {done} of {len(plan.shards)} shards of the extraction; those are "
        f"{where}."
    )
