"""The Ray engine: the shards of an extraction computed by a pool of actors, one model each.

The driver resolves the model's files without loading its weights (the
tokenizer, the fingerprint, and the module layout from a weightless copy on
torch's meta device), tokenizes the corpus, plans the shards exactly as the
local engine does (:mod:`lamina.capture.plan`) and reads back every shard already
saved. The missing shards become a Ray Dataset; ``map_batches`` runs them through
an actor pool (``--workers`` actors; one GPU each where the cluster has GPUs,
else an equal share of its CPUs), each actor loading the model once and writing
every shard it computes into the shards directory under the shard's key. A Ray
run and a local run therefore resume and share each other's work. With a probe
(:mod:`lamina.capture.probe_run`) each worker also saves its shards' class sums;
the driver adds every shard's sums in plan order, saves the directions, and a
second actor pool projects the shards on them. The shards
directory must be on a file system every node sees (a single machine, or a
shared mount on a cluster). Ray is imported only here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from lamina.capture.assemble import base_metadata, skeleton
from lamina.capture.plan import ExtractionPlan, Shard
from lamina.capture.probe_run import ProbeJob, prepare_probe
from lamina.capture.probe_spec import DEFAULT_FOLDS, DEFAULT_PROBE
from lamina.capture.runner import (
    Saving,
    manifest_of,
    reuse_saved,
    shard_columns_names,
    start_saving,
)
from lamina.capture.shards import read_shard, save_manifest
from lamina.capture.windows import Window, WindowOptions
from lamina.errors import CaptureError, InputError

#: Seconds to wait for an existing cluster at ``--ray-address``.
CONNECT_TIMEOUT_S = 20
#: Ray's own logging of a run, in the shards directory.
RAY_LOG = "ray.log"


def start_ray(address: str | None, workers: int) -> bool:
    """Join the cluster at ``address``, or start a local one; returns whether lamina started it."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is a dependency of set-up
        raise CaptureError(
            "--engine ray needs Ray: install it with `pip install 'ray[data]>=2.60,<3'`."
        ) from exc
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": "ERROR",
        "log_to_driver": False,
        "configure_logging": True,
    }
    if address:
        try:
            _check_reachable(address)
            ray.init(address=address, **options)
        except (ConnectionError, OSError, RuntimeError, ValueError) as exc:
            raise InputError(
                f"no Ray cluster answers at --ray-address {address} ({_first_line(exc)}); start "
                "one with `ray start --head` (see docs/scale.md) or drop --ray-address."
            ) from exc
        return True
    # "local": a new instance of this machine's own, never a cluster that RAY_ADDRESS or an
    # earlier `ray start` names (joining one is what --ray-address is for).
    ray.init(address="local", **options)
    return True


@contextlib.contextmanager
def ray_output_to(log_file: Path) -> Iterator[TextIO]:
    """Send everything written to the standard error stream (Ray's own logging from its
    C++ core and Python, which lamina's terminal should not show) to ``log_file``.

    Yields a stream on the real standard error for lamina's progress bar. Errors
    still reach the user: Ray raises them as Python exceptions, which name the log.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_file, "ab") as log:
        os.dup2(log.fileno(), 2)
        terminal = os.fdopen(os.dup(saved), "w", buffering=1)
        try:
            yield terminal
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            terminal.close()


def _check_reachable(address: str) -> None:
    """Fail fast, before Ray's own retries, when nothing listens at ``host:port``."""
    import socket

    if address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{address!r} is not HOST:PORT")
    with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:160] if text else type(exc).__name__


class ShardWorker:
    """A Ray actor: the model loaded once, its hooks on, computing and saving shards."""

    def __init__(
        self,
        model: str,
        model_kwargs: dict,
        sites: Any,
        site_template: Any,
        batch_size: int | str,
        window: int,
        bos: bool,
        shards_dir: str,
        allow_nonfinite: bool = False,
        probe: dict[str, Any] | None = None,
    ) -> None:
        from lamina.capture.architectures import resolve_sites
        from lamina.capture.batching import resolve_batch_size
        from lamina.capture.compute import ShardComputer
        from lamina.capture.extraction import bos_token_id
        from lamina.capture.probe_spec import ProbeSpec
        from lamina.sources import load_model

        loaded = load_model(model, progress=False, **model_kwargs)
        resolved = resolve_sites(loaded.model, sites, site_template)
        bos_id = bos_token_id(loaded.tokenizer) if bos else None
        self.probe = ProbeSpec(**{**probe, "sites": tuple(probe["sites"])}) if probe else None
        stash = len(self.probe.sites) if self.probe else 0
        batch = resolve_batch_size(
            batch_size, loaded.model, window, len(resolved.sites), probe_sites=stash
        )
        self.computer = ShardComputer(
            loaded.model,
            resolved,
            batch_size=batch,
            bos_id=bos_id,
            allow_nonfinite=allow_nonfinite,
            probe=self.probe,
        )
        self.report = json.dumps(loaded.report.to_dict())
        self.shards_dir = Path(shards_dir)
        self.directions: dict[str, Any] = {}

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        keys = []
        for k, key in enumerate(batch["key"]):
            item = {name: batch[name][k] for name in batch}
            self._shard(item)
            keys.append(str(key))
        return {"key": np.array(keys), "report": np.array([self.report] * len(keys))}

    def _shard(self, item: Mapping[str, Any]) -> None:
        """Compute one shard (with its sums when probed), or project it (pass 2), and save it."""
        from lamina.capture.probe_math import Directions
        from lamina.capture.probe_run import write_probe_shard
        from lamina.capture.shards import write_shard

        windows = [Window(*w) for w in json.loads(str(item["windows"]))]
        tokens = np.asarray(item["tokens"], dtype=np.int64)
        folds, path = np.asarray(item["folds"]), str(item["path"])
        if str(item["task"]) == "project":
            if path not in self.directions:
                names = [f"{s}.{layer}" for s, layer in self.probe.vector_columns()]
                self.directions = {path: Directions.load(Path(path), self.probe.method, names)}
            scores = self.computer.project(tokens, windows, folds, self.directions[path])
            columns = {"fold": folds.astype(np.int16), **scores}
            write_probe_shard(Path(str(item["output"])), columns, str(item["stamp"]))
            return
        if self.probe is None:
            columns = self.computer.compute(tokens, windows)
        else:
            columns, sums = self.computer.compute_probed(tokens, windows, folds)
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            sums.save(Path(path))
        write_shard(self.shards_dir, str(item["key"]), columns)


def _item(
    plan: ExtractionPlan,
    shard: Shard,
    probe: ProbeJob | None = None,
    shards_dir: Path | None = None,
    task: str = "columns",
) -> dict[str, Any]:
    """A shard as a dataset row: its key, its token span, its windows relative to the span;
    with a probe its rows' folds and where its sums (or, projecting, its scores) go."""
    first = min(w.start for w in shard.windows)
    last = max(w.stop for w in shard.windows)
    tokens = plan.documents[shard.doc].ids(first, last + 1)
    layout = [
        [w.index, w.start - first, w.stop - first, w.score_from - first, w.cached, w.origin - first]
        for w in shard.windows
    ]
    item = {"key": shard.key, "tokens": tokens.astype(np.int64), "windows": json.dumps(layout)}
    item.update(task=task, folds=np.zeros(0, dtype=np.int16), path="", output="", stamp="")
    if probe is not None:
        item["folds"] = probe.shard_folds[shard.key]
        item["path"] = str(probe.sums_path(shards_dir, shard))
        if task == "project":
            item["path"] = str(probe.directions_path(shards_dir))
            item["output"] = str(probe.projection_path(shards_dir, shard.key))
            item["stamp"] = probe.stamp(shard.key)
    return item


def run_ray(
    plan: ExtractionPlan,
    *,
    worker_args: dict[str, Any],
    saving: Saving,
    skeleton_columns: dict[str, np.ndarray],
    workers: int,
    use_gpu: bool,
    on_done: Any = None,
    probe: ProbeJob | None = None,
) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """Every shard's columns, reused or computed by the actors; and how many were computed.

    ``saving.report`` becomes the model report the workers send back. With a ``probe``,
    pass 1's sums are added in plan order and pass 2 runs on a second pool.
    """
    shards_dir, names = saving.shards_dir, saving.columns
    results = reuse_saved(plan, shards_dir, names)
    if probe is not None:
        probe.keep_reusable(results, shards_dir, plan)
    start_saving(plan, saving, skeleton_columns, time.time())
    if on_done is not None:
        on_done(sum(s.n_scored for s in plan.shards if s.key in results))
    pending = [s for s in plan.shards if s.key not in results]
    pool = (worker_args, shards_dir, workers, use_gpu)
    rows = _map(pool, [_item(plan, s, probe, shards_dir) for s in pending]) if pending else []
    by_key = {s.key: s for s in pending}
    for row in rows:
        shard = by_key[str(row["key"])]
        saving.report = json.loads(str(row["report"]))
        table = read_shard(shards_dir, shard.key, shard.n_scored, names)
        if table is None:
            raise CaptureError(
                f"a Ray worker reported shard {shard.key} but its file is not whole."
            )
        results[shard.key] = {n: table.column(n).to_numpy(zero_copy_only=False) for n in names}
        save_manifest(shards_dir, manifest_of(plan, sorted(results), saving))
        if on_done is not None:
            on_done(shard.n_scored)
    if probe is not None:
        _project_ray(plan, probe, results, pool, on_done)
        saving.metadata["probe"] = probe.metadata()
        save_manifest(shards_dir, manifest_of(plan, sorted(results), saving))
    return results, len(pending)


def _map(pool: tuple[dict[str, Any], Path, int, bool], items: list[dict[str, Any]]) -> Any:
    """The rows ``ShardWorker`` actors return for ``items``, as they finish."""
    import ray
    import ray.data

    worker_args, shards_dir, workers, use_gpu = pool
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    dataset = ray.data.from_items(items)
    resources = {"num_gpus": 1} if use_gpu else {"num_cpus": _cpus_per_worker(workers)}
    mapped = dataset.map_batches(
        ShardWorker,
        fn_constructor_kwargs={**worker_args, "shards_dir": str(shards_dir)},
        compute=ray.data.ActorPoolStrategy(size=workers),
        batch_size=1,
        **resources,
    )
    return mapped.iter_rows()


def _project_ray(
    plan: ExtractionPlan,
    probe: ProbeJob,
    results: dict[str, dict[str, np.ndarray]],
    pool: tuple[dict[str, Any], Path, int, bool],
    on_done: Any,
) -> None:
    """The probe's directions from every shard's saved sums (plan order), then pass 2 on a
    second actor pool; every shard's probe columns into ``results``."""
    shards_dir = pool[1]
    started = time.perf_counter()
    for shard in plan.shards:
        probe.add_saved(shards_dir, shard)
    probe.finish_pass1(shards_dir)
    pending = []
    for shard in plan.shards:
        columns = probe.read_projection(shards_dir, shard)
        if columns is None:
            pending.append(shard)
            continue
        probe.merge(results[shard.key], columns)
        probe.reused += 1
        if on_done is not None:
            on_done(shard.n_scored)
    items = [_item(plan, s, probe, shards_dir, "project") for s in pending]
    by_key = {s.key: s for s in pending}
    for row in _map(pool, items) if pending else []:
        shard = by_key[str(row["key"])]
        columns = probe.read_projection(shards_dir, shard)
        if columns is None:
            raise CaptureError(
                f"a Ray worker reported the probe scores of shard {shard.key} but their file "
                "is not whole."
            )
        probe.merge(results[shard.key], columns)
        probe.computed += 1
        if on_done is not None:
            on_done(shard.n_scored)
    probe.seconds = time.perf_counter() - started


def _cpus_per_worker(workers: int) -> float:
    import ray

    total = float(ray.cluster_resources().get("CPU", 1.0))
    return max(total / workers, 0.5) if total >= workers else max(total / workers, 0.1)


def extract_with_ray(
    model: str,
    text: Any,
    *,
    model_kwargs: Mapping[str, Any],
    windows: WindowOptions,
    shards_dir: str | Path,
    sites: Any = ("attn_out",),
    site_template: Any = None,
    workers: int = 1,
    address: str | None = None,
    progress: bool | None = True,
    command_line: str | None = None,
    shard_windows: int | None = None,
    require_layer: int | None = None,
    allow_nonfinite: bool = False,
    probe: str = DEFAULT_PROBE,
    probe_folds: int = DEFAULT_FOLDS,
) -> Any:
    """The token table of ``text``, its shards computed by Ray actors (module docstring).

    ``require_layer``: a layer index the caller will analyse, checked against the
    model before any actor starts. ``allow_nonfinite``, ``probe`` and ``probe_folds`` as
    in :func:`lamina.capture.extract`.
    """

    from lamina.capture.assemble import assemble_table

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"--workers {workers!r} must be a positive number of actors.")
    kwargs = dict(model_kwargs)
    device, dtype = kwargs.pop("device", "auto"), kwargs.pop("dtype", "auto")
    driver = _inspect_model(model, kwargs, sites, site_template, require_layer, bool(progress))
    log_file = Path(shards_dir) / RAY_LOG
    job = _Job(
        model, text, driver, kwargs, device, dtype, windows, Path(shards_dir), allow_nonfinite
    )
    job.probe = (probe, probe_folds)
    with ray_output_to(log_file) as terminal:
        done = _run_cluster(job, workers, address, site_template, shard_windows, progress, terminal)
    plan = done.plan
    counts = {"shards_computed": done.computed, "shards_reused": len(plan.shards) - done.computed}
    if done.probe is not None:
        counts["probe"] = done.probe.counts()
    metadata = {
        **done.saving.metadata,
        "model": done.saving.report or _saved_report(Path(shards_dir)),
        "seconds": round(done.seconds, 3),
        "command_line": command_line,
        "extraction": {"engine": "ray", "workers": workers, **counts},
    }
    computed = [done.results[shard.key] for shard in plan.shards]
    return assemble_table(
        done.skeleton,
        computed,
        metadata,
        allow_nonfinite=allow_nonfinite,
        tokenizer=driver.tokenizer,
    )


@dataclasses.dataclass
class _Driver:
    """The driver's view of the model, without its weights."""

    resolved: Any
    skeleton: Any
    tokenizer: Any
    sites: Any


@dataclasses.dataclass
class _Job:
    """What the driver extracts: the model (its files and kwargs), the text, the windows."""

    model: str
    text: Any
    driver: _Driver
    kwargs: dict[str, Any]
    device: str
    dtype: str
    windows: WindowOptions
    shards_dir: Path
    allow_nonfinite: bool
    probe: tuple[str, int] = (DEFAULT_PROBE, DEFAULT_FOLDS)


@dataclasses.dataclass
class _Done:
    """What a cluster run produced."""

    plan: ExtractionPlan
    skeleton: dict[str, np.ndarray]
    saving: Saving
    results: dict[str, dict[str, np.ndarray]]
    computed: int
    seconds: float
    probe: ProbeJob | None = None


def _run_cluster(
    job: _Job,
    workers: int,
    address: str | None,
    site_template: Any,
    shard_windows: int | None,
    progress: bool | None,
    terminal: TextIO,
) -> _Done:
    """Start or join Ray, plan the shards, run the missing ones through the actor pool."""
    import ray
    from tqdm.auto import tqdm

    from lamina.capture.extraction import sites_metadata

    driver, windows = job.driver, job.windows
    started_ray = start_ray(address, workers)
    try:
        use_gpu = job.device != "cpu" and ray.cluster_resources().get("GPU", 0) >= 1
        plan, text_meta, worker_kwargs = _driver_plan(
            driver, job.text, windows, shard_windows, "cuda" if use_gpu else "cpu", job.dtype
        )
        base = base_metadata(plan, text_meta, sites_metadata(driver.sites))
        names = shard_columns_names(driver.sites.column_names())
        saving = Saving(job.shards_dir, base, names, _saved_report(job.shards_dir, required=False))
        bones = skeleton(plan, driver.tokenizer)
        probe = prepare_probe(*job.probe, plan, driver.sites, _hidden(driver))
        started = time.perf_counter()
        bar = tqdm(
            total=plan.n_scored * (2 if probe is not None else 1),
            unit="tok",
            unit_scale=True,
            desc="extract (ray)",
            file=terminal,
            disable=None if progress is None else not progress,
            leave=False,
        )
        with bar:
            results, computed = run_ray(
                plan,
                worker_args={
                    "model": job.model,
                    "model_kwargs": {**job.kwargs, **worker_kwargs},
                    "sites": list(driver.sites.sites),
                    "site_template": site_template,
                    "batch_size": windows.batch_size,
                    "window": plan.window,
                    "bos": windows.bos,
                    "allow_nonfinite": job.allow_nonfinite,
                    "probe": dataclasses.asdict(probe.spec) if probe is not None else None,
                },
                saving=saving,
                skeleton_columns=bones,
                workers=workers,
                use_gpu=use_gpu,
                on_done=bar.update,
                probe=probe,
            )
    finally:
        if started_ray:
            ray.shutdown()
    return _Done(plan, bones, saving, results, computed, time.perf_counter() - started, probe)


def _hidden(driver: _Driver) -> int:
    from lamina.sources.hfconfig import config_dims

    return config_dims(driver.skeleton.config).hidden_size or 1


def _driver_plan(
    driver: _Driver,
    text: Any,
    windows: WindowOptions,
    shard_windows: int | None,
    worker_device: str,
    dtype: str,
) -> tuple[ExtractionPlan, dict[str, Any], dict[str, str]]:
    """The plan (keys with the workers' dtype), the text metadata, the workers' device and dtype."""
    import torch

    from lamina.capture.extraction import build_plan
    from lamina.capture.plan import DEFAULT_SHARD_WINDOWS
    from lamina.sources.hfconfig import config_dims
    from lamina.sources.models import model_fingerprint, resolve_dtype

    dtype_name = str(resolve_dtype(dtype, torch.device(worker_device))).removeprefix("torch.")
    plan, text_meta, _ = build_plan(
        text,
        driver.tokenizer,
        report={"fingerprint": model_fingerprint(driver.resolved), "dtype": dtype_name},
        resolved=driver.sites,
        context=config_dims(driver.skeleton.config).context_length or None,
        windows=windows,
        shard_windows=shard_windows or DEFAULT_SHARD_WINDOWS,
    )
    return plan, text_meta, {"device": worker_device, "dtype": dtype_name}


def _inspect_model(
    model: str,
    kwargs: dict[str, Any],
    sites: Any,
    site_template: Any,
    require_layer: int | None,
    progress: bool,
) -> _Driver:
    """The driver's view of the model without its weights: files, layout, tokenizer, sites."""
    from lamina.capture.architectures import resolve_sites
    from lamina.sources.models import model_skeleton, resolve_model, resolved_tokenizer

    resolved = resolve_model(model, progress=progress, **kwargs)
    skeleton = model_skeleton(resolved)
    site_set = resolve_sites(skeleton, sites, site_template)
    if require_layer is not None and require_layer >= site_set.n_layers:
        raise InputError(
            f"--layer {require_layer} does not exist: {resolved.name} has layers "
            f"0-{site_set.n_layers - 1}; pick one of them."
        )
    return _Driver(resolved, skeleton, resolved_tokenizer(resolved), site_set)


def _saved_report(shards_dir: Path, *, required: bool = True) -> dict[str, Any] | None:
    """The model report a run saved in the manifest (None, or an error when ``required``)."""
    from lamina.capture.shards import load_manifest

    manifest = load_manifest(shards_dir) or {}
    report = manifest.get("model")
    if not isinstance(report, dict):
        if not required:
            return None
        raise CaptureError(
            f"every shard was reused from {shards_dir} but its manifest.json does not describe the "
            "model; delete the directory to extract again."
        )
    return report
