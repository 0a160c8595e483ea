"""`lamina compare` on two runs of the embedded SmolLM2: the default window and every window (slow).

The every-window run is capped with ``max_tokens`` so the test stays short; the
comparison is the same as with the whole book (``--windows all``), only smaller.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json

import pytest

from lamina.capture import extract
from lamina.cli import main
from lamina.table import write_table

pytestmark = pytest.mark.slow

ANALYSIS = ["--permutations", "300", "--diagnostic-permutations", "20", "--no-progress"]


def lamina(argv: list) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def two_runs(embedded, alice, tmp_path_factory):
    root = tmp_path_factory.mktemp("embedded-compare")
    tables = {
        "middle": (extract(embedded, alice, windows="middle", window=1024, progress=False), []),
        "all": (
            extract(embedded, alice, windows="all", max_tokens=2048, progress=False),
            ["--windows", "all", "--max-tokens", "2048"],
        ),
    }
    for name, (table, windows) in tables.items():
        write_table(table, root / name / "tokens.parquet")
        code, _, err = lamina(["run", "--out", root / name, *windows, *ANALYSIS])
        assert code == 0 and "re-using" in err, err
    code, _, err = lamina(["compare", root / "middle", root / "all", "--out", root / "compare"])
    assert code == 0, err
    return root


def test_same_model_same_axis_windows_tell_the_runs_apart(two_runs):
    comparison = json.loads((two_runs / "compare" / "comparison.json").read_text())
    assert comparison["axis"] == "layer"
    assert [r["label"] for r in comparison["runs"]] == [
        "middle windows, 1,024 tokens",
        "all windows, 2,048 tokens",
    ]
    for series, name in zip(comparison["series"], ("middle", "all"), strict=True):
        results = json.loads((two_runs / name / "results.json").read_text())
        rows = results["sites"]["profiles"][0]["rows"]
        assert [p["x"] for p in series["points"]] == list(range(30))
        assert [p["relative_depth"] for p in series["points"]] == [k / 29 for k in range(30)]
        assert [p["hedges_g"] for p in series["points"]] == [r["hedges_g"] for r in rows]
        assert [p["significant"] for p in series["points"]] == [r["significant_run"] for r in rows]
    with open(two_runs / "compare" / "comparison.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    for row, name in zip(table, ("middle", "all"), strict=True):
        results = json.loads((two_runs / name / "results.json").read_text())
        rows = results["part6"]["layers"]
        peak = max(rows, key=lambda r: abs(r["hedges_g"]))
        assert int(row["peak_layer"]) == peak["layer"]
        assert float(row["peak_hedges_g"]) == peak["hedges_g"]
        assert int(row["n_significant"]) == results["part6"]["n_significant"]
        assert int(row["n_tokens"]) == {"middle": 1024, "all": 2048}[name]


def test_a_run_with_another_statistic_is_refused_then_reanalysed(two_runs):
    code, _, err = lamina(
        [
            "analyze",
            two_runs / "all" / "tokens.parquet",
            "--out",
            two_runs / "ks",
            "--statistic",
            "ks",
            *ANALYSIS,
        ]
    )
    assert code == 0, err
    code, _, err = lamina(
        ["compare", two_runs / "middle", two_runs / "ks", "--out", two_runs / "no"]
    )
    assert code == 2 and "statistic ks where" in err and len(err.strip().splitlines()) == 1
    code, _, err = lamina(
        ["compare", two_runs / "middle", two_runs / "ks", "--out", two_runs / "yes", "--reanalyze"]
    )
    assert code == 0 and "re-analysed" in err
    comparison = json.loads((two_runs / "yes" / "comparison.json").read_text())
    expected = json.loads((two_runs / "all" / "results.json").read_text())["part6"]["layers"]
    assert [p["statistic"] for p in comparison["series"][1]["points"]] == [
        r["statistic"] for r in expected
    ]
