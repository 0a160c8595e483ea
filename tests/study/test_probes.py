"""Part 8: a direction planted where the norms are identical is found by the probe and by
nothing else; Part 8's numbers are the statistics' own; its outputs from a token table."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from lamina.pipeline import write_outputs
from lamina.pipeline.comparison_data import build_comparison
from lamina.report.comparison_page import comparison_csv, profiles_csv, render_compare
from lamina.report.summary import PART8_COLUMNS, format_summary, layers_csv
from lamina.stats.linear_probes import widened_permutation
from lamina.stats.permutation import permutation_test
from lamina.study import StudyOptions, analyze_table
from lamina.study.result import StudyResult, load_results
from study.probe_tables import planted_vectors, probe_table
from study.token_tables import separated_norms, token_table

ALPHA = 0.05


@pytest.mark.slow
def test_a_direction_planted_under_identical_norms_is_found_by_part8_alone():
    # 20,000 tokens, 32 dimensions: the classes differ along one direction at layer 3 only,
    # their norms identically distributed at every layer (study/probe_tables.py)
    labels, vectors, planted = planted_vectors(20_000, 6, 32, planted=(3,), seed=0)
    table, fits = probe_table(labels, vectors)
    result = analyze_table(table, StudyOptions(layer=3, permutations=199))
    assert 3 not in result.part6.significant_layers  # the norm: nothing
    assert 3 not in result.part7.significant_layers
    p8 = result.part8
    assert p8.significant_layers == [3]  # the direction: that layer, and only it
    assert p8.direction_not_norm_layers == [3]
    assert p8.saturation_layer == 3 and p8.peak_layer == 3
    row = p8.layers[3]
    assert row.auroc > 0.65 and row.auroc_ci_low > 0.5 and row.pvalue_corrected <= ALPHA
    assert row.norm_auroc_ci_low < 0.5 < row.norm_auroc_ci_high
    assert row.logloss_gain_ci_low > 0 and p8.gain_layers == [3]
    assert row.controlled_significant and row.controlled_verdict == "significant after controls"
    # the recovered direction: every fold's, by both methods
    cosine = fits[3].directions @ planted[3] / np.linalg.norm(fits[3].directions, axis=1)
    assert cosine.min() > 0.9
    from lamina.stats.linear_probes import crossfit

    lda = crossfit(vectors[3], labels, table.column("fold").to_numpy(), "lda")
    assert (lda.directions @ planted[3] / np.linalg.norm(lda.directions, axis=1)).min() > 0.9
    assert "In direction but not in norm" in p8.summary and "layer 3" in p8.summary


@pytest.fixture(scope="module")
def probed():
    """A small probed table (4,000 tokens, 4 layers, 16 dimensions, planted at layer 2)."""
    labels, vectors, _ = planted_vectors(4000, 4, 16, planted=(2,), agreement=0.8, window=512)
    table, _ = probe_table(labels, vectors, window=512)
    options = StudyOptions(layer=2, permutations=99, diagnostic_permutations=19)
    return table, analyze_table(table, options, created="2000-01-01T00:00:00Z"), options


def test_part8_is_the_statistics_of_the_tables_scores(probed):
    table, result, options = probed
    p8 = result.part8
    scores = np.column_stack([table.column(f"probe.attn_out.{k}").to_numpy() for k in range(4)])
    labels = table.column("correct").to_numpy()
    perm = widened_permutation(
        permutation_test(
            scores.astype(np.float64),
            labels,
            statistic="auroc",
            alternative="greater",
            n_permutations=99,
            seed=0,
            shift_within=table.column("window").to_numpy(),
        )
    )
    for j, row in enumerate(p8.layers):
        assert row.auroc == pytest.approx(perm.statistic[j], abs=1e-12)
        assert row.pvalue == perm.pvalue[j] and row.pvalue_maxstat == perm.pvalue_maxstat[j]
        assert row.pvalue_corrected == row.pvalue_maxstat
        assert row.norm_significant == result.part6.layers[j].significant
    assert p8.significant_layers == [2] and p8.method == "diffmeans" and p8.folds == 5
    assert p8.fold_unit == "window" and p8.probe["sign"] == "correct minus incorrect"
    assert p8.baselines.controls == list(options.controls)
    assert p8.baselines.baseline_terms[-1].startswith("spline(entropy")
    assert p8.n_tokens == 4000 and p8.crossfit_variance == 2.0


def test_part8_round_trips_through_results_json(probed, tmp_path):
    _, result, _ = probed
    data = json.loads(result.to_json())
    assert data["part8_reason"] is None and data["part8"]["layers"][2]["significant"]
    again = StudyResult.from_dict(data)
    assert again.part8 == result.part8
    (tmp_path / "results.json").write_text(result.to_json())
    assert load_results(tmp_path)["part8"] == data["part8"]


def test_without_probe_scores_part8_is_null_with_its_reason():
    correct, norms = separated_norms(300, 4, shift_layers=(1,))
    result = analyze_table(token_table(correct, norms), StudyOptions(layer=1, permutations=49))
    assert result.part8 is None
    assert "no probe scores for attn_out" in result.part8_reason
    results = result.to_dict()
    assert results["part8"] is None and "probe" not in results["headline"]
    assert "Part 8  probes: not run (the token table has no probe scores" in format_summary(results)
    from lamina.study.parts.probes import probes

    part8, reason = probes(None, None, None, StudyOptions(compat="notebook"))
    assert part8 is None and "notebook" in reason


def test_probe_scores_of_other_layers_or_without_folds_are_refused_in_words(probed):
    table, _, _ = probed
    options = StudyOptions(layer=2, permutations=19, diagnostic_permutations=19, controls=())
    partial = table.drop_columns(["probe.attn_out.3"])
    assert "cover attn_out layers 0, 1, 2" in analyze_table(partial, options).part8_reason
    unfolded = table.drop_columns(["fold"])
    assert "no fold column" in analyze_table(unfolded, options).part8_reason
    # without controls Part 8 runs with the confidence alone and no controlled test
    alone = analyze_table(table, options).part8
    assert alone.baselines.controls == [] and alone.baselines.auroc_controls is None
    assert alone.controlled_significant_layers is None
    assert alone.layers[0].controlled_verdict is None and alone.significant_layers == [2]


def test_part8_outputs_figure_report_console_csv(probed, tmp_path):
    _, result, _ = probed
    out = write_outputs(result, tmp_path / "run").out_dir
    assert (out / "figures" / "part8_probes.png").stat().st_size > 0
    results = load_results(out)
    p8 = results["part8"]
    page = (out / "report.html").read_text()
    assert 'id="part8"' in page and 'id="probe-layers"' in page
    assert p8["summary"].split(" (")[0] in page
    text = format_summary(results)
    assert "Part 8  probes (diffmeans, 5 folds of whole windows)" in text
    assert "in direction but not in norm: 2" in text
    assert "A linear probe of the direction" in results["headline"]
    rows = list(csv.DictReader(io.StringIO(layers_csv(results))))
    for row, layer in zip(rows, p8["layers"], strict=True):
        for name, key in PART8_COLUMNS:
            value = layer[key]
            if isinstance(value, bool):
                expected = "true" if value else "false"
            else:
                expected = "" if value is None else value if isinstance(value, str) else repr(value)
            assert row[name] == expected, name


def test_the_comparison_carries_part8_by_layer(probed):
    _, result, _ = probed
    results = result.to_dict()
    comparison = build_comparison(
        [results, results], ["/a/one", "/b/two"], reanalysed=[None, None], notes=[], created="x"
    )
    for series in comparison["series"]:
        for point, row in zip(series["points"], results["part8"]["layers"], strict=True):
            assert point["probe_auroc"] == row["auroc"]
            assert point["direction_not_norm"] == row["direction_not_norm"]
    table = list(csv.DictReader(io.StringIO(comparison_csv(comparison))))
    assert table[0]["probe_peak_layer"] == "2" and table[0]["direction_not_norm_layers"] == "2"
    assert "probe_auroc" in profiles_csv(comparison).splitlines()[0]
    page = render_compare(comparison, b"\x89PNG")
    assert 'data-chart="compare_probes"' in page and 'id="probes"' in page


def test_the_probes_frame_is_part8s_rows(probed):
    pd = pytest.importorskip("pandas")
    from lamina.errors import InputError

    _, result, _ = probed
    frame = result.to_pandas("probes")
    rows = result.to_dict()["part8"]["layers"]
    assert list(frame.columns) == ["site", "method", "correction", *rows[0]]
    assert len(frame) == 4 and set(frame["site"]) == {"attn_out"}
    for k, row in enumerate(rows):
        for key in ("layer", "auroc", "auroc_ci_low", "pvalue_corrected", "logloss_gain"):
            assert frame[key][k] == row[key], (k, key)
        assert bool(frame["direction_not_norm"][k]) == row["direction_not_norm"]
    assert isinstance(frame, pd.DataFrame)
    correct, norms = separated_norms(300, 4, shift_layers=(1,))
    without = analyze_table(token_table(correct, norms), StudyOptions(layer=1, permutations=49))
    with pytest.raises(InputError, match=r"Part 8 did not run \(.*no probe scores for attn_out"):
        without.to_pandas("probes")
