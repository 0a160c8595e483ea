"""``lamina precision`` on a tiny GPT-2: both runs complete, precision.json is the agreement of
their own tables, the agreement is remembered for ``--dtype auto``, bad dtypes are refused."""

from __future__ import annotations

import json

import pytest
from markupsafe import escape

from lamina.cli import main
from lamina.sources import cpu_precision as cp
from lamina.sources import load_model
from lamina.study import StudyOptions, analyze_table
from lamina.study.precision_agreement import precision_agreement
from lamina.table import read_table
from study.token_tables import save_tiny_gpt2, tiny_study_text


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    save_tiny_gpt2(root / "model")
    (root / "text.txt").write_text(tiny_study_text(3), encoding="utf-8")
    cache = root / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LAMINA_CACHE", str(cache))
        code = main([
            "precision", "--model", str(root / "model"), "--text", str(root / "text.txt"),
            "--window", "64", "--windows", "all", "--layer", "1", "--permutations", "99",
            "--diagnostic-permutations", "19", "--out", str(root / "out"), "--no-progress",
        ])  # fmt: skip
    assert code == 0
    return root


def test_both_runs_and_their_agreement(checked, capsys):
    out = checked / "out"
    agreement = json.loads((out / "precision.json").read_text())
    tables = {d: read_table(out / d / "tokens.parquet") for d in ("float32", "bfloat16")}
    for name, table in tables.items():
        meta = json.loads(table.schema.metadata[b"lamina"])
        assert meta["model"]["dtype"] == name
        results = json.loads((out / name / "results.json").read_text())
        assert results["part1"]["model"]["dtype"] == name
        assert (out / name / "layers.csv").read_text().splitlines()[1].endswith(f",{name}")
        if name == "float32":  # an explicit dtype: no reason to give
            assert "dtype_reason" not in results["part1"]["model"]
    parameters = json.loads((out / "float32" / "results.json").read_text())["parameters"]
    options = StudyOptions(layer=parameters["layer"], permutations=99, diagnostic_permutations=19)
    again = precision_agreement(
        tables["float32"],
        tables["bfloat16"],
        analyze_table(tables["float32"], options),
        analyze_table(tables["bfloat16"], options),
    )
    for key in ("label_agreement", "prediction_agreement", "sites", "verdicts", "holds"):
        assert agreement[key] == again[key], key
    assert agreement["model"]["fingerprint"].startswith("sha256")
    assert set(agreement["extraction_seconds"]) == {"float32", "bfloat16"}
    checked_on = agreement["checked_on"]
    assert checked_on["n_scored"] == tables["bfloat16"].num_rows
    assert checked_on["windows"] == "all" and checked_on["text"] == meta["text"]["spec"]


def test_auto_on_a_cpu_follows_the_recorded_agreement(checked, monkeypatch):
    monkeypatch.setenv("LAMINA_CACHE", str(checked / "cache"))
    agreement = json.loads((checked / "out" / "precision.json").read_text())
    monkeypatch.setattr(cp, "native_flags", lambda flags=None: ["avx512_bf16"])
    monkeypatch.setattr(cp, "machine_speedup", lambda: {"speedup": 2.5})
    loaded = load_model(str(checked / "model"), device="cpu", dtype="auto", progress=False)
    expected = "bfloat16" if agreement["holds"] else "float32"
    assert loaded.report.dtype == expected
    assert loaded.report.dtype_reason.startswith(f"auto: {expected}")
    assert next(loaded.model.parameters()).dtype.__repr__() == f"torch.{expected}"
    # a run records the dtype auto chose and why, in results.json and the report
    out = checked / "auto-run"
    assert main([
        "run", "--model", str(checked / "model"), "--text", str(checked / "text.txt"),
        "--window", "64", "--layer", "1", "--permutations", "19", "--diagnostic-permutations",
        "19", "--device", "cpu", "--out", str(out), "--no-progress",
    ]) == 0  # fmt: skip
    model = json.loads((out / "results.json").read_text())["part1"]["model"]
    assert model["dtype"] == expected and model["dtype_reason"] == loaded.report.dtype_reason
    assert str(escape(model["dtype_reason"])) in (out / "report.html").read_text()  # as jinja
    # an explicit dtype is what was asked, with no reason
    plain = load_model(str(checked / "model"), device="cpu", dtype="float32", progress=False)
    assert plain.report.dtype == "float32" and "dtype_reason" not in plain.report.to_dict()


def test_the_python_api_gives_the_same_agreement(checked, tmp_path, monkeypatch):
    import shutil

    import lamina
    from lamina.errors import InputError
    from lamina.study import WindowOptions

    monkeypatch.setenv("LAMINA_CACHE", str(checked / "cache"))
    shutil.copytree(checked / "out", tmp_path / "out")  # the tables are re-used
    check = lamina.check_precision(
        str(checked / "model"),
        str(checked / "text.txt"),
        tmp_path / "out",
        options=StudyOptions(layer=1, permutations=99, diagnostic_permutations=19),
        windows=WindowOptions(mode="all", window=64),
        progress=False,
    )
    assert all(run.reused_table for run in check.runs.values())
    cli = json.loads((checked / "out" / "precision.json").read_text())
    for key in ("label_agreement", "prediction_agreement", "sites", "verdicts", "holds"):
        assert check.agreement[key] == cli[key], key
    assert json.loads(check.path.read_text())["holds"] == cli["holds"]
    assert "labels agree" in repr(check) and str(check.path) in repr(check)
    with pytest.raises(InputError, match="give its spec"):
        lamina.check_precision(object(), out=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_float32_is_not_a_half_precision(tmp_path, capsys):
    code = main(["precision", "--dtype", "float32", "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "compares float32 with a half precision: give --dtype bfloat16" in err
