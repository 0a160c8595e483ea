"""`lamina run` end to end on a tiny random-init GPT-2 saved as a local model directory.

The outputs are checked against each other and against the study recomputed
here from ``tokens.parquet`` with numpy and scipy.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import struct

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.spatial.distance
import scipy.stats

from binning import robust_edges
from lamina.cli import main
from lamina.report.figures import DPI, FIGURE_NAMES, FIGURE_SIZES
from study.token_tables import save_tiny_gpt2, tiny_study_text

PERMUTATIONS = 200


def lamina(argv: list) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    save_tiny_gpt2(root / "model")
    (root / "text.txt").write_text(tiny_study_text(), encoding="utf-8")
    argv = [
        "run",
        "--model",
        root / "model",
        "--text",
        root / "text.txt",
        "--layer",
        1,
        "--permutations",
        PERMUTATIONS,
        "--no-progress",
    ]
    code, stdout, stderr = lamina([*argv, "--out", root / "out"])
    assert code == 0, stderr
    return root, argv, stdout, stderr


def test_outputs_are_all_there(tiny):
    root, _, stdout, stderr = tiny
    out = root / "out"
    assert stdout.splitlines()[-1] == f"report: {out / 'report.html'}"
    assert "extracting" in stderr
    for name in ("tokens.parquet", "results.json", "layers.csv", "report.html"):
        assert (out / name).stat().st_size > 0
    for name in FIGURE_NAMES:
        png = (out / "figures" / f"{name}.png").read_bytes()
        w, h = struct.unpack(">II", png[16:24])
        assert (w, h) == tuple(round(x * DPI) for x in FIGURE_SIZES[name])
        assert (out / "figures" / f"{name}.svg").read_bytes().startswith(b"<?xml")


def test_results_match_the_table_recomputed_here(tiny):
    root, _, _, _ = tiny
    out = root / "out"
    results = json.loads((out / "results.json").read_text())
    table = pq.read_table(out / "tokens.parquet")
    meta = json.loads(table.schema.metadata[b"lamina"])
    correct = table.column("correct").to_numpy()
    norms = np.column_stack([table.column(f"attn_out.{k}").to_numpy() for k in range(2)])
    log_norms = np.log(norms.astype(np.float64))

    assert results["part1"]["model"]["fingerprint"] == meta["model"]["fingerprint"]
    assert results["part1"]["text"]["sha256"] == meta["text"]["sha256"]
    assert results["part1"]["windows"]["window"] == 128
    assert results["part2"]["n_tokens"] == table.num_rows == 128
    assert results["part2"]["n_correct"] == int(correct.sum())

    for k, row in enumerate(results["part6"]["layers"]):
        c, i = log_norms[correct, k], log_norms[~correct, k]
        assert row["mean_log_norm_correct"] == pytest.approx(c.mean(), rel=1e-12)
        assert row["difference"] == pytest.approx(c.mean() - i.mean(), rel=1e-9, abs=1e-12)
        edges = robust_edges(log_norms[:, k], 30)  # the default binning
        js = scipy.spatial.distance.jensenshannon(
            np.histogram(c, edges)[0], np.histogram(i, edges)[0]
        )
        assert row["statistic"] == pytest.approx(js**2, rel=1e-9)
        assert row["statistic_bits"] == pytest.approx(js**2 / math.log(2), rel=1e-9)
        u = scipy.stats.mannwhitneyu(c, i).statistic
        assert row["auroc"] == pytest.approx(u / (c.size * i.size))

    p5 = results["part5"]
    null = np.asarray(p5["null_distribution"])
    # one window of 128 tokens: its 128 circular shifts are enumerated (an exact test)
    assert p5["exact"] and null.size == 128 < PERMUTATIONS
    assert p5["pvalue"] == pytest.approx((null >= p5["statistic"]).sum() / 128)
    assert p5["statistic"] == results["part6"]["layers"][1]["statistic"]


def test_layers_csv_agrees_with_results(tiny):
    root, _, _, _ = tiny
    results = json.loads((root / "out" / "results.json").read_text())
    lines = (root / "out" / "layers.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert len(lines) == 1 + len(results["part6"]["layers"])
    for line, row in zip(lines[1:], results["part6"]["layers"], strict=True):
        cells = dict(zip(header, line.split(","), strict=True))
        for key in ("mean_log_norm_correct", "difference", "statistic", "pvalue", "auroc"):
            assert float(cells[key]) == row[key]
        assert cells["compat"] == "none"


def test_console_summary_reports_the_numbers(tiny):
    root, _, stdout, _ = tiny
    results = json.loads((root / "out" / "results.json").read_text())
    p2 = results["part2"]
    assert f"{p2['n_correct']:,} / {p2['n_tokens']:,} correct" in stdout
    assert f"layer 1: mean ln-norm {results['part3']['correct']['mean']:.4f}" in stdout
    rows = [line.split() for line in stdout.splitlines() if line[:5].strip().isdigit()]
    assert [int(r[0]) for r in rows] == [0, 1]
    for r, row in zip(rows, results["part6"]["layers"], strict=True):
        assert float(r[3]) == pytest.approx(row["difference"], abs=1e-4)
    assert "zero-norm vectors: none" in stdout


def without_created_and_timings(text: str) -> list[str]:
    """results.json's lines but ``created`` and the ``timings`` section (the last one)."""
    lines = text.splitlines()
    cut = next(k for k, line in enumerate(lines) if line.startswith('  "timings": '))
    assert lines[cut + 8 :] == ["}"], "timings is the last section"
    return [line for line in lines[:cut] if not line.startswith('  "created": ')]


def test_the_same_command_reuses_the_table(tiny):
    root, argv, _, _ = tiny
    first = (root / "out" / "results.json").read_text()
    table_bytes = (root / "out" / "tokens.parquet").read_bytes()
    code, _, stderr = lamina([*argv, "--out", root / "out"])
    assert code == 0
    assert "re-using" in stderr
    assert (root / "out" / "tokens.parquet").read_bytes() == table_bytes
    second = (root / "out" / "results.json").read_text()
    # byte for byte the same but the creation time and the stage timings (measured anew)
    first_timings = json.loads(first)["timings"]
    second_timings = json.loads(second)["timings"]
    assert first_timings["extraction"] > 0 and second_timings["extraction"] == 0
    assert set(first_timings) == {"load", "extraction", "analysis", "figures", "report", "total"}
    assert without_created_and_timings(first) == without_created_and_timings(second)


def test_analyze_refuses_a_layer_the_model_lacks(tiny):
    root, _, _, _ = tiny
    code, _, stderr = lamina(["analyze", root / "out" / "tokens.parquet", "--layer", 4])
    assert code == 2
    assert "--layer 4 does not exist: the table has attn_out layers 0-1" in stderr


@pytest.mark.slow
def test_two_runs_give_the_same_results_json(tiny, tmp_path, monkeypatch):
    """The same command (relative --out, so the command line is equal) in two directories."""
    _, argv, _, _ = tiny
    texts = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        code, _, stderr = lamina([*argv, "--out", "out"])
        assert code == 0, stderr
        assert "extracting" in stderr
        texts.append((tmp_path / name / "out" / "results.json").read_text())
    assert without_created_and_timings(texts[0]) == without_created_and_timings(texts[1])


def test_the_report_rebuilds_with_its_token_view(tiny, tmp_path):
    """`lamina report` rebuilds the token view from the table; without the table it says so."""
    import re
    import shutil

    root, _, _, _ = tiny
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    page = (out / "report.html").read_text()
    data = json.loads(re.search(r'id="lamina-data">(.*?)</script>', page, re.S).group(1))
    table = pq.read_table(out / "tokens.parquet")
    tokens = data["tokens"]
    assert tokens["available"] and tokens["n_shown"] == table.num_rows
    assert tokens["target"] == table.column("target_id").to_pylist()
    assert tokens["pred"] == table.column("pred_id").to_pylist()
    (out / "report.html").unlink()
    assert lamina(["report", out])[0] == 0
    assert (out / "report.html").read_text() == page
    (out / "tokens.parquet").unlink()
    assert lamina(["report", out])[0] == 0
    assert "The token view is omitted" in (out / "report.html").read_text()
