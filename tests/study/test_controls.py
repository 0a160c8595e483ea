"""Part 7: validation on synthetic confounds, and the part's outputs from a token table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lamina.errors import InputError
from lamina.study import StudyOptions, analyze_table
from lamina.study.parts.controls import controls
from lamina.study.parts.profile import all_layers_test, laminar_profile
from lamina.study.prepare import prepare_table
from study.token_tables import token_table

ALPHA = 0.05


def confounded(rng, n=300, n_layers=5, planted=None, shift=0.5):
    """A table where the norms and correctness depend on ctx_pos only (and, with
    ``planted``, the norm of that layer also on correctness)."""
    ctx = rng.integers(0, 256, n)
    t = ctx / 255
    correct = rng.random(n) < 0.15 + 0.6 * t
    log_norms = 2.0 * t[:, None] + rng.normal(0, 0.5, (n, n_layers)) + 1.0
    if planted is not None:
        log_norms[correct, planted] += shift
    return token_table(correct, np.exp(log_norms), ctx_pos=ctx, seed=int(rng.integers(1 << 30)))


def part7(table, **options):
    opts = StudyOptions(**{"controls": ("ctx_pos",), "bins": 10, **options})
    data = prepare_table(table, opts)
    perm = all_layers_test(data, opts)
    return perm, controls(laminar_profile(perm, data, opts), data, opts)


@pytest.mark.slow
def test_controls_keep_the_family_wise_error_under_a_pure_confound():
    # 300 tables; Monte-Carlo SE of a rate near 0.05 is sqrt(0.05 * 0.95 / 300) = 0.0126
    rng = np.random.default_rng(0)
    n_tables = 300
    raw_share, family_wise = [], []
    for _ in range(n_tables):
        perm, record = part7(confounded(rng), permutations=99)
        raw_share.append(np.mean(perm.pvalue_maxstat <= ALPHA))
        family_wise.append(record.n_significant > 0)
    se = math.sqrt(ALPHA * (1 - ALPHA) / n_tables)
    assert np.mean(raw_share) > 0.7  # the raw test rejects most layers
    assert np.mean(family_wise) <= ALPHA + 2 * se  # Part 7's one test stays at alpha


def test_a_planted_direct_effect_on_top_of_the_confound_is_found_at_that_layer_only():
    rng = np.random.default_rng(1)
    table = confounded(rng, n=800, n_layers=6, planted=3, shift=0.45)
    perm, record = part7(table, permutations=999)
    assert (perm.pvalue_maxstat <= ALPHA).sum() >= 5  # raw: the confound everywhere
    assert record.significant_layers == [3]
    row = record.layers[3]
    # the planted effect: 0.45 in log-norm, noise SD 0.5 -> g = 0.9
    assert row.difference_ci_low < 0.45 < row.difference_ci_high
    assert row.hedges_g > 0.6 and row.odds_ratio > 1 and row.statistic > 0
    assert row.verdict == "significant after controls"
    assert record.layers[0].verdict in (
        "explained by the controls",
        "not detected after the controls",
    )
    assert record.layers[0].difference_ci_low < 0 < record.layers[0].difference_ci_high


def test_an_effect_of_either_sign_is_found_alike():
    rng = np.random.default_rng(11)
    table_up = confounded(rng, n=600, n_layers=4, planted=2, shift=0.3)
    rng = np.random.default_rng(11)
    table_down = confounded(rng, n=600, n_layers=4, planted=2, shift=-0.3)
    _, up = part7(table_up, permutations=499, layer=2)
    _, down = part7(table_down, permutations=499, layer=2)
    assert up.significant_layers == down.significant_layers == [2]
    assert up.layers[2].statistic > 0 > down.layers[2].statistic
    # the test is centred: the null of the planted layer straddles 0 in both
    assert up.layers[2].pvalue == pytest.approx(down.layers[2].pvalue, abs=0.01)


def test_part7_from_a_table_alone_reports_balance_adjustment_and_sources():
    rng = np.random.default_rng(2)
    table = confounded(rng, n=400)
    result = analyze_table(table, StudyOptions(permutations=199))
    p7 = result.to_dict()["part7"]
    assert p7["controls"] == ["ctx_pos", "target_chars", "target_freq", "input_is_first"]
    assert p7["controls_requested"] == [
        "ctx_pos",
        "target_chars",
        "target_freq",
        "target_repeat",
        "input_is_first",
    ]
    # token_table's text_pos and ctx_pos disagree, so target_repeat is not derivable: one note
    assert len(p7["notes"]) == 1 and p7["notes"][0].startswith("target_repeat cannot be derived")
    assert p7["covariate_sources"]["input_is_first"] == "derived: ctx_pos == 0"
    balance = {b["covariate"]: b for b in p7["balance"]}
    correct = table.column("correct").to_numpy()
    ctx = table.column("ctx_pos").to_numpy().astype(float)
    expected = (ctx[correct].mean() - ctx[~correct].mean()) / math.sqrt(
        (ctx[correct].var(ddof=1) + ctx[~correct].var(ddof=1)) / 2
    )
    assert balance["ctx_pos"]["smd"] == pytest.approx(expected)
    adjustment = p7["adjustment"]
    assert adjustment["terms"][0].startswith("spline(log(1 + ctx_pos)")
    assert adjustment["scheme"] == "shift" and adjustment["series"] == "window"
    assert adjustment["knots"] == 4 or adjustment["knots"] == 3
    assert len(p7["layers"]) == 5 and p7["n_layers"] == 5
    # the raw effect and its interval are Part 6's
    for row, raw in zip(p7["layers"], result.to_dict()["part6"]["layers"], strict=True):
        assert row["hedges_g_raw"] == pytest.approx(raw["hedges_g"])
        assert row["hedges_g_raw_ci_low"] == pytest.approx(raw["hedges_g_ci_low"])
        assert row["significant_raw"] == raw["significant"]
    # every layer has exactly one verdict, and the lists partition the layers
    lists = ("survived", "small", "negligible", "explained", "undetermined")
    named = sorted(layer for key in lists for layer in p7[f"{key}_layers"])
    equivalent = [r["layer"] for r in p7["layers"] if r["verdict"] == "shown negligible"]
    assert sorted(named + equivalent) == list(range(5))


def test_exclude_first_drops_those_tokens_from_every_part_and_says_how_many():
    rng = np.random.default_rng(3)
    n = 300
    correct = rng.random(n) < 0.4
    ctx = np.arange(n) % 100  # three windows' worth of positions: 3 first tokens
    table = token_table(correct, np.exp(rng.normal(size=(n, 5))), ctx_pos=ctx)
    result = analyze_table(table, StudyOptions(permutations=99, exclude=("first",)))
    ex = result.exclusions
    assert ex["n_requested_excluded"] == 3 and ex["requested_by_kind"] == {"first": 3}
    assert result.part2.n_tokens == n - 3
    assert result.part6.layers[0].n_correct + result.part6.layers[0].n_incorrect == n - 3
    assert result.provenance["table"]["n_rows"] == n
    with pytest.raises(InputError, match="input_is_delimiter needs the tokenizer"):
        analyze_table(table, StudyOptions(permutations=99, exclude=("delimiters",)))


def test_permute_within_window_keeps_windows_and_doc_without_a_doc_column_says_so():
    rng = np.random.default_rng(4)
    table = confounded(rng, n=400)
    windows = np.repeat(np.arange(4), 100).astype(np.int32)
    import pyarrow as pa

    table = table.set_column(table.column_names.index("window"), "window", pa.array(windows))
    result = analyze_table(table, StudyOptions(permutations=99))
    assert result.part7.adjustment.n_series == 4 and result.part6.n_series == 4
    result = analyze_table(table, StudyOptions(permutations=99, permute_within="doc"))
    assert any("no doc column" in note for note in result.part7.notes)
    assert result.part7.adjustment.n_series == 1 and result.part7.adjustment.series == "none"
    result = analyze_table(table, StudyOptions(permutations=99, scheme="exchangeable"))
    assert result.part6.scheme == "exchangeable" and result.part7.adjustment.n_series == 1


def test_controls_none_and_the_notebook_mode_have_no_part7():
    rng = np.random.default_rng(5)
    table = confounded(rng, n=200)
    assert analyze_table(table, StudyOptions(permutations=99, controls=())).part7 is None
    from pathlib import Path

    from lamina.table import read_table

    golden = Path(__file__).resolve().parents[1] / "data" / "golden" / "notebook"
    notebook = analyze_table(
        read_table(golden / "tokens.parquet"), StudyOptions(permutations=99, compat="notebook")
    )
    assert notebook.part7 is None and notebook.to_dict()["part7"] is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"controls": ("ctx_pos", "colour")}, "--controls 'colour' is unknown"),
        ({"controls": ("ctx_pos", "ctx_pos")}, "names a covariate twice"),
        ({"scheme": "bootstrap"}, "--scheme 'bootstrap' is unknown"),
        ({"seed": -1}, "--seed -1 is invalid: give a whole number >= 0"),
        ({"bins": 100_000}, "--bins 100000 is more than 10000"),
        ({"permute_within": "page"}, "--permute-within 'page' is unknown"),
        ({"min_effect": -1.0}, "--min-effect -1.0 must be"),
        ({"exclude": ("last",)}, "--exclude 'last' is unknown"),
        ({"compat": "notebook", "exclude": ("first",)}, "drop --exclude"),
    ],
)
def test_bad_options_are_one_sentence(kwargs, message):
    with pytest.raises(InputError, match=message):
        StudyOptions(**kwargs)


def test_the_command_line_runs_part7_and_says_what_survives(tmp_path, capsys):
    from lamina.cli import main
    from lamina.report.summary import layers_csv
    from lamina.study.result import load_results
    from lamina.table import write_table

    rng = np.random.default_rng(6)
    path = tmp_path / "tokens.parquet"
    write_table(confounded(rng, n=600, n_layers=6, planted=3, shift=0.45), path)
    out = tmp_path / "out"
    argv = [
        "analyze",
        str(path),
        "--out",
        str(out),
        "--permutations",
        "199",
        "--controls",
        "ctx_pos",
        "--layer",
        "3",
        "--correction",
        "cluster",
    ]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    results = load_results(out)
    p7 = results["part7"]
    assert p7["significant_layers"] == [3]
    assert "significant after controls" in stdout
    assert p7["correction"] == "cluster" and results["parameters"]["correction"] == "cluster"
    for row in results["part6"]["layers"]:
        assert row["pvalue_corrected"] == row["pvalue_cluster"]
    # layers.csv: the columns of before keep their places, the sites' then Part 7's follow
    header = layers_csv(results).splitlines()[0].split(",")
    assert header.index("compat") == 26 and header[27] == "site"
    assert header.index("pvalue_cluster") > header.index("correction_scope")
    assert "logloss_gain_ci_high" in header and "auroc_gain_ci_high" not in header
    page = (out / "report.html").read_text()
    assert 'id="part7"' in page and p7["summary"].split(" (")[0] in page
    assert (out / "figures" / "part7_controls.png").is_file()
    # --controls none: no Part 7, no figure, and the report still renders
    assert main([*argv[:6], "--controls", "none", "--out", str(tmp_path / "none")]) == 0
    assert load_results(tmp_path / "none")["part7"] is None
    assert not (tmp_path / "none" / "figures" / "part7_controls.png").exists()
    assert "Part 7  controls: not run" in capsys.readouterr().out
    assert main([*argv[:2], "--controls", "ctx_pos,colour", "--out", str(tmp_path / "x")]) == 2
    assert "--controls 'colour' is unknown" in capsys.readouterr().err
