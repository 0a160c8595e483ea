"""Figures, report and output files written by the study (synthetic token tables)."""

from __future__ import annotations

import base64
import json
import re
import struct
import threading
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from lamina.errors import OutputError
from lamina.pipeline import rebuild_report, write_outputs
from lamina.report.figures import DPI, FIGURE_NAMES, FIGURE_SIZES, render_figures
from lamina.report.html import render_report
from lamina.report.summary import format_summary
from lamina.study import StudyOptions, analyze_table
from lamina.study.result import dumps_results, load_results
from study.token_tables import separated_norms, token_table

OPTIONS = StudyOptions(layer=2, permutations=99, diagnostic_permutations=49, sweep_bins=(8, 14))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def result():
    correct, norms = separated_norms(n_tokens=400, n_layers=6, shift_layers=(2, 4))
    return analyze_table(token_table(correct, norms), OPTIONS, created="2000-01-01T00:00:00Z")


@pytest.fixture(scope="module")
def outputs(result, tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    return write_outputs(result, out)


def test_every_output_is_written(outputs):
    out = outputs.out_dir
    names = sorted(p.name for p in (out / "figures").iterdir())
    assert names == sorted(f"{n}.{ext}" for n in FIGURE_NAMES for ext in ("png", "svg"))
    for name in ("results.json", "layers.csv", "report.html"):
        assert (out / name).stat().st_size > 0
    assert not list(out.glob(".*.tmp")) and not list((out / "figures").glob(".*.tmp"))


def test_png_and_svg_have_the_documented_size(outputs):
    for name in FIGURE_NAMES:
        width_in, height_in = FIGURE_SIZES[name]
        png = (outputs.out_dir / "figures" / f"{name}.png").read_bytes()
        assert png_size(png) == (round(width_in * DPI), round(height_in * DPI))
        svg = ET.parse(outputs.out_dir / "figures" / f"{name}.svg").getroot()
        assert svg.get("width") == f"{width_in * 72:g}pt"
        assert svg.get("height") == f"{height_in * 72:g}pt"
        assert len(svg) > 0


def test_figures_are_deterministic(result, outputs):
    """Rendered again in this process alone, they equal the files the two processes wrote."""
    again = render_figures(result, workers=1)
    for name in FIGURE_NAMES:
        for ext in ("png", "svg"):
            assert again[name][ext] == (outputs.out_dir / "figures" / f"{name}.{ext}").read_bytes()


def test_results_json_round_trips(outputs, result):
    text = (outputs.out_dir / "results.json").read_text()
    assert text == dumps_results(result.to_dict())
    data = load_results(outputs.out_dir)
    assert data["format"] == "lamina.study"
    assert data["part5"]["pvalue"] == result.to_dict()["part5"]["pvalue"]
    assert json.loads(text) == data


def test_report_is_self_contained_and_shows_all_parts(outputs):
    page = (outputs.out_dir / "report.html").read_text()
    for k in range(1, 7):
        assert f'<section id="part{k}">' in page
        assert f"Part {k}:" in page
    # one inline script (the interactive views) and its data; nothing loaded from anywhere
    scripts = re.findall(r"<script([^>]*)>", page)
    assert scripts == [' type="application/json" id="lamina-data"', ""]
    assert not re.search(r"""<(script|link|img|iframe)[^>]*\s(src|href)=["'](?!data:)""", page)
    assert not re.search(r"""(src|href)=["']https?:""", page)
    sources = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(sources) == len(FIGURE_NAMES)
    for name, encoded in zip(FIGURE_NAMES, sources, strict=True):
        assert (
            base64.b64decode(encoded) == (outputs.out_dir / "figures" / f"{name}.png").read_bytes()
        )
    results = load_results(outputs.out_dir)
    assert results["headline"] in page.replace("&#39;", "'")
    for row in results["part6"]["layers"]:
        assert f"<td>{row['layer']}</td>" in page


def test_report_rebuilds_identically(outputs):
    before = (outputs.out_dir / "report.html").read_bytes()
    (outputs.out_dir / "report.html").unlink()
    rebuild_report(outputs.out_dir)
    assert (outputs.out_dir / "report.html").read_bytes() == before


def test_report_from_results_alone(result, outputs):
    pngs = {n: (outputs.out_dir / "figures" / f"{n}.png").read_bytes() for n in FIGURE_NAMES}
    page = render_report(load_results(outputs.out_dir), pngs)
    assert page == (outputs.out_dir / "report.html").read_text()


def test_an_output_dir_that_is_a_file_is_refused(result, tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        write_outputs(result, target)
    assert target.read_text() == "x"


def test_notebook_mode_is_said_in_the_figures_and_report(tmp_path):
    correct, norms = separated_norms(n_tokens=200, n_layers=3, shift_layers=(1,))
    windows = {"mode": "middle", "window": 64, "stride": 32, "bos": False}
    table = token_table(correct, norms, windows=windows)
    result = analyze_table(
        table, StudyOptions(layer=1, permutations=49, compat="notebook"), created="x"
    )
    written = write_outputs(result, tmp_path)
    page = written.report.read_text()
    assert "Notebook compatibility mode" in page
    assert "notebook compatibility mode" in result.headline
    svg = (tmp_path / "figures" / "part6_laminar_profile.svg").read_bytes()
    assert b"notebook compatibility" in svg
    header, first = (line.split(",") for line in written.layers.read_text().splitlines()[:2])
    row = dict(zip(header, first, strict=True))
    assert (row["correction"], row["compat"], row["site"]) == ("none", "notebook", "attn_out")
    assert row["controlled_pvalue"] == ""  # the notebook mode has no Part 7
    assert np.isnan(result.part6.layers[0].pvalue_maxstat)
    assert result.to_dict()["part6"]["layers"][0]["pvalue_maxstat"] is None
    # the console summary never calls the notebook's symmetric_KL "JS"
    part4_line = next(
        line for line in format_summary(result.to_dict()).splitlines() if line.startswith("Part 4")
    )
    assert "symmetric_KL (notebook)" in part4_line
    assert " JS " not in part4_line


def test_a_corpus_lists_its_documents_in_results_and_report(result, outputs):
    """Each document's provenance reaches results.json and the report's provenance."""
    import pyarrow as pa

    from lamina.table import table_metadata

    correct, norms = separated_norms(300, 6, seed=3)
    table = token_table(correct, norms)
    documents = [
        {"spec": f"book{k}.txt", "sha256": f"{k}" * 64, "n_chars": 1000 + k, "n_tokens": 150}
        for k in range(2)
    ]
    meta = {**table_metadata(table), "documents": documents}
    table = table.replace_schema_metadata({"lamina": json.dumps(meta)})
    table = table.append_column("doc", pa.array(np.repeat([0, 1], 150).astype(np.int32)))
    corpus = analyze_table(table, OPTIONS, created="2000-01-01T00:00:00Z")
    assert corpus.to_dict()["provenance"]["documents"] == documents
    pngs = {n: (outputs.out_dir / "figures" / f"{n}.png").read_bytes() for n in FIGURE_NAMES}
    page = render_report(json.loads(corpus.to_json()), pngs)
    assert "<td>documents</td><td>2:" in page
    assert "<code>book0.txt</code> (150 tokens" in page and "<code>book1.txt</code>" in page
    # one text: no documents row
    assert "<td>documents</td>" not in (outputs.out_dir / "report.html").read_text()


def _csv_rows(text: str) -> list[dict[str, str]]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))


#: layers.csv's Part 7 columns and the part7 layer field each must equal (written out here,
#: apart from lamina.report.summary's own list).
CONTROLLED_CSV = {
    "controlled_statistic": "statistic",
    "controlled_pvalue": "pvalue",
    "controlled_pvalue_maxstat": "pvalue_maxstat",
    "controlled_pvalue_holm": "pvalue_holm",
    "controlled_pvalue_fdr": "pvalue_fdr",
    "controlled_pvalue_cluster": "pvalue_cluster",
    "controlled_pvalue_corrected": "pvalue_corrected",
    "controlled_difference": "difference",
    "controlled_difference_ci_low": "difference_ci_low",
    "controlled_difference_ci_high": "difference_ci_high",
    "controlled_hedges_g": "hedges_g",
    "controlled_hedges_g_ci_low": "hedges_g_ci_low",
    "controlled_hedges_g_ci_high": "hedges_g_ci_high",
    "odds_ratio_per_sd": "odds_ratio",
    "odds_ratio_ci_low": "odds_ratio_ci_low",
    "odds_ratio_ci_high": "odds_ratio_ci_high",
    "logloss_gain": "logloss_gain",
    "logloss_gain_ci_low": "logloss_gain_ci_low",
    "logloss_gain_ci_high": "logloss_gain_ci_high",
    "auroc_full": "auroc_full",
    "auroc_full_ci_low": "auroc_full_ci_low",
    "auroc_full_ci_high": "auroc_full_ci_high",
}


def test_layers_csv_serial_and_controlled_columns_equal_results_json(outputs):
    results = load_results(outputs.out_dir)
    p6, p7 = results["part6"], results["part7"]
    assert p7 is not None
    rows = _csv_rows(outputs.layers.read_text())
    header = list(rows[0])
    removed = ("auroc_gain", "regression_pvalue", "strata", "score", "disagree")
    assert not [c for c in header if any(word in c for word in removed)]
    primary = [r for r in rows if r["site"] == p6["site"] and r["head"] == ""]
    assert [int(r["layer"]) for r in primary] == [row["layer"] for row in p7["layers"]]
    for cells, row6, row7 in zip(primary, p6["layers"], p7["layers"], strict=True):
        for k in range(5):
            assert float(cells[f"norm_acf_lag{k + 1}"]) == row6["norm_autocorrelation"][k]
        assert float(cells["effective_tokens"]) == row6["effective_tokens"]
        for column, field in CONTROLLED_CSV.items():
            assert float(cells[column]) == row7[field], column
        assert cells["controlled_verdict"] == row7["verdict"]
        assert cells["controlled_significant"] == ("true" if row7["significant"] else "false")
        assert cells["controlled_negligible"] == ("true" if row7["negligible"] else "false")


def test_console_summary_says_the_scheme_and_every_verdict(outputs):
    results = load_results(outputs.out_dir)
    p6, p7 = results["part6"], results["part7"]
    results["part6"]["notes"] = ["A note on the profile."]
    text = format_summary(results)
    assert f"null: {p6['scheme_description']}" in text
    assert f"label autocorrelation at lag 1 {p6['label_autocorrelation'][0]:+.3f}" in text
    assert "note: A note on the profile." in text
    part7 = text[text.index("Part 7") :].splitlines()
    for row in p7["layers"]:
        line = next(line for line in part7 if line.split()[:1] == [str(row["layer"])])
        assert line.endswith(row["verdict"])
        assert f"{row['hedges_g']:+.3f}" in line
        assert f"{1000 * row['logloss_gain']:+.2f}" in line
    assert f"out-of-fold AUROC {p7['regression']['auroc_controls']:.3f}" in text


def test_report_shows_the_scheme_and_the_controlled_table(outputs):
    results = load_results(outputs.out_dir)
    page = (outputs.out_dir / "report.html").read_text()
    assert 'id="part6-serial"' in page
    assert results["part6"]["scheme_description"] in page
    table = page[page.index('<table id="controlled-layers">') :]
    table = table[: table.index("</table>")]
    rows = table.split("<tr")[2:]
    assert len(rows) == len(results["part7"]["layers"])
    for html_row, row in zip(rows, results["part7"]["layers"], strict=True):
        assert f"<td>{row['layer']}</td>" in html_row
        assert row["verdict"] in html_row
        assert f"{row['hedges_g']:+.3f} [" not in html_row  # the interval is on its own line
        assert f"<td>{row['hedges_g']:+.3f}<br>" in html_row
        assert f"{1000 * row['logloss_gain']:+.2f}<br>" in html_row
        assert (' class="sig"' in html_row) == row["significant"]
    assert "within strata" not in page


def test_odds_ratio_ticks_cover_both_sides_of_one(outputs):
    """Panel B labels ticks above 1 when the odds ratios reach above it (and below 1)."""
    import matplotlib

    from lamina.report.figures.controls import figure_part7

    results = load_results(outputs.out_dir)
    for k, row in enumerate(results["part7"]["layers"]):
        centre = 1.25 if k == 0 else 0.8
        row.update(
            odds_ratio=centre, odds_ratio_ci_low=centre * 0.95, odds_ratio_ci_high=centre * 1.05
        )
    with matplotlib.rc_context():
        fig = figure_part7(results)
        fig.canvas.draw()
        ax = fig.axes[1]
        low, high = ax.get_ylim()
        ticks = [t for t in ax.get_yticks() if low <= t <= high]
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert any(t > 1.05 for t in ticks) and any(t < 0.95 for t in ticks)
    assert low <= 0.8 * 0.95 and high >= 1.25 * 1.05
    assert len(labels) >= 3


def test_part7_panel_b_draws_odds_ratios_over_hundreds_of_decades(outputs):
    """Extreme (but finite) odds ratios and intervals give an axis, not an overflow."""
    import matplotlib

    from lamina.report.figures.controls import figure_part7

    results = load_results(outputs.out_dir)
    for row in results["part7"]["layers"]:
        row.update(odds_ratio=2.6e47, odds_ratio_ci_low=8.3e-130, odds_ratio_ci_high=8.1e223)
    with matplotlib.rc_context():
        fig = figure_part7(results)
        fig.canvas.draw()
        low, high = fig.axes[1].get_ylim()
    assert 0 < low <= 8.3e-130 and 8.1e223 <= high < float("inf")


def test_a_failing_figure_stops_the_rendering_child(result, monkeypatch):
    """When a figure this process renders fails, the forked child (which may be blocked
    sending its figures) is stopped and the error raised, instead of waiting forever."""
    import os

    from lamina.report.figures import render

    if not render._can_fork():
        pytest.skip("no fork here")
    parent = os.getpid()
    real = render._render

    def failing(build, formats):
        if os.getpid() == parent:
            raise RuntimeError("this figure failed")
        return real(build, formats)

    monkeypatch.setattr(render, "_render", failing)
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            render.render_figures(result, workers=2)
        except BaseException as exc:  # looked at below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)  # a hang fails the test, not the run
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "render_figures waits forever on its rendering child"
    assert isinstance(outcome.get("error"), RuntimeError)
    assert "this figure failed" in str(outcome["error"])


def _provenance(page: str) -> str:
    section = page[page.index('<section id="provenance">') :]
    return section[: section.index("</section>")]


def test_provenance_shows_windows_sites_and_part7_settings(result, outputs):
    """The windows, the sites analysed and Part 7's settings are in the provenance table;
    an older results.json without them still renders, without those rows."""
    results = load_results(outputs.out_dir)
    prov = _provenance((outputs.out_dir / "report.html").read_text())
    assert "<td>windows</td><td>mode middle, window 400; 1 window</td>" in prov
    assert "<td>sites</td><td>primary <code>attn_out</code>; analysed <code>attn_out</code>" in prov
    assert "<td>null</td><td>scheme shift, series auto</td>" in prov
    controls = ", ".join(f"<code>{c}</code>" for c in results["parameters"]["controls"])
    assert f"<td>Part 7</td><td>controls {controls}; min-effect 0.1</td>" in prov
    older = json.loads(json.dumps(results))
    del older["provenance"]["windows"], older["provenance"]["sites"]
    for key in ("sites", "controls", "scheme", "permute_within", "min_effect"):
        del older["parameters"][key]
    pngs = {n: (outputs.out_dir / "figures" / f"{n}.png").read_bytes() for n in FIGURE_NAMES}
    prov = _provenance(render_report(older, pngs))
    for name in ("windows", "sites", "null", "Part 7"):
        assert f"<td>{name}</td>" not in prov


def test_the_header_timestamp_does_not_wrap(outputs):
    page = (outputs.out_dir / "report.html").read_text()
    assert re.search(r"\.nowrap \{ white-space: nowrap; \}", page)
    header = page[page.index("<header>") : page.index("</header>")]
    assert '<span class="nowrap" id="created">created 2000-01-01T00:00:00Z</span>' in header


def _table_cells(page: str, start: str) -> list[list[str]]:
    """The data rows' cells (tags stripped) of the table that starts at ``start``."""
    table = page[page.index(start) :]
    table = table[: table.index("</table>")]
    rows = [row for row in table.split("<tr")[1:] if "<td" in row]
    return [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
        for r in rows
    ]


def _decimal_counts(cells: list[str]) -> set[int]:
    return {len(c.split(".")[1]) if "." in c else 0 for c in cells}


def test_table_statistics_have_one_number_of_decimals_per_column(outputs):
    """Statistic columns show fixed decimals, so their digits line up (no trailing zeros
    dropped); the prose keeps its significant digits."""
    page = (outputs.out_dir / "report.html").read_text()
    layers = _table_cells(page, '<table id="layers">')
    statistic, null = [row[4] for row in layers], [row[5] for row in layers]
    assert len(_decimal_counts(statistic + null)) == 1, statistic + null
    part4 = page[page.index('<section id="part4">') :]
    divergences = _table_cells(part4, "<table>")
    assert len(divergences) == 4
    assert len(_decimal_counts([c for row in divergences for c in row[1:3]])) == 1, divergences
    sweep = _table_cells(part4, "<summary>JS divergence for every bin count</summary>")
    assert len(sweep) == OPTIONS.sweep_bins[1] - OPTIONS.sweep_bins[0] + 1
    assert len(_decimal_counts([c for row in sweep for c in row[1:4]])) == 1, sweep
    assert _decimal_counts([row[4] for row in sweep]) == {2}
    significant = _decimal_counts(statistic)
    assert significant.pop() >= 3  # the largest value still has four significant digits


def test_a_huge_number_in_a_fixed_decimals_cell_is_short():
    from lamina.report.html import _fmt_fixed

    assert _fmt_fixed(-5.169127970019394e61, 2, True) == "-5.17e+61"
    assert _fmt_fixed(123456.7, 1) == "1.23e+05"
    assert _fmt_fixed(99999.0, 1) == "99999.0"
    assert _fmt_fixed(0.02612, 4) == "0.0261" and _fmt_fixed(None) == "–"
