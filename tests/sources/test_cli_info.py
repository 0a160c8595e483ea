"""``lamina info``: the printed report, and user errors as one line with exit status 2."""

from __future__ import annotations

import pytest

from lamina.cli import main
from lamina.errors import TextLoadError


def _info(checkpoint, text_path) -> list[str]:
    return ["info", "--model", str(checkpoint.folder), "--text", str(text_path), "--device", "cpu"]


def test_info_prints_model_report_and_text_provenance(
    lamina_cache, gpt2_safetensors, tmp_path, capsys
):
    text_path = tmp_path / "story.txt"
    text_path.write_text("alice was beginning to get very tired\n", encoding="utf-8")

    assert main(_info(gpt2_safetensors, text_path)) == 0
    out = capsys.readouterr().out
    n_params = sum(p.numel() for p in gpt2_safetensors.model.parameters())
    assert "tiny-gpt2 (local" in out
    assert "gpt2: 2 layers, hidden size 32, 2 attention heads, context 64 tokens" in out
    assert f"parameters    {n_params:,}\n" in out
    assert "dtype/device  float32 on cpu" in out
    assert f"source        {text_path.resolve()}" in out
    assert "characters    38 (Gutenberg boilerplate: none found)" in out
    # seven words, each one token of the word-level tokenizer
    assert "tokens        7 (tiny-gpt2 tokenizer" in out


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing-text", "does not exist"),
        ("missing-model", "does not exist"),
        ("pickle-only", "--allow-pickle"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(
    lamina_cache, gpt2_safetensors, gpt2_pickle_only, tmp_path, capsys, case, needle
):
    text_path = tmp_path / "story.txt"
    text_path.write_text("alice was here\n", encoding="utf-8")
    argv = {
        "missing-text": _info(gpt2_safetensors, tmp_path / "absent.txt"),
        "missing-model": ["info", "--model", str(tmp_path / "absent"), "--text", str(text_path)],
        "pickle-only": _info(gpt2_pickle_only, text_path),
    }[case]

    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lamina: error: "), captured.err
    assert needle in lines[0]


def test_allow_pickle_flag_loads_the_pickled_checkpoint(
    lamina_cache, gpt2_pickle_only, tmp_path, capsys
):
    text_path = tmp_path / "story.txt"
    text_path.write_text("alice was here\n", encoding="utf-8")
    assert main([*_info(gpt2_pickle_only, text_path), "--allow-pickle"]) == 0
    assert "tokens        3 (tiny-gpt2-pickle tokenizer" in capsys.readouterr().out


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(TextLoadError):
        main(["--debug", "info", "--text", str(tmp_path / "absent.txt")])
