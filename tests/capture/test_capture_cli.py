"""`lamina sites` and `lamina extract` end to end on a tiny saved model; the embedded model (slow)."""

from __future__ import annotations

import datetime
import hashlib

import numpy as np
import pytest

from lamina import __version__
from lamina.capture import extract
from lamina.cli import main
from lamina.table import layer_matrix, read_table, table_metadata
from tiny_models import CORPUS, N_LAYERS, tiny_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("capture-cli")
    model, tokenizer = tiny_model("llama")
    model.save_pretrained(folder / "tiny-llama")
    tokenizer.save_pretrained(folder / "tiny-llama")
    text = folder / "text.txt"
    text.write_text(CORPUS, encoding="utf-8")
    return folder / "tiny-llama", text


def test_sites_prints_every_layer(saved, capsys):
    model_dir, _ = saved
    assert main(["sites", "--model", str(model_dir), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "llama, 2 layers, 4 attention heads" in out
    assert "model.layers.{layer}.self_attn.o_proj" in out
    for layer in range(N_LAYERS):
        row = f"{layer}      model.layers.{layer}.self_attn.o_proj  model.layers.{layer}.mlp"
        assert row in out


def test_extract_writes_the_table_with_metadata(saved, tmp_path, capsys):
    model_dir, text = saved
    out = tmp_path / "tokens.parquet"
    argv = [
        "extract",
        "--model",
        str(model_dir),
        "--device",
        "cpu",
        "--text",
        str(text),
        "--windows",
        "middle",
        "--window",
        "32",
        "--sites",
        "mlp_out,attn_out",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    table = read_table(out)
    assert table.num_rows == 32
    accuracy = table.column("correct").to_numpy().mean()
    summary = capsys.readouterr().out
    assert f"scored 32 tokens: top-1 accuracy {accuracy:.3f}" in summary
    assert str(out) in summary
    assert layer_matrix(table, "attn_out").shape == (32, N_LAYERS)
    assert layer_matrix(table, "mlp_out").shape == (32, N_LAYERS)
    meta = table_metadata(table)
    assert meta["lamina_version"] == __version__
    assert meta["model"]["architecture"] == "llama"
    assert meta["model"]["spec"] == str(model_dir)
    assert meta["text"]["sha256"] == hashlib.sha256(CORPUS.encode()).hexdigest()
    assert meta["windows"] == {
        "mode": "middle",
        "window": 32,
        "stride": None,
        "bos": False,
        "batch_size": 1,
        "max_tokens": None,
        "n_windows": 1,
    }
    assert meta["sites"] == ["attn_out", "mlp_out"]
    assert meta["site_modules"] == {
        "attn_out": "model.layers.{layer}.self_attn.o_proj",
        "mlp_out": "model.layers.{layer}.mlp",
    }
    assert (meta["n_layers"], meta["n_heads"]) == (N_LAYERS, 4)
    assert meta["command_line"].startswith("lamina extract --model ")
    created = datetime.datetime.fromisoformat(meta["created"])
    assert created.tzinfo is not None


@pytest.mark.slow
def test_embedded_model_middle_of_alice(embedded, alice):
    table = extract(embedded, alice, windows="middle", progress=False)
    assert table.num_rows == 1024
    accuracy = float(np.mean(table.column("correct").to_numpy()))
    assert 0.3 <= accuracy <= 0.7
    norms = layer_matrix(table, "attn_out")
    assert norms.shape == (1024, 30)
    assert np.isfinite(norms).all() and (norms > 0).all()
    assert table_metadata(table)["model"]["fingerprint"] == embedded.report.fingerprint


def test_cli_names_every_site():
    from lamina.capture import SITES
    from lamina.cli import build_parser

    extract = build_parser()._subparsers._group_actions[0].choices["extract"]
    sites_help = next(a.help for a in extract._actions if a.dest == "sites")
    assert ", ".join(SITES) in sites_help
