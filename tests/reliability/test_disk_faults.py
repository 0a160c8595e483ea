"""Full, read-only and forbidden disks, for outputs and for the model cache: one sentence, exit 2,
the old outputs intact; the cache safe when two processes build it and after a killed build."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from lamina import _io
from lamina.cli import main
from lamina.errors import ModelLoadError
from lamina.sources import gguf as gguf_module
from reliability.faults import (
    FAST,
    fill,
    hidden,
    lamina_cli,
    one_sentence_error,
    remount_read_only,
    sigkill,
    snapshot,
)

# ----------------------------------------------------------------------------- outputs


@pytest.mark.slow
def test_full_disk_keeps_the_old_set(synthetic_table, mount_tmpfs):
    """A real full disk (a small tmpfs): the rerun fails in one sentence, the old set stays."""
    disk = mount_tmpfs("size=6m")
    out = disk / "out"
    first = lamina_cli("analyze", synthetic_table, "--out", out, *FAST)
    assert first.returncode == 0, first.stderr
    before = snapshot(out)
    fill(disk, leave=200_000)  # less than one output set

    result = lamina_cli("analyze", synthetic_table, "--out", out, "--seed", 1, *FAST)
    one_sentence_error(result, "the disk is full", str(out))
    assert snapshot(out) == before
    assert hidden(out) == []  # the half-written staging directory was removed


@pytest.mark.slow
def test_full_disk_patched(synthetic_table, tmp_path, monkeypatch, capsys):
    """The same fault without a mount: the rename of a finished file raises ENOSPC."""
    out = tmp_path / "out"
    assert main(["analyze", str(synthetic_table), "--out", str(out), *FAST]) == 0
    before = snapshot(out)
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith("results.json") and ".lamina-stage-" in str(dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    capsys.readouterr()
    code = main(["analyze", str(synthetic_table), "--out", str(out), "--seed", "1", *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "the disk is full" in err[0] and "results.json" in err[0]
    assert snapshot(out) == before
    assert hidden(out) == []


@pytest.mark.slow
def test_read_only_output_directory(synthetic_table, mount_tmpfs):
    """A real read-only file system (EROFS, which root cannot bypass)."""
    disk = mount_tmpfs("size=8m")
    out = disk / "out"
    assert lamina_cli("analyze", synthetic_table, "--out", out, *FAST).returncode == 0
    before = snapshot(out)
    remount_read_only(disk)
    result = lamina_cli("analyze", synthetic_table, "--out", out, "--seed", 1, *FAST)
    one_sentence_error(result, "read-only", str(out))
    assert snapshot(out) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions (EACCES)")
def test_forbidden_output_directory(synthetic_table, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        result = lamina_cli("analyze", synthetic_table, "--out", out, *FAST)
    finally:
        out.chmod(0o755)
    one_sentence_error(result, "permission denied", str(out))


def test_writer_errors_name_the_path_and_the_cause(tmp_path):
    """Every OSError met by an atomic writer becomes one sentence naming the file."""
    for code, words in [
        (errno.ENOSPC, "the disk is full"),
        (errno.EROFS, "the file system is read-only"),
        (errno.EACCES, "permission denied"),
    ]:
        error = _io.write_error(tmp_path / "x.json", OSError(code, os.strerror(code)))
        assert str(error).startswith(f"cannot write {tmp_path / 'x.json'}: {words};")
    # pyarrow's OSErrors carry the errno only in their text
    arrow = OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert "the disk is full" in str(_io.write_error(tmp_path / "t.parquet", arrow))


def test_an_oserror_from_a_library_is_one_sentence(monkeypatch, capsys):
    """The last resort in `main`: an OSError no writer translated still prints one line."""
    import lamina.cli.commands as commands

    def fails(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/somewhere/file")

    monkeypatch.setattr(commands, "cmd_report", fails)
    assert main(["report", "anywhere"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the disk is full" in err[0] and "/somewhere/file" in err[0]


# ----------------------------------------------------------------------------- the cache


def _fake_gguf(tmp_path):
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF stand-in")
    return gguf


def _fake_dequantise(folder, gguf_path, *, progress):
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 4)


def test_unwritable_cache_is_one_sentence_naming_it(tmp_path, monkeypatch):
    """LAMINA_CACHE under a file (ENOTDIR, which root cannot bypass)."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("LAMINA_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(gguf_module, "_dequantise_into", _fake_dequantise)
    with pytest.raises(ModelLoadError) as error:
        gguf_module.ensure_gguf_cache(_fake_gguf(tmp_path), label="fake", progress=False)
    message = str(error.value)
    assert str(blocker / "cache" / "models") in message and "LAMINA_CACHE" in message
    assert "\n" not in message


def test_unwritable_text_cache_is_one_sentence_naming_it(tmp_path, monkeypatch):
    from lamina.errors import TextLoadError
    from lamina.sources import load_text
    from lamina.sources import texts as texts_module

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("LAMINA_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(texts_module, "_download", lambda url, **kw: b"A downloaded book.")
    with pytest.raises(TextLoadError) as error:
        load_text("gutenberg:8")
    message = str(error.value)
    assert str(blocker / "cache" / "texts") in message and "LAMINA_CACHE" in message


@pytest.mark.slow
def test_read_only_cache_is_one_sentence_naming_it(tmp_path, mount_tmpfs, monkeypatch):
    disk = mount_tmpfs("size=1m")
    remount_read_only(disk)
    monkeypatch.setenv("LAMINA_CACHE", str(disk))
    monkeypatch.setattr(gguf_module, "_dequantise_into", _fake_dequantise)
    with pytest.raises(ModelLoadError) as error:
        gguf_module.ensure_gguf_cache(_fake_gguf(tmp_path), label="fake", progress=False)
    assert "read-only" in str(error.value) and "LAMINA_CACHE" in str(error.value)


@pytest.mark.slow
def test_full_cache_is_one_sentence_naming_it(tmp_path, mount_tmpfs, monkeypatch):
    """The weights do not fit: safetensors' own error (SafetensorError or OSError) is a sentence."""
    import safetensors.torch
    import torch

    disk = mount_tmpfs("size=1m")
    monkeypatch.setenv("LAMINA_CACHE", str(disk))

    def big_dequantise(folder, gguf_path, *, progress):
        (folder / "config.json").write_text("{}")
        weights = {"w": torch.zeros(1_000_000)}  # 4 MB
        safetensors.torch.save_file(weights, str(folder / "model.safetensors"))

    monkeypatch.setattr(gguf_module, "_dequantise_into", big_dequantise)
    with pytest.raises(ModelLoadError) as error:
        gguf_module.ensure_gguf_cache(_fake_gguf(tmp_path), label="fake", progress=False)
    assert "the disk is full" in str(error.value) and str(disk) in str(error.value)
    assert [p.name for p in (disk / "models").iterdir()] == []  # no half-built folder


_BUILDER = """
import json, sys, time
from pathlib import Path
from lamina.sources import gguf as gguf_module

log = Path(sys.argv[2])

def slow_dequantise(folder, gguf_path, *, progress):
    with open(log, "a") as fh:
        fh.write("build\\n")
    time.sleep(1.0)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 4)

gguf_module._dequantise_into = slow_dequantise
folder, sha = gguf_module.ensure_gguf_cache(Path(sys.argv[1]), label="fake", progress=False)
print(json.dumps({"folder": str(folder), "sha": sha}))
"""


def test_two_processes_building_the_cache_at_once(tmp_path, lamina_cache):
    """Both get a sound cache; it is built once (the second waits for the first)."""
    gguf, log = _fake_gguf(tmp_path), tmp_path / "builds.log"
    env = {**os.environ, "LAMINA_CACHE": str(lamina_cache)}
    command = [sys.executable, "-c", _BUILDER, str(gguf), str(log)]
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err.decode() for _, err in outputs]
    folders = {json.loads(out)["folder"] for out, _ in outputs}
    assert len(folders) == 1
    assert log.read_text().splitlines() == ["build"]
    folder = lamina_cache / "models" / os.path.basename(folders.pop())
    assert gguf_module._verify_cache(folder, gguf_module.sha256_file(gguf)) is None
    assert sorted(p.name for p in (lamina_cache / "models").iterdir()) == [folder.name]


def test_a_killed_cache_build_is_removed_by_the_next(tmp_path, lamina_cache, monkeypatch):
    gguf, log = _fake_gguf(tmp_path), tmp_path / "builds.log"
    env = {"LAMINA_CACHE": str(lamina_cache)}
    script = tmp_path / "build.py"
    script.write_text(_BUILDER.replace("time.sleep(1.0)", "pass"))
    process = _start_script_paused(script, [gguf, log], "cache-build", tmp_path, env)
    sigkill(process)
    models = lamina_cache / "models"
    leftovers = [p for p in models.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and (leftovers[0] / "model.safetensors").is_file()

    monkeypatch.setattr(gguf_module, "_dequantise_into", _fake_dequantise)
    folder, _ = gguf_module.ensure_gguf_cache(gguf, label="fake", progress=False)
    assert sorted(p.name for p in models.iterdir()) == [folder.name]


def _start_script_paused(script, args, point, tmp_path, env):
    """Like start_paused, for a Python script instead of the lamina command."""
    import time

    flag = tmp_path / f"paused-{point}"
    process = subprocess.Popen(
        [sys.executable, str(script), *map(str, args)],
        env={**os.environ, **env, "LAMINA_PAUSE_AT": point, "LAMINA_PAUSE_FLAG": str(flag)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300  # a guard against a hang, not a timing assertion
    while not flag.exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the build never reached its pause point"
        time.sleep(0.05)
    return process
