"""Run a causal LM over a text or a corpus and build the token table.

:func:`extract` tokenizes every document, plans its windows and groups them into
content-keyed shards (:mod:`lamina.capture.plan`), computes the shards in this
process (:mod:`lamina.capture.runner`, :mod:`lamina.capture.compute`) or reads
back those already saved, and assembles the table (:mod:`lamina.capture.assemble`).
For every window one forward pass of the Hugging Face model runs with hooks on
the site modules (:mod:`lamina.capture.hooks`), each reducing its module's output
to one L2 norm per scored position before the forward pass moves on, so no
layer's activations outlive its step. The distributed engine (Ray) shares the
plan, the shards and the assembly (:mod:`lamina.capture.ray_engine`).
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.capture.architectures import (
    ResolvedSites,
    check_stream_support,
    context_length,
    resolve_sites,
)
from lamina.capture.assemble import assemble_table, base_metadata, skeleton
from lamina.capture.compute import ShardComputer
from lamina.capture.plan import DEFAULT_SHARD_WINDOWS, Document, ExtractionPlan, Planner
from lamina.capture.probe_run import ProbeJob, check_device_memory, prepare_probe, project_local
from lamina.capture.probe_spec import DEFAULT_FOLDS, DEFAULT_PROBE
from lamina.capture.runner import Saving, manifest_of, run_local, shard_columns_names
from lamina.capture.shards import save_manifest
from lamina.capture.tokens import token_stream
from lamina.capture.windows import (
    WindowOptions,
    check_window_fits,
    default_stride,
    default_window,
)
from lamina.errors import CaptureError, InputError

if TYPE_CHECKING:
    import pyarrow as pa
    from torch import nn


def texts_of(text: Any) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """The (text, provenance) of every document of a string, a loaded text or a corpus,
    and the text metadata of the table."""
    if hasattr(text, "documents") and hasattr(text, "text_provenance"):
        bodies = [(doc.text, doc.provenance.to_dict()) for doc in text.documents]
        return bodies, text.text_provenance()
    body, meta = _text_and_provenance(text)
    return [(body, meta)], meta


def _text_and_provenance(text: Any) -> tuple[str, dict]:
    if isinstance(text, str):
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return text, {
            "spec": "<string>",
            "source": "string",
            "sha256": digest,
            "raw_sha256": digest,
            "n_chars": len(text),
            "boilerplate": "kept",
        }
    if hasattr(text, "text") and hasattr(text, "provenance"):
        provenance = text.provenance
        as_dict = provenance.to_dict() if hasattr(provenance, "to_dict") else dict(provenance)
        return text.text, as_dict
    raise InputError(
        f"text must be a string, a loaded text or a corpus, not {type(text).__name__}."
    )


def model_report(loaded: Any, model: nn.Module) -> dict:
    report = getattr(loaded, "report", None)
    if report is not None and hasattr(report, "to_dict"):
        return report.to_dict()
    config = model.config
    return {"name": type(model).__name__, "architecture": getattr(config, "model_type", None)}


def _context_length(loaded: Any, model: nn.Module) -> int | None:
    report = getattr(loaded, "report", None)
    value = getattr(report, "context_length", None)
    if isinstance(value, int) and value > 0:
        return value
    return context_length(model)


def sites_metadata(resolved: ResolvedSites) -> dict[str, Any]:
    return {
        "sites": list(resolved.sites),
        "site_modules": dict(resolved.templates),
        "site_sources": dict(resolved.source),
        "n_layers": resolved.n_layers,
        "n_heads": resolved.n_heads,
    }


def identity(report: Mapping[str, Any], resolved: ResolvedSites, bos_id: int | None) -> dict:
    """What the rows depend on besides the text: it enters every shard's key."""
    return {
        "model_fingerprint": report.get("fingerprint"),
        "dtype": report.get("dtype"),
        "sites": list(resolved.sites),
        "site_modules": dict(resolved.templates),
        "bos_id": bos_id,
    }


def bos_token_id(tokenizer: Any) -> int:
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        raise CaptureError("this tokenizer has no BOS token; run without --bos.")
    return bos_id


def build_plan(
    text: Any,
    tokenizer: Any,
    *,
    report: Mapping[str, Any],
    resolved: ResolvedSites,
    context: int | None,
    windows: WindowOptions,
    shard_windows: int,
) -> tuple[ExtractionPlan, dict[str, Any], int | None]:
    """Tokenize the text or corpus and plan its shards: (plan, text metadata, BOS id or None).

    Each document is tokenized in pieces, only as far as its windows need
    (:func:`lamina.capture.tokens.token_stream`); once ``max_tokens`` are planned,
    later documents are listed but not tokenized.
    """
    if windows.mode == "stream":
        check_stream_support(resolved.model_type)
    window = windows.window or default_window(context, windows.bos)
    check_window_fits(window, context, windows.bos)
    bos_id = bos_token_id(tokenizer) if windows.bos else None
    bodies, text_meta = texts_of(text)
    planner = Planner(
        mode=windows.mode,
        window=window,
        stride=windows.stride or default_stride(window),
        max_tokens=windows.max_tokens,
        bos=windows.bos,
        context_length=context,
        identity=identity(report, resolved, bos_id),
        shard_windows=shard_windows,
        batch_size=windows.batch_size,
    )
    for index, (body, provenance) in enumerate(bodies):
        if planner.full:
            planner.add(Document(index, np.zeros(0, dtype=np.int64), provenance, length=0))
            continue
        stream = token_stream(
            tokenizer, body, mode=windows.mode, window=window, max_tokens=planner.left
        )
        planner.add(
            Document(
                index,
                stream.ids,
                provenance,
                stream.offset,
                stream.length,
                stream.n_tokens,
                counts=stream.counts,
            )
        )
    return planner.plan, text_meta, bos_id


def extract(
    loaded: Any = None,
    text: Any = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
    sites: str | Iterable[str] = ("attn_out",),
    windows: str | WindowOptions = "all",
    window: int | None = None,
    stride: int | None = None,
    batch_size: int | str = 1,
    max_tokens: int | None = None,
    bos: bool = False,
    site_template: str | Iterable[str] | Mapping[str, str] | None = None,
    progress: bool | None = True,
    command_line: str | None = None,
    shards_dir: str | Path | None = None,
    shard_windows: int = DEFAULT_SHARD_WINDOWS,
    allow_nonfinite: bool = False,
    probe: str = DEFAULT_PROBE,
    probe_folds: int = DEFAULT_FOLDS,
) -> pa.Table:
    """Score every planned token of ``text`` and record the norm each layer writes there.

    ``loaded``: a :class:`lamina.sources.LoadedModel`, or ``model=`` and ``tokenizer=`` loaded
    with ``transformers`` (see ``as_loaded`` in :mod:`lamina.sources.loaded_model`). ``text``: a
    string, a :class:`lamina.sources.LoadedText` or a :class:`lamina.sources.Corpus` (each
    document gets its own windows; the ``doc`` column says which). ``windows``: a
    :class:`WindowOptions`, or its mode (``"all"``, ``"middle"``, ``"stream"``) with ``window``
    (default ``min(context, 1024)``), ``stride`` (default ``window // 2``), ``batch_size``
    (windows per forward pass; ``"auto"``: as many as fit), ``max_tokens`` (cap on scored
    tokens) and ``bos`` (prepend the BOS token, fed but not scored). ``site_template`` names
    site modules (see :func:`lamina.capture.architectures.parse_site_templates`). ``progress``:
    True shows a tqdm bar, False hides it, None shows it on a terminal only. ``shards_dir``:
    save every shard there as it is done and reuse those already there (a killed run resumes);
    None keeps everything in memory. A NaN or inf logit or norm stops extraction (a
    :class:`CaptureError` naming the first layer and site); ``allow_nonfinite`` keeps such rows,
    marked in a ``nonfinite`` column. ``probe``: ``"diffmeans"``, ``"lda"``, ``"none"`` or
    ``"auto"`` (``diffmeans`` for ``middle`` windows, else none) adds cross-fitted probe scores
    over ``probe_folds`` contiguous folds (:mod:`lamina.capture.probe_run`).

    Returns the token table (see :mod:`lamina.table`). Raises
    :class:`CaptureError` / :class:`InputError` before any forward pass for
    options that cannot work.
    """
    if not isinstance(windows, WindowOptions):
        windows = WindowOptions(windows, window, stride, batch_size, max_tokens, bos)
    model, tokenizer, report, context = _model_parts(loaded, model, tokenizer)
    resolved = resolve_sites(model, sites, site_template)
    plan, text_meta, bos_id = build_plan(
        text,
        tokenizer,
        report=report,
        resolved=resolved,
        context=context,
        windows=windows,
        shard_windows=shard_windows,
    )
    job = prepare_probe(probe, probe_folds, plan, resolved, _hidden_size(model))
    computer, batch = _computer(model, resolved, plan, windows, bos_id, allow_nonfinite, job)
    base = {**base_metadata(plan, text_meta, sites_metadata(resolved)), "model": report}
    bones = skeleton(plan, tokenizer)
    saving = _saving(shards_dir, base, computer, report)
    started = time.perf_counter()
    results, counts = _run_here(plan, computer, saving, bones, progress, job)
    extraction = {"engine": "local", "batch_size": batch, **counts}
    metadata = {
        **base,
        **({"probe": job.metadata()} if job is not None else {}),
        "seconds": round(time.perf_counter() - started, 3),
        "command_line": command_line,
        "extraction": extraction,
    }
    computed = [results[shard.key] for shard in plan.shards]
    return assemble_table(
        bones, computed, metadata, allow_nonfinite=allow_nonfinite, tokenizer=tokenizer
    )


def _model_parts(loaded: Any, model: Any, tokenizer: Any) -> tuple[Any, Any, dict, int | None]:
    """(model, tokenizer, report dict, context length) of what :func:`extract` was given."""
    from lamina.sources.loaded_model import as_loaded

    loaded = as_loaded(loaded, model=model, tokenizer=tokenizer)
    model = loaded.model
    return model, loaded.tokenizer, model_report(loaded, model), _context_length(loaded, model)


def _hidden_size(model: nn.Module) -> int:
    from lamina.sources.hfconfig import config_dims

    return config_dims(model.config).hidden_size or 1


def _computer(
    model: nn.Module,
    resolved: ResolvedSites,
    plan: ExtractionPlan,
    windows: WindowOptions,
    bos_id: int | None,
    allow_nonfinite: bool,
    job: ProbeJob | None,
) -> tuple[ShardComputer, int]:
    """The model with its hooks (and the probe's), and its batch size resolved."""
    from lamina.capture.batching import resolve_batch_size

    spec = job.spec if job is not None else None
    stash = len(spec.sites) if spec is not None else 0
    batch = resolve_batch_size(
        windows.batch_size, model, plan.window, len(resolved.sites), probe_sites=stash
    )
    computer = ShardComputer(
        model,
        resolved,
        batch_size=batch,
        bos_id=bos_id,
        allow_nonfinite=allow_nonfinite,
        probe=spec,
    )
    if job is not None:
        check_device_memory(job, _hidden_size(model), plan, computer.device)
    return computer, batch


def _saving(
    shards_dir: str | Path | None, base: dict, computer: ShardComputer, report: dict
) -> Saving | None:
    if shards_dir is None:
        return None
    return Saving(Path(shards_dir), base, shard_columns_names(computer.names), report)


def _run_here(
    plan: ExtractionPlan,
    computer: ShardComputer,
    saving: Saving | None,
    bones: dict[str, np.ndarray],
    progress: bool | None,
    job: ProbeJob | None = None,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Run the plan in this process with a progress bar; SIGINT stops after a batch.

    With a probe, pass 1 is the extraction and pass 2 (:func:`project_local`) follows
    with its own bar; the table's metadata then gets the probe's (``saving``'s too).
    """
    shards_dir = saving.shards_dir if saving is not None else None
    with _progress_bar(plan, progress) as bar, _stop_on_sigint(saving is not None) as stop:
        computer.on_batch, computer.should_stop = bar, stop
        results, counts = run_local(
            plan, computer, saving=saving, skeleton_columns=bones, on_reused=bar, probe=job
        )
    if job is None:
        return results, counts.to_dict()
    with _progress_bar(plan, progress, "probe") as bar, _stop_on_sigint(saving is not None) as stop:
        computer.on_batch, computer.should_stop = bar, stop
        project_local(plan, computer, job, results, shards_dir, on_reused=bar)
    if saving is not None:
        saving.metadata["probe"] = job.metadata()
        save_manifest(saving.shards_dir, manifest_of(plan, sorted(results), saving))
    return results, {**counts.to_dict(), "probe": job.counts()}


@contextlib.contextmanager
def _progress_bar(
    plan: ExtractionPlan, progress: bool | None, desc: str = "extract"
) -> Iterator[Callable[[int], None]]:
    from tqdm.auto import tqdm

    bar = tqdm(
        total=plan.n_scored,
        unit="tok",
        unit_scale=True,
        desc=desc,
        disable=None if progress is None else not progress,
        leave=False,
    )
    try:
        yield bar.update
    finally:
        bar.close()


@contextlib.contextmanager
def _stop_on_sigint(enabled: bool) -> Iterator[Callable[[], bool] | None]:
    """While extracting into shards, the first SIGINT asks for a stop after the current batch.

    A second SIGINT interrupts at once, as usual. Only the main thread can
    install the handler; elsewhere nothing changes. Nor where SIGINT is ignored
    (``nohup lamina ... &``): whoever ignored it meant it.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield None
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        yield None
        return
    requested = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if requested.is_set():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        requested.set()

    signal.signal(signal.SIGINT, handler)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
