"""Models that ship as GGUF files: the embedded default, and any ``.gguf`` path.

GGUF files are dequantised once (~15-20 s for SmolLM2-135M) and the float32
weights, config and tokenizer are cached as safetensors under
``cache_dir()/models/<name>-<first 12 hex of the GGUF sha256>/`` with a manifest of
file sizes and sha256 digests; every later load reads that cache (well under a
second of I/O). A cache that fails verification is rebuilt, never trusted.

Builders take a lock per cache folder (:func:`lamina._staging.hold_lock`): a second
process that needs the same folder waits for the first and then uses its cache. A
build is a temporary sibling folder ``.NAME.PID.XXXXXXXX.tmp`` renamed into place; a
killed build's folder is removed by the next build. A cache directory that cannot be
written (read-only, full, forbidden) is one sentence naming it and ``LAMINA_CACHE``.
"""

from __future__ import annotations

import copy
import errno
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lamina._io import cache_dir, cache_write_message, sha256_file, sha256_memoised
from lamina._staging import hold_lock, pause_point, remove_stale
from lamina.errors import ModelLoadError, OutputError
from lamina.sources._hf import load_tokenizer, progress_bars, reason
from lamina.sources.embedded import EMBEDDED_MODELS, embedded_gguf_path

logger = logging.getLogger(__name__)


# Bump when the layout of a GGUF cache directory changes; older caches are rebuilt.
_GGUF_CACHE_FORMAT = 1
_MANIFEST = "manifest.json"


def _gguf_cache_folder(label: str, gguf_sha: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip(".-") or "model"
    return cache_dir() / "models" / f"{safe}-{gguf_sha[:12]}"


def ensure_gguf_cache(gguf: Path, *, label: str, progress: bool = True) -> tuple[Path, str]:
    """Return (cache folder, GGUF sha256), dequantising and caching the GGUF if needed.

    The folder holds ``config.json``, ``model.safetensors`` (float32), the tokenizer
    files and ``manifest.json`` (sizes and sha256 of every other file, and the GGUF's
    sha256). It is built in a temporary sibling folder and renamed into place, so it
    is either complete or absent; a folder that fails verification is rebuilt.
    """
    gguf = Path(gguf)
    gguf_sha = sha256_memoised(gguf)
    folder = _gguf_cache_folder(label, gguf_sha)
    problem = _verify_cache(folder, gguf_sha)
    if problem is None:
        return folder, gguf_sha
    if folder.exists():
        logger.warning("lamina: the cached weights in %s %s; rebuilding them.", folder, problem)
    _build_gguf_cache(gguf, gguf_sha, folder, progress=progress)
    problem = _verify_cache(folder, gguf_sha)
    if problem is not None:  # pragma: no cover - only if the disk changes under us
        raise ModelLoadError(
            f"the weight cache {folder} {problem} right after it was written: check the disk "
            "and delete the folder."
        )
    return folder, gguf_sha


def _verify_cache(folder: Path, gguf_sha: str) -> str | None:
    """None if ``folder`` is a complete cache of the GGUF with this sha256, else why not."""
    manifest_path = folder / _MANIFEST
    if not folder.is_dir():
        return "is missing"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "have no readable manifest"
    if manifest.get("format") != _GGUF_CACHE_FORMAT or manifest.get("gguf_sha256") != gguf_sha:
        return "were made from another file or by another lamina version"
    files = manifest.get("files")
    if not isinstance(files, dict) or "model.safetensors" not in files:
        return "have an incomplete manifest"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            return f"lack {name}"
        if path.stat().st_size != expected.get("size"):
            return f"have a truncated or altered {name}"
        if sha256_memoised(path) != expected.get("sha256"):
            return f"have a corrupt {name} (sha256 mismatch)"
    return None


def cache_write_error(folder: Path, exc: BaseException) -> ModelLoadError:
    """One sentence for a cache directory lamina cannot write (read-only, full, forbidden),
    its advice by the errno (a read-only file system is not told to free space)."""
    if not isinstance(exc, OSError):
        if "StorageFull" in str(exc) or "No space left" in str(exc):
            exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        else:
            first = str(exc).splitlines()[0][:120] if str(exc) else repr(exc)
            exc = OSError(f"writing failed ({first})")
    return ModelLoadError(cache_write_message("model cache", folder, exc))


def _build_gguf_cache(gguf: Path, gguf_sha: str, folder: Path, *, progress: bool) -> None:
    """Under the folder's lock: unless another process built it meanwhile, build it afresh."""
    models = folder.parent
    try:
        models.mkdir(parents=True, exist_ok=True)
        with hold_lock(
            models / f".{folder.name}.lamina-lock",
            what=f"the model cache {folder}",
            wait=None,
            on_wait=lambda line: logger.warning("lamina: %s.", line),
        ):
            if _verify_cache(folder, gguf_sha) is None:
                return  # another process built it while we waited
            remove_stale(models, (folder.name,))
            _build_into_place(gguf, gguf_sha, folder, progress=progress)
    except OutputError as exc:  # the lock file could not be written
        raise cache_write_error(models, exc.__cause__ or exc) from exc
    except OSError as exc:
        raise cache_write_error(models, exc) from exc
    except Exception as exc:
        if type(exc).__name__ == "SafetensorError":
            raise cache_write_error(models, exc) from exc
        raise


def _build_into_place(gguf: Path, gguf_sha: str, folder: Path, *, progress: bool) -> None:
    """Fill a temporary sibling of ``folder``, write its manifest, rename it into place."""
    prefix = f".{folder.name}.{os.getpid()}."
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=folder.parent))
    try:
        started = time.perf_counter()
        _dequantise_into(tmp, gguf, progress=progress)
        pause_point("cache-build")
        files = {
            p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(tmp.iterdir())
            if p.is_file()
        }
        manifest = {
            "format": _GGUF_CACHE_FORMAT,
            "gguf_file": str(gguf),
            "gguf_sha256": gguf_sha,
            "files": files,
            "build_seconds": round(time.perf_counter() - started, 1),
        }
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _dequantise_into(folder: Path, gguf: Path, *, progress: bool) -> None:
    """Write the GGUF's float32 weights, config and tokenizer into ``folder``."""
    import safetensors.torch
    import torch
    from transformers import AutoModelForCausalLM

    if progress:
        logger.warning("lamina: dequantising %s once; later loads use the cache.", gguf.name)
    with progress_bars(progress, gguf=True):  # every bar, the GGUF conversion's included
        try:
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
            )
        except (OSError, ValueError, KeyError, RuntimeError, NotImplementedError) as exc:
            raise ModelLoadError(
                f"cannot read {str(gguf)!r} as a GGUF causal LM ({reason(exc)}): give a GGUF "
                "of an architecture transformers supports (llama, mistral, qwen2, gpt2, ...)."
            ) from exc
        tokenizer = load_tokenizer(
            gguf.parent, spec=str(gguf), trust_remote_code=False, gguf_file=gguf.name
        )
    config = copy.deepcopy(model.config)
    # The weights written below are plain float32, so the GGUF quantisation entry must go
    # (save_pretrained refuses GGUF-quantised models for the same reason).
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    # save_model drops the duplicate of tied tensors (lm_head = embed_tokens), which
    # transformers re-ties from config.tie_word_embeddings on load.
    safetensors.torch.save_model(model, str(folder / "model.safetensors"), {"format": "pt"})
    tokenizer.save_pretrained(folder)


def prepare_embedded_models(say: Callable[[str], None]) -> None:
    """Build (or verify) the weight cache of every embedded model."""
    for alias in EMBEDDED_MODELS:
        gguf = embedded_gguf_path(alias, say=say)
        started = time.perf_counter()
        gguf_sha = sha256_memoised(gguf)
        folder = _gguf_cache_folder(alias, gguf_sha)
        was_sound = _verify_cache(folder, gguf_sha) is None
        with progress_bars(False):
            folder, _ = ensure_gguf_cache(gguf, label=alias, progress=False)
        seconds = time.perf_counter() - started
        if was_sound:
            say(f"model cache: {alias} verified in {folder} ({seconds:.1f} s)")
        else:
            say(f"model cache: {alias} dequantised into {folder} ({seconds:.1f} s)")
