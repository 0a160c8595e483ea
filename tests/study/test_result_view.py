"""A StudyResult in a notebook: a short repr, escaped HTML, and pandas frames whose values
are the result's own (``to_dict()``) and ``layers.csv``'s."""

from __future__ import annotations

import io
import json
import math
import re
import sys

import numpy as np
import pytest

from lamina.errors import InputError
from lamina.report.summary import layers_csv
from lamina.study import StudyOptions, StudyResult, analyze_table
from study.token_tables import multi_site_table, separated_norms, token_table

pd = pytest.importorskip("pandas")

N_LAYERS = 24
HOSTILE = "<script>alert('x')</script> & co"


def _table(model_name: str = HOSTILE):
    correct, norms = separated_norms(600, N_LAYERS, shift_layers=(3, 17), seed=3)
    table = token_table(correct, norms)
    meta = json.loads(table.schema.metadata[b"lamina"])
    meta["model"]["name"] = model_name
    return table.replace_schema_metadata({"lamina": json.dumps(meta)})


OPTIONS = StudyOptions(layer=3, permutations=200, diagnostic_permutations=19, seed=0)


@pytest.fixture(scope="module")
def table():
    return _table()


@pytest.fixture(scope="module")
def result(table):
    return analyze_table(table, OPTIONS)


def _same(got, want) -> bool:
    if want is None or (isinstance(want, float) and math.isnan(want)):
        return got is None or (isinstance(got, float) and math.isnan(got))
    return got == want


def test_the_repr_is_a_few_lines_whatever_the_permutations(result):
    text = repr(result)
    assert len(text) < 1000 and text.count("\n") < 12, text
    p2 = result.part2
    assert text.startswith("StudyResult: <script>alert('x')</script> & co on synthetic.txt")
    assert f"{p2.n_tokens:,} scored, {p2.n_correct:,} correct (accuracy {p2.accuracy:.1%})" in text
    n_sig = len(result.part6.significant_layers)
    assert f"{n_sig} of {N_LAYERS}" in text
    assert result.headline[:40] in text.replace("\n  ", " ")


def test_the_repr_stays_short_for_long_names():
    long = analyze_table(_table("m" * 5000), OPTIONS)
    assert len(repr(long)) < 1000


def test_the_html_has_the_headline_and_one_row_per_layer_escaped(result):
    page = result._repr_html_()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in page
    assert page.count("<table") == 1
    body = page.split("<tbody>")[1]
    rows = re.findall(r"<tr>(.*?)</tr>", body)
    assert len(rows) == N_LAYERS
    marked = [
        int(re.findall(r"<td>(.*?)</td>", row)[0]) for row in rows if row.endswith("<td>yes</td>")
    ]
    assert marked == result.part6.significant_layers
    headline = result.headline.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert headline.replace("'", "&#x27;") in page


def test_the_layers_frame_holds_part6s_values(result):
    frame = result.to_pandas("layers")
    rows = result.to_dict()["part6"]["layers"]
    assert len(frame) == N_LAYERS
    assert frame["layer"].tolist() == list(range(N_LAYERS))
    for k, row in enumerate(rows):
        for key, want in row.items():
            if key == "norm_autocorrelation":
                for lag, value in enumerate(want[:5], start=1):
                    assert _same(frame[f"norm_acf_lag{lag}"][k], value), (k, lag)
            else:
                assert _same(frame[key][k], want), (k, key)
    assert set(frame["site"]) == {"attn_out"}
    assert set(frame["statistic_name"]) == {result.part6.statistic_name}


def test_the_layers_frame_uses_layers_csv_names_and_values(result):
    csv = pd.read_csv(io.StringIO(layers_csv(result.to_dict())), keep_default_na=True)
    csv = csv[csv["head"].isna()].reset_index(drop=True)
    frame = result.to_pandas("layers")
    assert set(frame.columns) <= set(csv.columns), set(frame.columns) - set(csv.columns)
    for column in frame.columns:
        got, want = frame[column].tolist(), csv[column].tolist()
        for g, w in zip(got, want, strict=True):
            if isinstance(g, bool) or isinstance(w, bool | np.bool_):
                assert bool(g) == bool(w), column
            elif isinstance(g, str):
                assert g == w, column
            else:
                assert _same(None if g is None else float(g), float(w)), column


def test_the_sites_frame_has_every_sites_rows():
    result = analyze_table(
        multi_site_table(n_tokens=300, n_layers=3, n_heads=2),
        StudyOptions(layer=1, permutations=99, diagnostic_permutations=19, sites=("mlp_out",)),
    )
    frame = result.to_pandas("sites")
    profiles = result.to_dict()["sites"]["profiles"]
    expected = [(p["site"], row) for p in profiles for row in p["rows"]]
    assert len(frame) == len(expected) == 6
    for k, (site, row) in enumerate(expected):
        assert frame["site"][k] == site
        for key in ("layer", "head", "pvalue", "pvalue_corrected_run", "significant_run"):
            assert _same(frame[key][k], row[key]), (k, key)


def test_the_controls_frame_is_part7s(result, table):
    frame = result.to_pandas("controls")
    rows = result.to_dict()["part7"]["layers"]
    assert list(frame.columns) == list(rows[0])
    for k, row in enumerate(rows):
        for key in ("layer", "hedges_g", "pvalue_corrected", "verdict"):
            assert _same(frame[key][k], row[key])
    without = analyze_table(
        table, StudyOptions(layer=3, permutations=99, diagnostic_permutations=19, controls=())
    )
    with pytest.raises(InputError, match="Part 7 did not run"):
        without.to_pandas("controls")


def test_the_tokens_frame_needs_the_table(result, table):
    with pytest.raises(InputError, match="needs the token table"):
        result.to_pandas("tokens")
    frame = result.to_pandas("tokens", table=table)
    assert frame.equals(table.to_pandas())
    with pytest.raises(InputError, match="unknown frame 'rows'"):
        result.to_pandas("rows")


def test_without_pandas_the_frames_say_how_to_install_it(result, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(InputError) as missing:
        result.to_pandas("layers")
    assert "pip install 'lamina[notebook]'" in str(missing.value)


def test_a_result_read_back_shows_itself_the_same(result):
    again = StudyResult.from_dict(json.loads(result.to_json()))
    assert repr(again) == repr(result)
    assert again._repr_html_() == result._repr_html_()
