"""Hostile and damaged files: corrupt weights, NaN weights, tampered tables and results, a
directory given as a table. Each is one sentence and exit 2, or (with --allow-nonfinite) rows
marked and left out, never a wrong answer without complaint."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lamina.capture import extract
from lamina.cli import main
from lamina.errors import CaptureError, ModelLoadError, TableError
from lamina.sources import load_model
from lamina.study import StudyOptions, analyze_table
from lamina.table import read_table
from reliability.faults import GOLDEN, lamina_cli, one_sentence_error
from study.token_tables import save_tiny_gpt2, tiny_study_text
from tiny_models import tiny_loaded

# ----------------------------------------------------------------------------- weights


@pytest.fixture
def tiny_model_dir(tmp_path):
    folder = tmp_path / "tiny-gpt2"
    save_tiny_gpt2(folder)
    return folder


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])


def _header_claims_too_much(path):
    data = path.read_bytes()
    path.write_bytes((len(data) * 2).to_bytes(8, "little") + data[8:])


def _header_not_json(path):
    data = bytearray(path.read_bytes())
    data[8:20] = b"this is not!"
    path.write_bytes(bytes(data))


CORRUPTIONS = {
    "truncated": (_truncate, "is truncated"),
    "empty": (lambda path: path.write_bytes(b""), "is empty"),
    "header too long": (_header_claims_too_much, "is truncated or not safetensors"),
    "header not JSON": (_header_not_json, "has a corrupt header"),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_safetensors_is_one_sentence(kind, tiny_model_dir):
    corrupt, needle = CORRUPTIONS[kind]
    weights = tiny_model_dir / "model.safetensors"
    corrupt(weights)
    with pytest.raises(ModelLoadError) as error:
        load_model(str(tiny_model_dir), device="cpu", progress=False)
    message = str(error.value)
    assert needle in message and str(weights) in message and "\n" not in message


def test_corrupt_safetensors_on_the_command_line(tiny_model_dir, tmp_path, capsys):
    _truncate(tiny_model_dir / "model.safetensors")
    text = tmp_path / "t.txt"
    text.write_text("Alice was beginning to get very tired.")
    code = main(["info", "--model", str(tiny_model_dir), "--text", str(text), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is truncated" in err[0], err


class _Payload:
    """A pickle that, when loaded, would create a file: what a hostile checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_model_files_never_run_code(tiny_model_dir, tmp_path):
    """A pickled checkpoint and a model that ships its own Python code are refused before
    anything of them runs (the marker files they would create never appear)."""
    import pickle

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(tiny_model_dir / "config.json", pickled / "config.json")
    marker = tmp_path / "pickle-ran"
    (pickled / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ModelLoadError, match="--allow-pickle"):
        load_model(str(pickled), device="cpu", progress=False)

    code_marker = tmp_path / "code-ran"
    config = json.loads((tiny_model_dir / "config.json").read_text())
    config.update(model_type="evil", auto_map={"AutoModelForCausalLM": "modeling_evil.Evil"})
    (tiny_model_dir / "config.json").write_text(json.dumps(config))
    (tiny_model_dir / "modeling_evil.py").write_text(f"open({str(code_marker)!r}, 'w')\n")
    with pytest.raises(ModelLoadError, match="--trust-remote-code"):
        load_model(str(tiny_model_dir), device="cpu", progress=False)
    assert not marker.exists() and not code_marker.exists()


def _poisoned(parameter: str, rows=None):
    """The tiny GPT-2 with NaN in ``parameter`` (all of it, or the given rows)."""
    loaded = tiny_loaded("gpt2")
    weight = loaded.model.get_parameter(parameter)
    with torch.no_grad():
        if rows is None:
            weight.fill_(float("nan"))
        else:
            weight[rows] = float("nan")
    return loaded


def test_nan_weights_stop_extraction_naming_the_first_layer_and_site():
    loaded = _poisoned("transformer.h.1.mlp.c_fc.weight")
    text = tiny_study_text(1)
    with pytest.raises(CaptureError) as error:
        extract(loaded, text, sites="attn_out,mlp_out", windows="middle", progress=False)
    message = str(error.value)
    assert "layer 1, site mlp_out" in message and "--allow-nonfinite" in message
    # Only attn_out recorded: layer 1's attention is still finite, the logits are not.
    with pytest.raises(CaptureError, match="in the logits"):
        extract(loaded, text, sites="attn_out", windows="middle", progress=False)


def test_masked_logits_are_not_a_fault():
    """A -inf logit is a masked vocabulary entry (probability 0): extraction goes on."""
    loaded = tiny_loaded("gpt2")

    def mask(module, args, output):
        output[..., :10] = float("-inf")
        return output

    loaded.model.lm_head.register_forward_hook(mask)
    table = extract(
        loaded, tiny_study_text(1), windows="middle", progress=False, allow_nonfinite=True
    )
    assert not np.asarray(table.column("nonfinite")).any()
    assert np.isfinite(np.asarray(table.column("entropy"))).all()


@pytest.mark.slow
def test_nan_weights_on_the_command_line(tmp_path):
    """A saved model whose layer-0 attention weights are NaN: `lamina extract` says so, exit 2."""
    folder = tmp_path / "nan-gpt2"
    save_tiny_gpt2(folder)
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    tensors["transformer.h.0.attn.c_attn.weight"][:] = float("nan")
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    text = tmp_path / "t.txt"
    text.write_text(tiny_study_text(1))
    out = tmp_path / "tokens.parquet"
    result = lamina_cli(
        "extract",
        "--model",
        folder,
        "--text",
        text,
        "--out",
        out,
        "--no-progress",
        "--max-tokens",
        64,
    )
    one_sentence_error(result, "layer 0, site attn_out", "--allow-nonfinite")
    assert not out.exists()


def test_allow_nonfinite_marks_exactly_the_poisoned_rows_and_excludes_them():
    """One token's embedding is NaN: every position of a window that feeds it is NaN (masked
    attention still multiplies its NaN value by a zero weight); other windows are finite."""
    text = tiny_study_text(3)
    text = text[: len(text) // 2] + "Q" + text[len(text) // 2 :]  # "Q" occurs once
    clean = tiny_loaded("gpt2")
    ids = clean.tokenizer(text, add_special_tokens=False)["input_ids"]
    poison = clean.tokenizer.convert_tokens_to_ids("Q")
    assert ids.count(poison) == 1
    loaded = _poisoned("transformer.wte.weight", rows=poison)
    # the tied LM head makes the poisoned token's logit NaN everywhere: untie to keep the
    # effect to positions that see the token
    loaded.model.lm_head.weight = torch.nn.Parameter(
        clean.model.lm_head.weight.detach().clone(), requires_grad=False
    )
    table = extract(
        loaded, text, windows="all", window=96, stride=48, progress=False, allow_nonfinite=True
    )
    columns = table.to_pydict()
    marked = np.asarray(columns["nonfinite"])
    where = ids.index(poison)
    text_pos, window = np.asarray(columns["text_pos"]), np.asarray(columns["window"])
    start = text_pos - np.asarray(columns["ctx_pos"])  # the window's first fed position
    stop = {w: text_pos[window == w].max() + 1 for w in np.unique(window)}  # its end
    expected = (start <= where) & (where < np.array([stop[w] for w in window]))
    np.testing.assert_array_equal(marked, expected)
    assert 0 < marked.sum() < marked.size

    result = analyze_table(
        table,
        StudyOptions(layer=1, permutations=50, diagnostic_permutations=20, sweep_bins=(10, 12)),
    )
    exclusions = result.exclusions
    assert exclusions["n_nonfinite_excluded"] == int(marked.sum())
    assert exclusions["n_tokens_excluded"] == 0  # counted apart from zero norms
    assert result.part2.n_tokens == int((~marked).sum())

    from lamina.report.summary import format_summary

    summary = format_summary(result.to_dict())
    assert f"excluded {int(marked.sum())} token(s) whose logits or norms were NaN" in summary


def test_a_table_with_nonfinite_rows_is_reused_only_when_allowed(tmp_path):
    from lamina.pipeline.run import RunJob, _reusable_table
    from lamina.pipeline.run_extraction import ExtractionOptions
    from lamina.sources import load_corpus
    from lamina.study import WindowOptions
    from lamina.table import write_table

    text_file = tmp_path / "text.txt"
    text_file.write_text(tiny_study_text(1) + "Q\n")
    text = load_corpus(str(text_file))
    loaded = tiny_loaded("gpt2")
    poison = loaded.tokenizer.convert_tokens_to_ids("Q")
    with torch.no_grad():
        loaded.model.transformer.wte.weight[poison] = float("nan")
    table = extract(
        loaded, text, windows="all", window=96, stride=48, progress=False, allow_nonfinite=True
    )
    assert np.asarray(table.column("nonfinite")).any()
    path = tmp_path / "tokens.parquet"
    write_table(table, path)
    windows = WindowOptions(mode="all", window=96, stride=48)

    def job(allow: bool) -> RunJob:
        extraction = ExtractionOptions(allow_nonfinite=allow)
        return RunJob(tmp_path, "tiny-gpt2", text, windows, StudyOptions(layer=1), {}, extraction)

    refused, why = _reusable_table(path, job(False))
    assert refused is None and "NaN or inf outputs" in why
    reused, _ = _reusable_table(path, job(True))
    assert reused is not None and reused.num_rows == table.num_rows


# ----------------------------------------------------------------------------- tables


def _tamper(tmp_path, change):
    """A copy of a table lamina wrote (the golden default), altered by ``change(table, meta)``."""
    table = pq.read_table(GOLDEN / "default" / "tokens.parquet")
    meta = json.loads(table.schema.metadata[b"lamina"])
    table, meta = change(table, meta)
    path = tmp_path / "tampered.parquet"
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    pq.write_table(table.replace_schema_metadata({"lamina": raw}), path)
    return path


def _rename(table, old, new):
    return table.rename_columns([new if n == old else n for n in table.column_names])


def _retype(table, name):
    i = table.column_names.index(name)
    return table.set_column(i, pa.field(name, pa.float64()), table.column(name).cast(pa.float64()))


TAMPERING = {
    "metadata is a list": (lambda t, m: (t, [m]), "is a JSON list, not an object"),
    "metadata is not JSON": (lambda t, m: (t, b"{not json"), "not valid JSON"),
    "fewer layers claimed": (lambda t, m: (t, {**m, "n_layers": 5}), "columns its metadata"),
    "more layers claimed": (
        lambda t, m: (t, {**m, "n_layers": 7}),
        "no column attn_out.6, which its metadata lists",
    ),
    "site renamed": (lambda t, m: (t, {**m, "sites": ["mlp_out"]}), "metadata: sites mlp_out"),
    "column renamed": (lambda t, m: (_rename(t, "attn_out.3", "attn_out.30"), m), "attn_out.30"),
    "column retyped": (lambda t, m: (_retype(t, "attn_out.2"), m), "is double, not float"),
    "rows dropped": (lambda t, m: (t.slice(0, 100), m), "has 100 rows but its metadata"),
    "model not an object": (lambda t, m: (t, {**m, "model": "x"}), "'model' is not an object"),
}


@pytest.mark.parametrize("kind", sorted(TAMPERING))
def test_tampered_table_is_refused_before_analysis(kind, tmp_path):
    change, needle = TAMPERING[kind]
    path = _tamper(tmp_path, change)
    with pytest.raises(TableError) as error:
        read_table(path)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_tampered_table_on_the_command_line(tmp_path, capsys):
    path = _tamper(tmp_path, TAMPERING["fewer layers claimed"][0])
    code = main(["analyze", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "altered or damaged" in err[0], err
    assert not (tmp_path / "out").exists()


def test_analyze_refuses_a_directory(tmp_path, capsys):
    """Two tables of different texts in one folder are never merged."""
    folder = tmp_path / "tables"
    folder.mkdir()
    for case in ("default", "synthetic"):
        shutil.copy(GOLDEN / case / "tokens.parquet", folder / f"{case}.parquet")
    code = main(["analyze", str(folder), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "takes one token table file" in err[0], err
    assert not (tmp_path / "out").exists()
    with pytest.raises(TableError, match="is a directory"):
        read_table(folder)


# ----------------------------------------------------------------------------- results.json


def _results_dir(tmp_path, change):
    out = tmp_path / "out"
    shutil.copytree(GOLDEN / "default", out)
    figures = out / "figures"
    figures.mkdir()
    from lamina.report.figures import FIGURE_NAMES

    for name in FIGURE_NAMES:
        (figures / f"{name}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    results = json.loads((out / "results.json").read_text())
    (out / "results.json").write_text(json.dumps(change(results)))
    return out


RESULTS_TAMPERING = {
    "a section missing": (lambda r: {k: v for k, v in r.items() if k != "part3"}, "lacks part3"),
    "a field missing": (
        lambda r: {**r, "part6": {k: v for k, v in r["part6"].items() if k != "alpha"}},
        "its part6 lacks alpha",
    ),
    "a section of the wrong kind": (lambda r: {**r, "part5": [1, 2]}, "part5 is not an object"),
    "a future version": (lambda r: {**r, "format_version": 99}, "format version 99"),
    "not lamina's": (lambda r: [r], "is not a lamina results file"),
}


@pytest.mark.parametrize("kind", sorted(RESULTS_TAMPERING))
def test_report_refuses_incomplete_or_foreign_results(kind, tmp_path, capsys):
    change, needle = RESULTS_TAMPERING[kind]
    out = _results_dir(tmp_path, change)
    code = main(["report", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (out / "report.html").exists()  # nothing written
