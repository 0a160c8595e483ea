"""``lamina.figure(result, name)``: any of the report's figures as a matplotlib Figure."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import lamina
from lamina.errors import InputError
from lamina.report._style import FIGURE_SIZES, figure_names
from lamina.study import StudyOptions, analyze_table
from study.token_tables import separated_norms, token_table

TESTS = Path(__file__).resolve().parents[1]
OPTIONS = StudyOptions(layer=1, permutations=99, diagnostic_permutations=19, seed=0)


@pytest.fixture(scope="module")
def result():
    correct, norms = separated_norms(400, 6, seed=1)
    return analyze_table(token_table(correct, norms), OPTIONS)


def test_every_figure_of_the_study_by_name_and_alias(result):
    from matplotlib.figure import Figure

    names = figure_names(result.to_dict())
    assert "part7_controls" in names
    for name in names:
        fig = lamina.figure(result, name)
        assert isinstance(fig, Figure)
        assert tuple(fig.get_size_inches()) == FIGURE_SIZES[name]
    six = lamina.figure(result, "part6")
    assert len(six.axes) == 4
    assert [ax.get_title() for ax in six.axes] == [
        ax.get_title() for ax in lamina.figure(result, "part6_laminar_profile").axes
    ]


def test_a_figure_shows_itself_as_png_in_a_notebook(result):
    fig = lamina.figure(result)
    png = fig._repr_png_()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150, metadata={"Software": None})
    assert png == buffer.getvalue()


def test_figures_this_study_lacks_and_unknown_names_are_one_sentence(result):
    with pytest.raises(InputError, match="unknown figure 'part9'"):
        lamina.figure(result, "part9")
    with pytest.raises(InputError, match="no sites_laminar_profiles figure"):
        lamina.figure(result, "sites")
    without = analyze_table(
        token_table(*separated_norms(300, 4, shift_layers=(1,), seed=2)),
        StudyOptions(layer=1, permutations=99, diagnostic_permutations=19, controls=()),
    )
    with pytest.raises(InputError, match="no part7_controls figure"):
        lamina.figure(without, "part7")


def test_a_results_dict_serves_every_figure_but_part2(result):
    results = json.loads(result.to_json())
    assert len(lamina.figure(results, "part6").axes) == 4
    with pytest.raises(InputError, match="Part 2's figure needs the per-token data"):
        lamina.figure(results, "part2")


def test_a_figure_leaves_pyplot_and_the_backend_alone():
    code = (
        "import sys, matplotlib, lamina\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "from study.token_tables import separated_norms, token_table\n"
        "before = str(dict.__getitem__(matplotlib.rcParams, 'backend'))\n"
        "r = lamina.analyze_table(token_table(*separated_norms(200, 3, shift_layers=(1,))),\n"
        "    lamina.StudyOptions(layer=1, permutations=19, diagnostic_permutations=19))\n"
        "lamina.figure(r, 'part6')._repr_png_()\n"
        "after = str(dict.__getitem__(matplotlib.rcParams, 'backend'))\n"
        "print('matplotlib.pyplot' in sys.modules, after == before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
