"""Loading helpers shared by the model sources (local folders, GGUF files, the hub)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina.errors import ModelLoadError

if TYPE_CHECKING:
    import transformers

SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_INDEX = "pytorch_model.bin.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "vocab.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.tiktoken",
)


def reason(exc: BaseException) -> str:
    """The first sentence of an exception's message, shortened, for a one-sentence error."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    text = re.split(r"(?<=[.!?])\s", text.splitlines()[0], maxsplit=1)[0].rstrip(".")
    return text if len(text) <= 160 else text[:157] + "..."


#: The module of transformers' GGUF loader, whose tensor conversion has its own tqdm bar.
GGUF_LOADER = "transformers.modeling_gguf_pytorch_utils"


@contextlib.contextmanager
def progress_bars(enabled: bool, *, gguf: bool = False) -> Iterator[None]:
    """Turn transformers' and huggingface_hub's progress bars off inside the block if asked.

    ``gguf``: the block loads a GGUF file; its bar ("Converting and de-quantizing
    GGUF tensors") is ``tqdm.auto`` called by transformers' GGUF loader directly,
    which neither switch reaches, so the loader's ``tqdm`` is replaced by a
    disabled one inside the block (importing the loader, and torch with it).
    """
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
        with _silent_gguf_loader() if gguf else contextlib.nullcontext():
            yield
    finally:
        if transformers_on:
            hf_logging.enable_progress_bar()
        if not hub_off:
            hub_utils.enable_progress_bars()


@contextlib.contextmanager
def _silent_gguf_loader() -> Iterator[None]:
    """The GGUF loader's ``tqdm`` disabled inside the block (left alone if it has none)."""
    import functools
    import importlib

    loader = importlib.import_module(GGUF_LOADER)
    bar = getattr(loader, "tqdm", None)
    if bar is None:
        yield
        return
    loader.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        loader.tqdm = bar


def pickle_refused(spec: str) -> ModelLoadError:
    return ModelLoadError(
        f"model {spec!r} only has pickled weights (.bin), which can run arbitrary code when "
        "loaded: pass --allow-pickle (allow_pickle=True) if you trust its source."
    )


def load_tokenizer(
    folder: Path, *, spec: str, trust_remote_code: bool, gguf_file: str | None = None
) -> transformers.PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    no_tokenizer = ModelLoadError(
        f"model {spec!r} has no tokenizer: save one beside the weights "
        "(tokenizer.save_pretrained) or use a model that ships its tokenizer."
    )
    if gguf_file is None and not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise no_tokenizer
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "local_files_only": True}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(
            f"cannot load the tokenizer of {spec!r} ({reason(exc)}): save a tokenizer beside "
            "the weights with tokenizer.save_pretrained."
        ) from exc
    if tokenizer is None or isinstance(tokenizer, bool) or len(tokenizer) < 2:
        raise no_tokenizer
    return tokenizer


#: The largest safetensors header lamina reads (the format's own limit is 100 MB).
_MAX_SAFETENSORS_HEADER = 100_000_000


def _safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete safetensors file (header and sizes only), or None."""
    size = path.stat().st_size
    if size == 0:
        return "is empty"
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"is truncated ({size} bytes, shorter than any safetensors file)"
        n_header = int.from_bytes(head, "little")
        if n_header > min(size - 8, _MAX_SAFETENSORS_HEADER):
            return f"is truncated or not safetensors (its header claims {n_header:,} bytes)"
        try:
            header = json.loads(fh.read(n_header))
            ends = [
                int(entry["data_offsets"][1])
                for name, entry in header.items()
                if name != "__metadata__"
            ]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return "has a corrupt header"
    needed = 8 + n_header + max(ends, default=0)
    if needed > size:
        return f"is truncated ({size:,} bytes; its header describes {needed:,})"
    return None


def check_safetensors(path: Path, spec: str) -> None:
    """Refuse an empty, truncated or corrupt safetensors file before a loader reads it."""
    try:
        problem = _safetensors_problem(path)
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or exc})"
    if problem is not None:
        raise ModelLoadError(
            f"the weights file {path} of model {spec!r} {problem}: download or save the "
            "model again."
        )
