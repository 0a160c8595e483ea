"""`lamina compare` and `lamina run --model A --model B` on tiny random models of different depth.

The comparison's numbers are checked against the runs' own results.json and
against the definitions (relative depth = layer / (layers - 1), the peak is
the largest |Hedges' g|); incomparable runs are refused with one sentence.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re

import pytest

from lamina.cli import main
from study.token_tables import tiny_study_text

ANALYSIS = ["--layer", "1", "--permutations", "99", "--diagnostic-permutations", "19"]


def lamina(argv: list) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def save_tiny_gpt2(folder, n_layers: int, seed: int) -> None:
    import torch
    import transformers

    from tiny_models import tiny_config, tiny_tokenizer

    torch.manual_seed(seed)
    config = tiny_config("gpt2")
    config.n_layer = n_layers
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs of a 2-layer and a 4-layer model, and re-analyses of the 4-layer one."""
    root = tmp_path_factory.mktemp("compare")
    (root / "text.txt").write_text(tiny_study_text(), encoding="utf-8")
    save_tiny_gpt2(root / "tiny2", 2, seed=0)
    save_tiny_gpt2(root / "tiny4", 4, seed=1)
    common = ["--text", root / "text.txt", *ANALYSIS, "--no-progress"]
    code, _, err = lamina(
        [
            "run",
            "--model",
            root / "tiny2",
            "--model",
            root / "tiny4",
            *common,
            "--out",
            root / "both",
        ]
    )
    assert code == 0, err
    table = root / "both" / "tiny4" / "tokens.parquet"
    for name, extra in (
        ("ks", ["--statistic", "ks"]),
        ("bins", ["--bins", "20"]),
        ("fewer", ["--permutations", "49"]),
    ):
        args = ["analyze", table, "--out", root / name, *ANALYSIS, *extra, "--no-progress"]
        code, _, err = lamina(args)
        assert code == 0, err
    return root


def results(directory) -> dict:
    return json.loads((directory / "results.json").read_text())


def test_run_with_two_models_writes_each_and_the_comparison(runs):
    both = runs / "both"
    for name in ("tiny2", "tiny4"):
        assert (both / name / "report.html").is_file()
    for name in ("comparison.json", "comparison.csv", "profiles.csv", "report.html"):
        assert (both / "compare" / name).stat().st_size > 0
    for ext in ("png", "svg"):
        assert (both / "compare" / "figures" / f"compare_profiles.{ext}").stat().st_size > 0
    comparison = json.loads((both / "compare" / "comparison.json").read_text())
    assert [r["dir"] for r in comparison["runs"]] == [str(both / "tiny2"), str(both / "tiny4")]
    assert [r["label"] for r in comparison["runs"]] == ["tiny2", "tiny4"]


def test_models_of_different_depth_share_a_relative_depth_axis(runs):
    comparison = json.loads((runs / "both" / "compare" / "comparison.json").read_text())
    assert comparison["axis"] == "relative_depth"
    assert [s["n_layers"] for s in comparison["series"]] == [2, 4]
    for series, name in zip(comparison["series"], ("tiny2", "tiny4"), strict=True):
        rows = results(runs / "both" / name)["sites"]["profiles"][0]["rows"]
        n = series["n_layers"]
        assert [p["layer"] for p in series["points"]] == list(range(n))
        assert [p["x"] for p in series["points"]] == [k / (n - 1) for k in range(n)]
        for point, row in zip(series["points"], rows, strict=True):
            for key in ("statistic", "pvalue", "pvalue_corrected", "hedges_g", "auroc"):
                assert point[key] == row[key]
            assert point["significant"] == row["significant_run"]
    assert [p["x"] for p in comparison["series"][1]["points"]] == [0.0, 1 / 3, 2 / 3, 1.0]


def test_the_comparison_table_equals_the_runs_numbers(runs):
    with open(runs / "both" / "compare" / "comparison.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [row["label"] for row in table] == ["tiny2", "tiny4"]
    for row, name in zip(table, ("tiny2", "tiny4"), strict=True):
        r = results(runs / "both" / name)
        rows = r["sites"]["profiles"][0]["rows"]
        peak = max(rows, key=lambda x: abs(x["hedges_g"]))
        n = r["part1"]["n_layers"]
        assert int(row["n_layers"]) == n
        assert int(row["n_tests"]) == len(rows)
        assert int(row["n_significant"]) == sum(x["significant_run"] for x in rows)
        assert int(row["peak_layer"]) == peak["layer"]
        assert float(row["peak_relative_depth"]) == peak["layer"] / (n - 1)
        assert float(row["peak_hedges_g"]) == peak["hedges_g"]
        assert float(row["accuracy"]) == r["part2"]["accuracy"]
        assert int(row["n_tokens"]) == r["part1"]["n_tokens_scored"]
    with open(runs / "both" / "compare" / "profiles.csv", newline="") as fh:
        points = list(csv.DictReader(fh))
    assert len(points) == 2 + 4
    assert [float(p["relative_depth"]) for p in points[2:]] == [0.0, 1 / 3, 2 / 3, 1.0]


@pytest.mark.parametrize(
    ("other", "words"),
    [("ks", "statistic ks where"), ("bins", "bins 20 where")],
)
def test_incomparable_runs_are_refused_with_one_sentence(runs, other, words):
    out = runs / f"refused-{other}"
    code, stdout, stderr = lamina(["compare", runs / "both" / "tiny2", runs / other, "--out", out])
    assert code == 2 and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "--reanalyze" in lines[0]
    assert lines[0].startswith("lamina: error: ") and lines[0].endswith(".")
    assert not out.exists()


def test_reanalyze_aligns_the_settings_and_says_so(runs):
    out = runs / "reanalysed"
    code, _, stderr = lamina(
        ["compare", runs / "both" / "tiny2", runs / "ks", "--out", out, "--reanalyze"]
    )
    assert code == 0, stderr
    assert re.search(r"ks: re-analysed from its token table .* statistic ks where", stderr)
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["runs"][1]["reanalysed"].startswith("re-analysed")
    assert comparison["table"][1]["reanalysed"] is True
    # re-analysed with the first run's settings, it is the 4-layer run analysed with them
    expected = results(runs / "both" / "tiny4")["sites"]["profiles"][0]["rows"]
    for point, row in zip(comparison["series"][1]["points"], expected, strict=True):
        assert (point["statistic"], point["pvalue"], point["hedges_g"]) == (
            row["statistic"],
            row["pvalue"],
            row["hedges_g"],
        )
    page = (out / "report.html").read_text()
    assert "re-analysed from its token table" in page


def test_other_differences_are_noted_not_refused(runs):
    out = runs / "noted"
    code, _, stderr = lamina(["compare", runs / "both" / "tiny4", runs / "fewer", "--out", out])
    assert code == 0, stderr
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["axis"] == "layer"  # the same depth: absolute layers
    assert [p["x"] for p in comparison["series"][0]["points"]] == [0, 1, 2, 3]
    assert any("permutations 49 where" in note for note in comparison["notes"])


def test_one_run_is_not_a_comparison(runs):
    code, _, stderr = lamina(["compare", runs / "ks", "--out", runs / "alone"])
    assert code == 2 and "at least two run directories" in stderr


def test_the_comparison_never_replaces_a_compared_runs_report(runs):
    before = (runs / "fewer" / "report.html").read_bytes()
    code, _, stderr = lamina(["compare", runs / "ks", runs / "fewer", "--out", runs / "fewer"])
    assert code == 2 and "is one of the compared runs" in stderr
    assert (runs / "fewer" / "report.html").read_bytes() == before


def test_the_comparison_report_is_self_contained(runs):
    page = (runs / "both" / "compare" / "report.html").read_text()
    assert not re.search(r"""<(script|link|img)[^>]*\s(src|href)=["'](?!data:)""", page)
    assert re.findall(r"<script([^>]*)>", page) == [' type="application/json" id="lamina-data"', ""]
    assert 'id="comparison"' in page and page.count("<tr>") >= 3


def test_every_site_of_a_run_is_its_own_series(runs):
    common = ["--text", runs / "text.txt", *ANALYSIS, "--no-progress"]
    code, stdout, err = lamina(
        ["run", "--model", runs / "tiny2", "--sites", "all", *common, "--out", runs / "sites"]
    )
    assert code == 0, err
    assert "attn_head     " in stdout and "sites  significant" in stdout
    lines = (runs / "sites" / "layers.csv").read_text().splitlines()
    assert len(lines) == 1 + 3 * 2 + 2 * 4  # three sites of 2 layers, 2 layers x 4 heads
    code, _, err = lamina(["compare", runs / "both" / "tiny2", runs / "sites", "--out", runs / "s"])
    assert code == 0, err
    comparison = json.loads((runs / "s" / "comparison.json").read_text())
    assert [(s["run"], s["site"]) for s in comparison["series"]] == [
        (0, "attn_out"),
        (1, "attn_out"),
        (1, "mlp_out"),
        (1, "resid_post"),
    ]
    assert comparison["series"][2]["label"].endswith(" · mlp_out")
    assert any("attn_head" in note for note in comparison["notes"])
