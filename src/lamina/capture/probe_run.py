"""A cross-fitted probe over an extraction: its folds, its two passes, its files and metadata.

Pass 1 is the extraction itself: each shard also returns its class sums per fold
(:meth:`lamina.capture.compute.ShardComputer.compute_probed`), saved beside it as
``probe/<shard key>.<kind>-<tag>.npz`` (``tag``: the shard's folds) and added, in
plan order, into the run's totals. From the totals come every fold's held-out
direction (:func:`lamina.capture.probe_math.compute_directions`), saved as
``probe/directions-<sha256>.npz``. Pass 2 runs the plan's forward passes again,
without scoring, and projects every row on its fold's direction
(:meth:`~lamina.capture.compute.ShardComputer.project`); each shard's ``fold`` and
``probe.{site}.{layer}`` columns are saved as ``probe/<shard key>.<sha256[:16]>.parquet``.
A plan whose probed vectors take at most :data:`KEEP_VECTORS_BYTES` (one ``middle``
window) is not run again: pass 1 keeps its batches' vectors and pass 2 applies the
same arithmetic to them. Memory does not grow with the text: the sums are per fold,
the vectors of one batch at a time (or at most that bound). A rerun reuses every sums file and projection shard it finds, so
a killed run resumes in either pass; a Ray run's workers write the same files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lamina._io import atomic_path
from lamina.capture.probe_folds import Folds, assign_folds
from lamina.capture.probe_math import (
    Directions,
    ShardSums,
    Totals,
    compute_directions,
    sums_file_ok,
)
from lamina.capture.probe_spec import ProbeSpec, check_probe_memory, probe_bytes, resolve_probe
from lamina.capture.shards import read_stamped
from lamina.errors import InputError

if TYPE_CHECKING:
    from lamina.capture.architectures import ResolvedSites
    from lamina.capture.plan import ExtractionPlan, Shard

PROBE_DIR = "probe"
#: Pass 1 keeps the probed vectors of a plan whose vectors take at most this many bytes
#: (a ``middle`` window of the embedded model: 68 MiB per site), and pass 2 projects them
#: without running the forward passes again.
KEEP_VECTORS_BYTES = 256 * 2**20
PROBE_KEY = b"lamina_probe"
CENTRING = "midpoint of the other folds' class means"
SIGN = "correct minus incorrect"
COVARIANCE = (
    "pooled within-class scatter of the other folds / (n - 2), shrunk toward trace / d times "
    "the identity by the Ledoit-Wolf intensity of the class-centred rows "
    "(sklearn.covariance.ledoit_wolf_shrinkage, assume_centered=True)"
)


@dataclasses.dataclass
class ProbeJob:
    """A probe over one plan: what it fits, the folds of every shard, the running totals."""

    spec: ProbeSpec
    folds: Folds
    shard_folds: dict[str, np.ndarray]
    totals: Totals
    directions: Directions | None = None
    computed: int = 0
    reused: int = 0
    seconds: float = 0.0
    keep_vectors: bool = False
    kept: dict[str, list] = dataclasses.field(default_factory=dict, repr=False)
    from_memory: int = 0
    forwarded: set[str] = dataclasses.field(default_factory=set, repr=False)
    saved_in: Path | None = None

    @property
    def names(self) -> list[str]:
        return [f"{site}.{layer}" for site, layer in self.spec.vector_columns()]

    @property
    def kind(self) -> str:
        return "moments2" if self.spec.second_moments else "moments1"

    def sums_path(self, shards_dir: Path, shard: Shard, kind: str | None = None) -> Path:
        """Where a shard's sums are saved: under its key, the moments and its rows' folds."""
        kind = kind or self.kind
        folds = np.ascontiguousarray(self.shard_folds[shard.key], dtype=np.int16)
        tag = hashlib.sha256(shard.key.encode() + kind.encode() + folds.tobytes()).hexdigest()
        return Path(shards_dir) / PROBE_DIR / f"{shard.key}.{kind}-{tag[:16]}.npz"

    def saved_sums(self, shards_dir: Path | None, shard: Shard) -> Path | None:
        """A whole sums file of ``shard`` (``lda``'s serve ``diffmeans`` too), or None."""
        if shards_dir is None:
            return None
        kinds = [self.kind] if self.spec.second_moments else ["moments1", "moments2"]
        for kind in kinds:
            path = self.sums_path(shards_dir, shard, kind)
            if path.is_file() and sums_file_ok(path, self.names, self.spec.second_moments):
                return path
        return None

    def keep_reusable(self, results: dict[str, Any], shards_dir: Path | None, plan: Any) -> None:
        """Drop from ``results`` the reused shards whose sums are not saved (computed again)."""
        for shard in plan.shards:
            if shard.key in results and self.saved_sums(shards_dir, shard) is None:
                del results[shard.key]

    def add_saved(self, shards_dir: Path, shard: Shard) -> None:
        self.totals.add_file(self.saved_sums(shards_dir, shard))

    def save_sums(self, shards_dir: Path, shard: Shard, sums: ShardSums) -> None:
        (Path(shards_dir) / PROBE_DIR).mkdir(parents=True, exist_ok=True)
        sums.save(self.sums_path(shards_dir, shard))

    def finish_pass1(self, shards_dir: Path | None) -> Directions:
        """Every fold's direction from the totals (saved in ``shards_dir`` for the workers)."""
        self.directions = compute_directions(self.totals, self.spec.method)
        path = self.directions_path(shards_dir)
        if path is not None and not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            self.directions.save(path)
        return self.directions

    def directions_path(self, shards_dir: Path | None) -> Path | None:
        if shards_dir is None or self.directions is None:
            return None
        return Path(shards_dir) / PROBE_DIR / f"directions-{self.directions.sha256}.npz"

    def projection_path(self, shards_dir: Path, key: str) -> Path:
        return Path(shards_dir) / PROBE_DIR / f"{key}.{self.directions.sha256[:16]}.parquet"

    def columns_of(self, key: str, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A shard's ``fold`` and probe columns as saved."""
        out = {"fold": np.asarray(self.shard_folds[key], dtype=np.int16)}
        for name in self.spec.column_names():
            out[name] = np.asarray(scores[name], dtype=np.float32)
        return out

    def merge(self, target: dict[str, np.ndarray], columns: dict[str, np.ndarray]) -> None:
        """Add a shard's probe columns to its pass-1 columns; rows marked non-finite score NaN."""
        bad = np.asarray(target.get("nonfinite", np.zeros(0)), dtype=bool)
        for name, values in columns.items():
            if name != "fold" and bad.any():
                values = np.where(bad, np.float32(np.nan), values)
            target[name] = values

    def write_projection(self, shards_dir: Path, key: str, columns: dict[str, np.ndarray]) -> None:
        write_probe_shard(self.projection_path(shards_dir, key), columns, self.stamp(key))

    def read_projection(self, shards_dir: Path | None, shard: Shard) -> dict | None:
        if shards_dir is None:
            return None
        return read_probe_shard(
            self.projection_path(shards_dir, shard.key),
            self.stamp(shard.key),
            shard.n_scored,
            ["fold", *self.spec.column_names()],
        )

    def counts(self) -> dict[str, Any]:
        """The second pass's shards computed and reused, and its seconds (the directions too)."""
        return {
            "shards_computed": self.computed,
            "shards_reused": self.reused,
            "shards_from_kept_vectors": self.from_memory,
            "seconds": round(self.seconds, 3),
        }

    def stamp(self, key: str) -> str:
        return f"{key}|{self.directions.sha256}"

    def metadata(self) -> dict[str, Any]:
        """The table's ``probe`` metadata: what a reader needs to recompute the scores."""
        d = self.directions
        meta: dict[str, Any] = {
            "method": self.spec.method,
            "folds": self.spec.folds,
            "fold_unit": self.folds.unit,
            "sites": list(self.spec.sites),
            "centring": CENTRING,
            "n_per_fold": [[int(a), int(b)] for a, b in d.n_per_fold],
            "sign": SIGN,
        }
        if self.spec.method == "lda":
            meta["covariance"] = COVARIANCE
            meta["shrinkage"] = {
                site: [
                    [_finite_or_none(x) for x in d.shrinkage[f"{site}.{layer}"]]
                    for layer in range(self.spec.n_layers)
                ]
                for site in self.spec.sites
            }
        meta["excluded"] = "rows marked nonfinite: left out of the sums, scored NaN"
        meta["directions_sha256"] = d.sha256
        return meta


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def prepare_probe(
    probe: str,
    probe_folds: int,
    plan: ExtractionPlan,
    resolved: ResolvedSites,
    hidden: int,
    *,
    available: int | None = None,
) -> ProbeJob | None:
    """The probe an extraction fits (None: none), checked before any forward pass.

    ``hidden``: the model's vector size; ``available``: the host memory the sums may take
    (default: what the machine has available now).
    """
    spec = resolve_probe(probe, probe_folds, plan.mode, resolved.sites, resolved.n_layers)
    if spec is None:
        return None
    folds = assign_folds(plan, spec.folds)
    if available is None:
        from lamina.capture.batching import available_memory

        available = available_memory()
    check_probe_memory(spec, hidden, folds.span(plan), available)
    names = [f"{site}.{layer}" for site, layer in spec.vector_columns()]
    job = ProbeJob(
        spec, folds, folds.of_shards(plan), Totals(spec.folds, names, spec.second_moments)
    )
    job.keep_vectors = plan.n_scored * len(names) * hidden * 4 <= KEEP_VECTORS_BYTES
    return job


def check_device_memory(job: ProbeJob, hidden: int, plan: ExtractionPlan, device: Any) -> None:
    """Refuse, in one sentence, ``lda`` sums of one shard that would not fit on the GPU."""
    if device.type != "cuda" or not job.spec.second_moments:
        return
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    span = job.folds.span(plan)
    need = probe_bytes(dataclasses.replace(job.spec, folds=0), hidden, span)
    if need > free:
        raise InputError(
            f"--probe lda would hold {need / 2**30:.1f} GiB of one shard's sums on {device} but "
            f"{free / 2**30:.1f} GiB is free there; use --probe diffmeans or fewer --sites."
        )


def write_probe_shard(path: Path, columns: dict[str, np.ndarray], stamp: str) -> None:
    fields = [pa.field("fold", pa.int16())] + [
        pa.field(name, pa.float32()) for name in columns if name != "fold"
    ]
    arrays = [pa.array(np.asarray(columns[f.name]), type=f.type) for f in fields]
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata={PROBE_KEY: stamp}))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_probe_shard(
    path: Path, stamp: str, n_rows: int, names: list[str]
) -> dict[str, np.ndarray] | None:
    """A projection shard's columns if its file is whole and is what ``stamp`` names."""
    table = read_stamped(path, PROBE_KEY, stamp, n_rows, names)
    if table is None:
        return None
    return {n: table.column(n).to_numpy(zero_copy_only=False) for n in names}


def project_local(
    plan: ExtractionPlan,
    computer: Any,
    job: ProbeJob,
    results: dict[str, dict[str, np.ndarray]],
    shards_dir: Path | None,
    on_reused: Callable[[int], None] | None = None,
) -> None:
    """Pass 2 in this process: the directions from pass 1's totals, then every shard's probe
    columns (saved, projected from the vectors pass 1 kept, or from a forward pass again)
    into ``results``."""
    import time

    started = time.perf_counter()
    job.saved_in = shards_dir
    job.finish_pass1(shards_dir)
    for shard in plan.shards:
        columns = job.read_projection(shards_dir, shard)
        if columns is not None:
            job.reused += 1
        else:
            columns = job.columns_of(shard.key, _project_shard(plan, computer, job, shard))
            job.computed += 1
            if shards_dir is not None:
                job.write_projection(shards_dir, shard.key, columns)
        if on_reused is not None and shard.key not in job.forwarded:
            on_reused(shard.n_scored)
        job.merge(results[shard.key], columns)
    job.seconds = time.perf_counter() - started


def _project_shard(
    plan: ExtractionPlan, computer: Any, job: ProbeJob, shard: Shard
) -> dict[str, np.ndarray]:
    """One shard's scores: from the vectors pass 1 kept, else from its forward passes again."""
    from lamina.capture.compute import Interrupted
    from lamina.errors import ExtractionInterrupted

    folds = job.shard_folds[shard.key]
    if shard.key in job.kept:
        job.from_memory += 1
        return computer.project_kept(job.kept.pop(shard.key), folds, job.directions)
    doc = plan.documents[shard.doc]
    job.forwarded.add(shard.key)  # its batches advance the progress bar
    try:
        return computer.project(doc.tokens, doc.local(shard.windows), folds, job.directions)
    except Interrupted:
        where = "not saved (no shards directory)"
        if job.saved_in is not None:
            where = f"saved in {job.saved_in}; run the same command again to resume"
        raise ExtractionInterrupted(
            f"interrupted in the probe's second pass, after {job.computed + job.reused} of "
            f"{len(plan.shards)} shards; those are {where}."
        ) from None
