"""Bad input gives one clear LaminaError before any forward pass, and no output file."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import transformers

from lamina.capture import extract, parse_site_templates, resolve_sites
from lamina.cli import main
from lamina.errors import CaptureError, InputError
from tiny_models import CORPUS, tiny_loaded, tiny_model


@pytest.fixture(scope="module")
def gpt2():
    return tiny_loaded("gpt2")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"window": 129}, CaptureError, "longer than the model's context of 128 tokens"),
        ({"window": 128, "bos": True}, CaptureError, "at most 127"),
        ({"sites": "attn_out,attn_outs"}, CaptureError, "unknown site 'attn_outs'"),
        ({"sites": ""}, CaptureError, "no site given"),
        ({"window": 16, "stride": 17}, InputError, "stride 17 is longer than the window 16"),
        ({"batch_size": 0}, InputError, "--batch-size 0 must be a positive number"),
        ({"windows": "first"}, InputError, "--windows .first. is unknown"),
        ({"site_template": "transformer.h.attn.c_proj"}, CaptureError, "must contain"),
        ({"site_template": "transformer.h.{layer}.attn.proj"}, CaptureError, "attn.c_proj"),
        ({"site_template": "bogus=transformer.h.{layer}"}, CaptureError, "unknown site 'bogus'"),
    ],
)
def test_bad_options(gpt2, kwargs, error, match):
    with pytest.raises(error, match=match):
        extract(gpt2, CORPUS, progress=False, **kwargs)


@pytest.mark.parametrize("text", ["", "A"])
def test_text_shorter_than_two_tokens(gpt2, text):
    with pytest.raises(InputError, match="at least two"):
        extract(gpt2, text, progress=False)


def test_bos_needs_a_bos_token(gpt2):
    without_bos = transformers.PreTrainedTokenizerFast(
        tokenizer_object=gpt2.tokenizer.backend_tokenizer
    )
    assert without_bos.bos_token_id is None
    with pytest.raises(CaptureError, match="no BOS token"):
        extract(dataclasses.replace(gpt2, tokenizer=without_bos), CORPUS, bos=True, progress=False)


def test_site_templates_name_modules_explicitly(gpt2):
    resolved = resolve_sites(
        gpt2.model,
        ["attn_out", "mlp_out", "attn_head"],
        ["transformer.h.{layer}.attn.c_proj", "mlp_out=transformer.h.{layer}.mlp.c_proj"],
    )
    assert resolved.templates == {
        "attn_out": "transformer.h.{layer}.attn.c_proj",
        "mlp_out": "transformer.h.{layer}.mlp.c_proj",
        "attn_head": "transformer.h.{layer}.attn.c_proj",
    }
    assert resolved.source == {
        "attn_out": "template",
        "mlp_out": "template",
        "attn_head": "template",
    }
    assert parse_site_templates({"attn_head": "a.{layer}.b"}) == {"attn_out": "a.{layer}.b"}


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mixing = torch.nn.Linear(8, 8)
        self.update = torch.nn.Linear(8, 8)


class _Mystery(torch.nn.Module):
    """A decoder whose attention module has none of the usual names."""

    def __init__(self):
        super().__init__()
        self.config = transformers.PretrainedConfig(
            num_hidden_layers=2, hidden_size=8, num_attention_heads=2
        )
        self.blocks = torch.nn.ModuleList([_Block(), _Block()])


def test_discovery_failure_lists_candidate_modules():
    with pytest.raises(CaptureError, match=r"blocks\.\{layer\}\.mixing, blocks\.\{layer\}\.update"):
        resolve_sites(_Mystery(), ["attn_out"])
    resolved = resolve_sites(_Mystery(), ["attn_out", "resid_post"], "blocks.{layer}.mixing")
    assert resolved.module_paths("attn_out") == ["blocks.0.mixing", "blocks.1.mixing"]
    assert resolved.module_paths("resid_post") == ["blocks.0", "blocks.1"]
    assert resolved.source == {"attn_out": "template", "resid_post": "discovery"}


def test_a_module_that_is_not_called_is_an_error():
    loaded = tiny_loaded("gpt2")
    for block in loaded.model.transformer.h:
        block.add_module("unused", torch.nn.Linear(32, 32))
    with pytest.raises(CaptureError, match=r"transformer\.h\.0\.unused .* was not called"):
        extract(
            loaded,
            CORPUS[:100],
            sites="mlp_out",
            site_template="mlp_out=transformer.h.{layer}.unused",
            progress=False,
        )


def _saved_tiny_gpt2(tmp_path):
    """A tiny random GPT-2 saved as a model directory the CLI can load."""
    model, tokenizer = tiny_model("gpt2")
    model_dir = tmp_path / "tiny-gpt2"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


def test_cli_errors_leave_no_output_file(tmp_path, capsys):
    model_dir = _saved_tiny_gpt2(tmp_path)
    text = tmp_path / "text.txt"
    text.write_text(CORPUS, encoding="utf-8")
    out = tmp_path / "tokens.parquet"
    common = ["extract", "--model", str(model_dir), "--text", str(text), "--out", str(out)]
    for bad, message in [
        (["--window", "1000"], "longer than the model's context of 128 tokens"),
        (["--sites", "attn_outs"], "unknown site 'attn_outs'"),
        (["--window", "8", "--stride", "9"], "stride 9 is longer than the window 8"),
    ]:
        assert main([*common, *bad]) == 2
        assert message in capsys.readouterr().err
        assert list(tmp_path.glob("tokens.parquet*")) == []
        assert list(tmp_path.glob(".tokens.parquet*")) == []
    short = tmp_path / "short.txt"
    short.write_text("A", encoding="utf-8")
    assert main([*common[:3], "--text", str(short), "--out", str(out)]) == 2
    assert "at least two" in capsys.readouterr().err
    assert not out.exists()


def test_extract_never_overwrites_its_input_or_a_file_it_did_not_write(tmp_path, capsys):
    model_dir = _saved_tiny_gpt2(tmp_path)
    precious = tmp_path / "precious.txt"
    precious.write_text(CORPUS, encoding="utf-8")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes", encoding="utf-8")
    common = ["extract", "--model", str(model_dir), "--text", str(precious), "--window", "16"]
    assert main([*common, "--out", str(precious)]) == 2
    assert "is an input text" in capsys.readouterr().err
    assert precious.read_text(encoding="utf-8") == CORPUS
    assert main([*common, "--out", str(notes)]) == 2
    assert "is not a lamina token table" in capsys.readouterr().err
    assert notes.read_text(encoding="utf-8") == "my notes"
    # a token table lamina wrote is replaced, as before
    out = tmp_path / "tokens.parquet"
    assert main([*common, "--out", str(out)]) == 0
    assert main([*common, "--out", str(out)]) == 0
    assert not list(tmp_path.glob(".tokens.parquet*"))
