"""`lamina analyze` and `lamina report`, and the errors `run` and `analyze` report (exit 2)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from lamina.cli import main
from lamina.table import write_table
from study.token_tables import separated_norms, token_table


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    correct, norms = separated_norms(n_tokens=240, n_layers=4, shift_layers=(2,))
    path = tmp_path_factory.mktemp("table") / "tokens.parquet"
    write_table(token_table(correct, norms), path)
    return path


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_analyze_writes_every_output_and_a_summary(table_file, tmp_path, capsys):
    out = tmp_path / "analysis"
    code, stdout, _ = run_cli(
        ["analyze", table_file, "--out", out, "--layer", 2, "--permutations", 99], capsys
    )
    assert code == 0
    lines = stdout.splitlines()
    assert lines[-1] == f"report: {out / 'report.html'}"
    results = json.loads((out / "results.json").read_text())
    assert results["parameters"]["layer"] == 2
    assert results["provenance"]["table"]["path"] == os.path.relpath(table_file, out)
    # the per-layer table: one line per layer, significant layers starred
    rows = {int(line.split()[0]): line for line in lines if line[:5].strip().isdigit()}
    assert sorted(rows) == [0, 1, 2, 3]
    for row in results["part6"]["layers"]:
        assert rows[row["layer"]].endswith(" *") == row["significant"]
        assert f"{row['mean_log_norm_correct']:.4f}" in rows[row["layer"]]
    assert results["part6"]["layers"][2]["significant"]
    assert not (out / "tokens.parquet").exists()

    (out / "report.html").unlink()
    code, stdout, _ = run_cli(["report", out], capsys)
    assert code == 0
    assert stdout.strip() == f"report: {out / 'report.html'}"
    assert (out / "report.html").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layer", 7], "--layer 7 does not exist: the table has attn_out layers 0-3"),
        (["--bins", 1], "--bins 1 is too few"),
        (["--permutations", 0], "--permutations 0 leaves no null distribution"),
        (["--model", "gpt2-large"], "was captured from model 'synthetic', not 'gpt2-large'"),
        (["--layer", 1, "--site", "mlp_out"], "no 'mlp_out' columns"),
        (
            ["--layer", 1, "--compat", "notebook"],
            "--compat notebook needs a table captured with the notebook's window",
        ),
    ],
)
def test_analyze_errors_are_one_line_exit_2_and_write_nothing(
    table_file, tmp_path, capsys, args, message
):
    out = tmp_path / "never"
    code, stdout, stderr = run_cli(["analyze", table_file, "--out", out, *args], capsys)
    assert code == 2
    assert stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("lamina: error: ")
    assert message in stderr
    assert not out.exists()


def test_an_output_directory_that_is_a_file(table_file, tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("keep me")
    code, _, stderr = run_cli(["analyze", table_file, "--out", target], capsys)
    assert code == 2
    assert "is a file, not a directory" in stderr
    assert target.read_text() == "keep me"
    code, _, stderr = run_cli(["run", "--out", target, "--model", "nowhere"], capsys)
    assert code == 2
    assert "is a file, not a directory" in stderr


def test_a_class_with_fewer_than_two_tokens(tmp_path, capsys):
    rng = np.random.default_rng(1)
    correct = np.zeros(40, dtype=bool)
    correct[0] = True
    path = tmp_path / "tokens.parquet"
    write_table(token_table(correct, rng.random((40, 3)) + 0.5), path)
    code, _, stderr = run_cli(["analyze", path, "--layer", 1], capsys)
    assert code == 2
    assert "only 1 token(s) were predicted correctly" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.parquet"]


def test_report_without_results(tmp_path, capsys):
    code, _, stderr = run_cli(["report", tmp_path], capsys)
    assert code == 2
    assert "results.json does not exist" in stderr


def test_run_option_errors_come_before_any_loading(tmp_path, capsys):
    for args, message in (
        (["--bins", 1], "--bins 1 is too few"),
        (["--permutations", 0], "--permutations 0"),
        (["--compat", "notebook", "--windows", "all"], "--compat notebook uses the reference"),
        (["--sweep-bins", 9, 3], "--sweep-bins 9 3"),
    ):
        code, _, stderr = run_cli(["run", "--model", "nowhere", "--out", tmp_path, *args], capsys)
        assert code == 2, args
        assert message in stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_primary_site_is_rejected_before_any_loading(tmp_path, capsys):
    code, stdout, stderr = run_cli(
        ["run", "--model", "nowhere", "--out", tmp_path, "--site", "foo"], capsys
    )
    assert code == 2
    assert stdout == ""
    assert stderr == (
        "lamina: error: --site 'foo' is unknown: use one of attn_out, mlp_out, resid_post.\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_clamped_diagnostic_permutations_are_stated(table_file, tmp_path, capsys):
    argv = ["analyze", table_file, "--layer", 2, "--sweep-bins", 8, 9]
    out = tmp_path / "clamped"
    code, _, _ = run_cli(
        [*argv, "--out", out, "--permutations", 19, "--diagnostic-permutations", 5000], capsys
    )
    assert code == 0
    part4 = json.loads((out / "results.json").read_text())["part4"]
    assert part4["diagnostic_permutations"] == 19
    assert part4["diagnostic_note"] == (
        "the Part 4 diagnostics used 19 permutations, not --diagnostic-permutations 5000: "
        "they never use more than --permutations (19)."
    )
    out = tmp_path / "as_asked"
    code, _, _ = run_cli(
        [*argv, "--out", out, "--permutations", 19, "--diagnostic-permutations", 19], capsys
    )
    assert code == 0
    part4 = json.loads((out / "results.json").read_text())["part4"]
    assert part4["diagnostic_permutations"] == 19
    assert part4["diagnostic_note"] is None


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "attn_out.2",
            "layer_2",
            "has no column attn_out.2, which its metadata lists (metadata: sites attn_out, "
            "4 layers), but has layer_2 instead; give a renamed column its name back, or "
            "re-create the file with `lamina extract`.",
        ),
        (
            "correct",
            "is_correct",
            "lacks the token-table column correct; give a renamed column its name back, or "
            "re-create the file with `lamina extract`.",
        ),
    ],
)
def test_a_renamed_column_is_named_in_one_sentence(table_file, tmp_path, capsys, old, new, message):
    import pyarrow.parquet as pq

    table = pq.read_table(table_file)
    renamed = table.rename_columns([new if n == old else n for n in table.column_names])
    path = tmp_path / "renamed.parquet"
    pq.write_table(renamed.replace_schema_metadata(table.schema.metadata), path)
    code, stdout, stderr = run_cli(["analyze", path, "--out", tmp_path / "never"], capsys)
    assert code == 2
    assert stdout == ""
    assert stderr == f"lamina: error: {path} {message}\n"
    assert not (tmp_path / "never").exists()


def test_a_missing_table_is_refused_before_the_heavy_imports(tmp_path):
    import subprocess
    import sys

    missing = tmp_path / "missing.parquet"
    child = (
        "import sys\n"
        "from lamina.cli import main\n"
        f"code = main(['analyze', {str(missing)!r}])\n"
        "print(code, sorted(m for m in ('torch', 'matplotlib', 'scipy') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout == "2 []\n"
    assert done.stderr == (
        f"lamina: error: no token table at {missing}; create one with "
        f"`lamina extract --out {missing}`.\n"
    )


def test_shared_options_are_accepted_by_every_command_they_apply_to(table_file, tmp_path, capsys):
    out = tmp_path / "shared"
    argv = ["analyze", table_file, "--out", out, "--layer", 2, "--permutations", 49]
    # --no-progress and --debug after the command, as for run and extract
    code, _, _ = run_cli([*argv, "--no-progress", "--debug"], capsys)
    assert code == 0
    first = json.loads((out / "results.json").read_text())
    # --debug before the command too, with the same numbers
    code, _, _ = run_cli(["--debug", *argv], capsys)
    assert code == 0
    again = json.loads((out / "results.json").read_text())
    assert again["part6"] == first["part6"]
    # --debug turns the one-sentence error into the traceback
    with pytest.raises(Exception, match="--layer 9 does not exist"):
        main([str(a) for a in [*argv[:-4], "--layer", 9, "--debug"]])


def test_compat_seed_is_the_notebook_mode_under_its_older_name(table_file, tmp_path, capsys):
    code, _, err = run_cli(
        ["analyze", table_file, "--out", tmp_path, "--layer", 2, "--compat", "seed"], capsys
    )
    # the synthetic table was not captured as the notebook did: refused, naming the mode
    assert code == 2
    assert "--compat notebook needs a table captured with the notebook's window" in err
