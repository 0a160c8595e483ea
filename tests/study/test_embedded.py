"""The default study on the embedded SmolLM2-135M-Instruct and Alice (slow: one shared run)."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from lamina.capture import extract
from lamina.cli import main
from lamina.table import layer_matrix, read_table, write_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_run(embedded, alice, tmp_path_factory):
    """`lamina run` on the defaults, re-using a table extracted here with the shared model."""
    out = tmp_path_factory.mktemp("default")
    table = extract(
        embedded, alice, sites=("attn_out",), windows="middle", window=1024, progress=False
    )
    write_table(table, out / "tokens.parquet")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["run", "--out", str(out), "--no-progress"])
    assert code == 0, stderr.getvalue()
    return out, stdout.getvalue(), stderr.getvalue()


def test_the_default_run_reuses_the_matching_table(default_run):
    out, stdout, stderr = default_run
    assert "re-using" in stderr
    assert stdout.splitlines()[-1] == f"report: {out / 'report.html'}"


def test_default_parameters_and_accuracy(default_run):
    out, _, _ = default_run
    results = json.loads((out / "results.json").read_text())
    params = results["parameters"]
    assert (params["site"], params["layer"], params["bins"], params["permutations"]) == (
        "attn_out",
        4,
        30,
        1000,
    )
    assert (params["statistic"], params["correction"], params["seed"]) == ("js", "maxstat", 0)
    assert params["sweep_bins"] == [10, 50]
    p1 = results["part1"]
    assert p1["model"]["architecture"] == "llama"
    assert p1["n_layers"] == 30 and p1["n_tokens_scored"] == 1024
    assert p1["windows"]["mode"] == "middle" and p1["windows"]["window"] == 1024
    assert 0.42 < results["part2"]["accuracy"] < 0.55
    assert len(results["part4"]["js_sweep"]["bins"]) == 41
    assert results["part5"]["n_permutations"] == 1000


def test_results_agree_with_the_table(default_run):
    out, _, _ = default_run
    results = json.loads((out / "results.json").read_text())
    table = read_table(out / "tokens.parquet")
    correct = table.column("correct").to_numpy()
    log_norms = np.log(layer_matrix(table, "attn_out").astype(np.float64))
    assert np.isfinite(log_norms).all()
    assert results["exclusions"]["n_tokens_excluded"] == 0
    csv = (out / "layers.csv").read_text().splitlines()
    header = csv[0].split(",")
    for k, (row, line) in enumerate(zip(results["part6"]["layers"], csv[1:], strict=True)):
        c, i = log_norms[correct, k], log_norms[~correct, k]
        assert row["difference"] == pytest.approx(c.mean() - i.mean(), rel=1e-9, abs=1e-12)
        cells = dict(zip(header, line.split(","), strict=True))
        assert float(cells["difference"]) == row["difference"]
        assert float(cells["pvalue_maxstat"]) == row["pvalue_maxstat"]
        assert row["pvalue_maxstat"] >= row["pvalue"]
    assert (out / "report.html").stat().st_size > 100_000
