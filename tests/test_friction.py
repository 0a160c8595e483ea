"""Frictions of everyday use: several models checked before any runs, no abort at exit,
cache errors worded by their cause, matplotlib quiet, no GGUF bar with progress off,
the middle window of a short text, and the notes the console summary prints."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lamina.cli import main
from tiny_models import tiny_config, tiny_tokenizer

GOLDEN = Path(__file__).parent / "data" / "golden" / "default" / "results.json"
ANALYSIS = ["--permutations", "19", "--diagnostic-permutations", "19", "--no-progress"]


def lamina(argv: list) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def save_tiny_gpt2(folder: Path, n_layers: int, seed: int = 0) -> Path:
    import torch
    import transformers

    torch.manual_seed(seed)
    config = tiny_config("gpt2")
    config.n_layer = n_layers
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "tiny2": save_tiny_gpt2(root / "tiny2", 2),
        "tiny4": save_tiny_gpt2(root / "tiny4", 4, seed=1),
    }


def _text(tmp_path: Path, n_words: int = 400) -> Path:
    from study.token_tables import tiny_study_text

    path = tmp_path / "text.txt"
    path.write_text(" ".join(tiny_study_text().split(" ")[:n_words]), encoding="utf-8")
    return path


# ----------------------------------------------------------------- 1. several models


def test_an_unreachable_second_model_stops_the_run_before_the_first(models, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    code, stdout, stderr = lamina(
        [
            *("run", "--model", models["tiny2"], "--model", "someorg/nomodel"),
            *("--text", _text(tmp_path), "--layer", "1", *ANALYSIS, "--out", out),
        ]
    )
    assert code == 2 and stdout == ""
    assert stderr == (
        "lamina: error: model 'someorg/nomodel' is not in the local Hugging Face cache and "
        "HF_HUB_OFFLINE is set: unset it to download once, or give a local directory or "
        ".gguf file.\n"
    )
    assert not out.exists()  # tiny2 was not extracted


def test_a_layer_one_model_lacks_stops_the_run_before_any_extraction(models, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = lamina(
        [
            *("run", "--model", models["tiny4"], "--model", models["tiny2"]),
            *("--text", _text(tmp_path), "--layer", "3", *ANALYSIS, "--out", out),
        ]
    )
    assert code == 2 and stdout == ""
    assert stderr == (
        f"lamina: error: --layer 3 does not exist in model '{models['tiny2']}': it has layers "
        "0-1; pick a layer that every --model has (nothing was extracted).\n"
    )
    assert not out.exists()  # tiny4, which has layer 3, was not extracted either


def test_check_models_counts_each_models_layers(models):
    from lamina.pipeline.compare_runs import check_models

    specs = [str(models["tiny4"]), str(models["tiny2"])]
    assert check_models(specs, layer=1) == [4, 2]
    with pytest.raises(Exception, match="does not exist: give an existing directory"):
        check_models([*specs, str(models["tiny2"].parent / "missing")])


_EXIT_DURING_PREWARM = """
import atexit, threading
from lamina.pipeline.run import prewarm
prewarm().join()  # imports done: the next warm-up goes straight to matplotlib's drawing
def alive():
    names = [t.name for t in threading.enumerate() if t.name == "lamina-prewarm"]
    print("alive at exit:", names, flush=True)
atexit.register(alive)
prewarm()
raise SystemExit(2)  # as an error does while the warm-up draws
"""


def test_no_prewarm_thread_is_left_running_at_exit():
    """A daemon thread stopped at exit inside matplotlib's C++ code aborts the process
    ("terminate called without an active exception", exit 134): the interpreter must wait."""
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_DURING_PREWARM], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == "alive at exit: []\n"
    assert "terminate called" not in done.stderr


# ----------------------------------------------------------------- 2. unwritable caches


def _refuse_mkdir_under(monkeypatch, root: Path, code: int) -> None:
    real = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if str(self).startswith(str(root)):
            raise OSError(code, os.strerror(code), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)


CACHE_ADVICE = {
    errno.EROFS: "the file system is read-only; set LAMINA_CACHE to a directory on a writable "
    "file system.",
    errno.EACCES: "permission denied; set LAMINA_CACHE to a directory you can write to.",
    errno.EPERM: "the operation is not permitted; set LAMINA_CACHE to a directory you can "
    "write to.",
    errno.ENOSPC: "the disk is full; free some space there or set LAMINA_CACHE to a directory "
    "on a disk with room.",
    errno.EDQUOT: "the disk quota is exhausted; free some space there or set LAMINA_CACHE to a "
    "directory on a disk with room.",
}


@pytest.mark.parametrize("code", list(CACHE_ADVICE))
def test_model_cache_advice_follows_the_cause(code, tmp_path, monkeypatch):
    from lamina.errors import ModelLoadError
    from lamina.sources import gguf as gguf_module

    cache = tmp_path / "cache"
    monkeypatch.setenv("LAMINA_CACHE", str(cache))
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF stand-in")
    _refuse_mkdir_under(monkeypatch, cache / "models", code)
    with pytest.raises(ModelLoadError) as error:
        gguf_module.ensure_gguf_cache(gguf, label="fake", progress=False)
    assert str(error.value) == (
        f"cannot write the model cache in {cache / 'models'}: {CACHE_ADVICE[code]}"
    )


def test_read_only_text_cache_is_not_told_to_free_space(tmp_path, monkeypatch):
    from lamina.errors import TextLoadError
    from lamina.sources import load_text
    from lamina.sources import texts as texts_module

    cache = tmp_path / "cache"
    monkeypatch.setenv("LAMINA_CACHE", str(cache))
    monkeypatch.setattr(texts_module, "_download", lambda url, **kw: b"A downloaded book.")
    _refuse_mkdir_under(monkeypatch, cache, errno.EROFS)
    with pytest.raises(TextLoadError) as error:
        load_text("gutenberg:8")
    assert str(error.value) == (
        f"cannot write the text cache in {cache / 'texts'}: {CACHE_ADVICE[errno.EROFS]}"
    )


def test_output_advice_follows_the_cause(tmp_path):
    from lamina._io import write_error

    path = tmp_path / "x.json"
    expected = {
        errno.EROFS: "the file system is read-only; write to a directory on a writable file "
        "system.",
        errno.EACCES: "permission denied; write to a directory you can write to.",
        errno.ENOSPC: "the disk is full; free some space there or write to a directory on a "
        "disk with room.",
        errno.EIO: "the device reported an I/O error; check the disk and the path.",
    }
    for code, words in expected.items():
        error = write_error(path, OSError(code, os.strerror(code)))
        assert str(error) == f"cannot write {path}: {words}"


_DRAW = """
import os
from lamina.report.figures.render import warm_up
warm_up()
print(os.environ.get("MPLCONFIGDIR"))
"""


@pytest.mark.parametrize("which", ["MPLCONFIGDIR", "XDG"])
def test_matplotlib_is_quiet_when_its_directories_cannot_be_written(which, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME")}
    env["TMPDIR"] = str(temp)
    if which == "MPLCONFIGDIR":
        env["MPLCONFIGDIR"] = str(blocker / "mpl")
    else:  # a read-only home: matplotlib's config and cache directories under a file
        env["XDG_CONFIG_HOME"] = str(blocker / "config")
        env["XDG_CACHE_HOME"] = str(blocker / "cache")
    done = subprocess.run(
        [sys.executable, "-c", _DRAW], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no "Matplotlib created a temporary cache directory ..."
    assert done.stdout == f"{temp / f'lamina-matplotlib-{os.getuid()}'}\n"


def test_matplotlib_directory_is_left_alone_when_writable(tmp_path, monkeypatch):
    from lamina.report import _style

    monkeypatch.delitem(sys.modules, "matplotlib", raising=False)
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    assert _style.writable_matplotlib_dir() is None
    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "mpl")
    assert (tmp_path / "mpl").is_dir()  # created, as matplotlib would


# ----------------------------------------------------------------- 3. the GGUF bar


def _fake_gguf_load(*args, **kwargs):
    """What transformers' GGUF loader does: tqdm over the tensors, here then a failure."""
    import importlib

    loader = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    for _ in loader.tqdm(range(5), desc="Converting and de-quantizing GGUF tensors..."):
        pass
    raise ValueError("stop here")


@pytest.mark.parametrize("progress", [False, True])
def test_progress_off_silences_the_gguf_conversion_bar(progress, tmp_path, monkeypatch, capfd):
    import transformers

    from lamina.errors import ModelLoadError
    from lamina.sources import gguf as gguf_module

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", _fake_gguf_load)
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF stand-in")
    capfd.readouterr()
    with pytest.raises(ModelLoadError, match="stop here"):
        gguf_module._dequantise_into(tmp_path, gguf, progress=progress)
    err = capfd.readouterr().err
    if progress:
        assert "Converting and de-quantizing GGUF tensors...: 100%|" in err
    else:
        assert err == ""


def test_the_gguf_loader_bar_is_restored_after_the_block():
    import importlib

    from lamina.sources._hf import GGUF_LOADER, progress_bars

    loader = importlib.import_module(GGUF_LOADER)
    before = loader.tqdm
    with progress_bars(False, gguf=True):
        assert loader.tqdm is not before
        buffer = io.StringIO()
        list(loader.tqdm(range(3), desc="inside", file=buffer))
        assert buffer.getvalue() == ""
    assert loader.tqdm is before


# ----------------------------------------------------------------- 4. a short text


def test_middle_window_of_a_text_shorter_than_the_window_is_the_whole_text():
    from lamina.capture.windows import Window, middle_note, plan_windows

    assert plan_windows(1798, "middle", 4096) == [Window(0, 0, 1797, 0, origin=0)]
    assert plan_windows(4097, "middle", 4096) == [Window(0, 0, 4096, 0, origin=0)]
    assert middle_note(1798, 4096, "short.txt") == (
        "short.txt (1,798 tokens) is shorter than the window (4,096): its middle window is the "
        "whole text, every token scored but the last (which has no next token)"
    )
    # longer than the window: the reference study's window from the middle, as before
    assert plan_windows(1798, "middle", 1024) == [Window(0, 899, 1797, 899, origin=899)]
    assert middle_note(1798, 1024, "short.txt") == (
        "short.txt (1,798 tokens) ends 898 tokens after its middle: its middle window has "
        "those 898 tokens, not 1,024 (--windows all scores every token)"
    )
    assert plan_windows(35000, "middle", 1024) == [Window(0, 17500, 18524, 17500, origin=17500)]
    assert middle_note(35000, 1024) is None


def test_a_short_text_is_scored_whole_and_said(models, tmp_path):
    tokenizer = tiny_tokenizer()
    text = _text(tmp_path, n_words=30)
    ids = tokenizer(text.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    n = len(ids)
    assert 2 < n < 128  # shorter than the tiny model's context, the default window
    out = tmp_path / "out"
    code, stdout, stderr = lamina(
        ["run", "--model", models["tiny2"], "--text", text, "--layer", "1", *ANALYSIS, "--out", out]
    )
    assert code == 0, stderr
    note = (
        f"{text} ({n} tokens) is shorter than the window (128): its middle window is the "
        "whole text, every token scored but the last (which has no next token)"
    )
    lines = stdout.splitlines()
    assert lines[1] == f"tokens {n - 1} scored in 1 window(s) (middle, 128 tokens); site " + (
        "attn_out, 2 layers"
    )
    assert lines[2] == f"        note: {note}."
    import pyarrow.parquet as pq

    table = pq.read_table(out / "tokens.parquet")
    np.testing.assert_array_equal(table.column("text_pos").to_numpy(), np.arange(n - 1))
    np.testing.assert_array_equal(table.column("target_id").to_numpy(), ids[1:])
    meta = json.loads(table.schema.metadata[b"lamina"])
    assert meta["windows"]["notes"] == [note]
    results = json.loads((out / "results.json").read_text())
    assert results["part1"]["windows"]["notes"] == [note]


def test_a_table_of_a_short_texts_second_half_is_not_reused():
    """A table made when the middle window of a short text was its second half."""
    from lamina.pipeline.reuse import table_matches
    from lamina.study.options import WindowOptions

    meta = {
        "model": {"spec": "m", "context_length": 128},
        "text": {"sha256": "s"},
        "documents": [{"spec": "short.txt", "n_tokens": 70}],
        "windows": {"mode": "middle", "window": 128, "bos": False, "max_tokens": None},
        "sites": ["attn_out"],
        "n_scored": 35,  # positions 35..69: N // 2 to the end
    }
    match = {"model": "m", "text_sha256": "s", "windows": WindowOptions(), "site": "attn_out"}
    assert table_matches(meta, **match) == (
        False,
        "it scored 35 tokens where the middle windows score 69 (a text shorter than the window "
        "is now scored whole)",
    )
    assert table_matches({**meta, "n_scored": 69}, **match) == (
        True,
        "same model, text and windows",
    )
    long_text = {**meta, "documents": [{"spec": "long.txt", "n_tokens": 1791}], "n_scored": 128}
    assert table_matches(long_text, **match)[0]


# ----------------------------------------------------------------- 5. the summary's notes


def test_summary_prints_part4_diagnostic_note():
    from lamina.report.summary import format_summary

    results = json.loads(GOLDEN.read_text(encoding="utf-8"))
    note = (
        "the Part 4 diagnostics used 19 permutations, not --diagnostic-permutations 5000: "
        "they never use more than --permutations (19)."
    )
    results["part4"]["diagnostic_note"] = note
    lines = format_summary(results).splitlines()
    part4 = next(k for k, line in enumerate(lines) if line.startswith("Part 4 "))
    assert lines[part4 + 1] == f"        note: {note}"
    results["part4"]["diagnostic_note"] = None
    lines = format_summary(results).splitlines()
    assert lines[part4 + 1].startswith("Part 5 ")
    assert not any("note:" in line for line in lines[: part4 + 2])


def test_summary_prints_the_windows_notes():
    from lamina.report.summary import format_summary

    results = json.loads(GOLDEN.read_text(encoding="utf-8"))
    results["part1"]["windows"]["notes"] = ["a (70 tokens) is short", "b (90 tokens) too"]
    lines = format_summary(results).splitlines()
    assert lines[1].startswith("tokens 128 scored in 1 window(s)")
    assert lines[2:4] == [
        "        note: a (70 tokens) is short.",
        "        note: b (90 tokens) too.",
    ]
    assert lines[4].startswith("Part 2 ")


def test_stream_on_a_model_whose_context_is_the_window_says_it_is_all(models, tmp_path):
    """A GPT-2 (absolute positions) whose context is the window: `stream` cannot carry a cache
    past the window, so its plan is `all`'s, and the run says so and how to change it."""
    out = tmp_path / "out"
    code, stdout, stderr = lamina(
        ["run", "--model", models["tiny2"], "--text", _text(tmp_path), "--windows", "stream",
         "--layer", "1", *ANALYSIS, "--out", out]
    )  # fmt: skip
    assert code == 0, stderr
    note = (
        "--windows stream: this model's context (128 positions) holds no 64-token chunk after "
        "a 128-token window, so every segment is one fresh window and each token is fed as "
        "often as with --windows all; a --window of at most 85 (with its default stride) lets "
        "a segment carry its cache"
    )
    assert f"        note: {note}." in stdout.splitlines()
    results = json.loads((out / "results.json").read_text())
    assert results["part1"]["windows"]["notes"] == [note]
