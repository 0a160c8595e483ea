"""``lamina.run_study(model=<object>, tokenizer=..., out=...)`` and the StudyRun it returns.

The run records the model passed in by class, config hash and tensor fingerprint; it
re-uses its token table only for the same weights; the StudyRun shows itself in a few
lines, as HTML with the laminar figure inline, and as data frames.
"""

from __future__ import annotations

import base64
import copy
import json
import re

import pytest
import torch

import lamina
from lamina.errors import InputError
from lamina.pipeline.run_extraction import ExtractionOptions
from lamina.table import read_table
from study.token_tables import tiny_study_text
from tiny_models import tiny_model

OPTIONS = {"layer": 1, "permutations": 99, "diagnostic_permutations": 19, "seed": 0}


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "alice.txt"
    path.write_text(tiny_study_text(), encoding="utf-8")
    return path


def _run(model, tokenizer, text_file, out, **kw):
    return lamina.run_study(
        model=model,
        tokenizer=tokenizer,
        text=str(text_file),
        out=out,
        options=lamina.StudyOptions(**OPTIONS),
        windows=lamina.WindowOptions("all", window=64),
        progress=False,
        **kw,
    )


@pytest.fixture(scope="module")
def first(text_file, tmp_path_factory):
    model, tokenizer = tiny_model("gpt2", seed=0)
    out = tmp_path_factory.mktemp("run") / "out"
    return model, tokenizer, out, _run(model, tokenizer, text_file, out)


def test_the_run_records_the_model_passed_in(first):
    model, tokenizer, out, run = first
    results = json.loads((out / "results.json").read_text())
    recorded = results["provenance"]["model"]
    report = lamina.load_model(model, tokenizer).report
    assert recorded["spec"] == "<GPT2LMHeadModel passed in>"
    assert (recorded["source"], recorded["architecture"]) == ("object", "GPT2LMHeadModel")
    assert recorded["fingerprint"] == report.fingerprint
    assert recorded["config_sha256"] == report.config_sha256
    assert results["part1"]["model"]["fingerprint"] == report.fingerprint
    assert not run.reused_table
    for name in ("tokens.parquet", "results.json", "layers.csv", "report.html"):
        assert (out / name).is_file()


def test_the_table_is_reused_only_for_the_same_weights(first, text_file):
    model, tokenizer, out, _ = first
    notes = []
    again = _run(model, tokenizer, text_file, out, log=notes.append)
    assert again.reused_table, again.reuse_note
    assert notes == [f"re-using {out / 'tokens.parquet'} (same model, text and windows)"]

    other = copy.deepcopy(model)
    with torch.no_grad():
        other.transformer.h[0].attn.c_proj.bias[0] += 1e-3  # one weight of 39,808
    changed = _run(other, tokenizer, text_file, out, log=notes.append)
    assert not changed.reused_table
    assert changed.reuse_note.startswith("it was captured from other weights (fingerprint")
    assert read_table(out / "tokens.parquet").schema.metadata  # the new table replaced it
    recorded = json.loads((out / "results.json").read_text())["provenance"]["model"]
    assert recorded["fingerprint"] == lamina.load_model(other, tokenizer).report.fingerprint


def test_a_run_repr_is_short_and_its_html_shows_figure_and_table(first):
    _, _, out, run = first
    text = repr(run)
    assert text.count("\n") < 15 and len(text) < 1200, text
    assert str(out) in text and "StudyResult: GPT2LMHeadModel" in text

    page = run._repr_html_()
    assert page.count("<table") == 1
    rows = re.findall(r"<tr>", page.split("<tbody>")[1])
    assert len(rows) == run.result.part1.n_layers == 2
    png = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page).group(1)
    figure_file = out / "figures" / "part6_laminar_profile.png"
    assert base64.b64decode(png) == figure_file.read_bytes()


def test_a_run_gives_its_frames(first):
    _, _, out, run = first
    tokens = run.to_pandas("tokens")
    expected = read_table(out / "tokens.parquet").to_pandas()
    assert tokens.equals(expected)
    layers = run.to_pandas("layers")
    assert layers["layer"].tolist() == [0, 1]
    assert layers["pvalue"].tolist() == [r.pvalue for r in run.result.part6.layers]
    figure = run.figure("part5")
    assert type(figure).__name__ == "Figure"


def test_objects_and_specs_do_not_mix(text_file, tmp_path):
    model, tokenizer = tiny_model("gpt2")
    with pytest.raises(InputError, match="brings its own"):
        lamina.run_study(model="smollm2-135m", tokenizer=tokenizer, out=tmp_path / "a")
    with pytest.raises(InputError, match="needs its tokenizer"):
        lamina.run_study(model=model, text=str(text_file), out=tmp_path / "b")
    pytest.importorskip("ray")
    with pytest.raises(InputError, match="runs in this process"):
        _run(model, tokenizer, text_file, tmp_path / "c", extraction=ExtractionOptions("ray"))
    assert not (tmp_path / "c").exists()
