"""Models from the Hugging Face hub: the local cache first, then one short metadata request."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from lamina.errors import ModelLoadError
from lamina.sources._hf import (
    PICKLE_INDEX,
    PICKLE_SUFFIXES,
    SAFETENSORS_INDEX,
    TOKENIZER_FILES,
    pickle_refused,
    reason,
)

_HUB_TIMEOUT_S = 10.0


def _hub_offline() -> bool:
    from huggingface_hub import constants

    # huggingface_hub reads HF_HUB_OFFLINE once, at import; a later change must count too.
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or bool(constants.HF_HUB_OFFLINE)


def _has_any_weights(folder: Path) -> bool:
    suffixes = (".safetensors", *PICKLE_SUFFIXES)
    return any(p.name.endswith(suffixes) and p.is_file() for p in folder.iterdir())


def resolve_hub(
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
            f"cannot reach the Hugging Face hub to fetch {repo_id!r} ({reason(exc)}) and it is "
            "not in the local cache: connect to the network once, or give a local directory."
        ) from exc
    names = [s.rfilename for s in (info.siblings or []) if "/" not in s.rfilename]
    has_safetensors = any(n.endswith(".safetensors") for n in names)
    has_pickle = any(n.endswith(PICKLE_SUFFIXES) for n in names)
    if not has_safetensors and has_pickle and not allow_pickle:
        raise pickle_refused(repo_id)
    wanted = [n for n in names if _wanted_hub_file(n, has_safetensors, trust_remote_code)]
    try:
        folder = snapshot_download(repo_id, revision=info.sha, allow_patterns=wanted)
    except Exception as exc:
        raise ModelLoadError(
            f"downloading {repo_id!r} from the Hugging Face hub failed ({reason(exc)}): "
            "check the network and disk space, then retry."
        ) from exc
    return Path(folder), str(info.sha)


def _wanted_hub_file(name: str, has_safetensors: bool, trust_remote_code: bool) -> bool:
    if name.endswith(".safetensors") or name == SAFETENSORS_INDEX:
        return True
    if name in ("pytorch_model.bin", PICKLE_INDEX) or re.fullmatch(
        r"pytorch_model-\d+-of-\d+\.bin", name
    ):
        return not has_safetensors
    if name.endswith(".py"):
        return trust_remote_code
    return name in TOKENIZER_FILES or name.endswith((".json", ".txt", ".model", ".jinja"))
