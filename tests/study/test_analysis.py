"""The study's numbers on synthetic token tables, against independent computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats

from binning import robust_edges
from lamina.errors import InputError
from lamina.report.summary import layers_csv
from lamina.study import StudyOptions, StudyResult, analyze_table
from lamina.study.records import LayerRow, Normalisations
from study.token_tables import separated_norms, token_table

OPTIONS = StudyOptions(layer=1, permutations=199, diagnostic_permutations=99, sweep_bins=(5, 12))


@pytest.fixture(scope="module")
def synthetic():
    correct, norms = separated_norms(n_tokens=300, n_layers=5, shift_layers=(1, 3), shift=0.6)
    table = token_table(correct, norms)
    result = analyze_table(table, OPTIONS, created="2000-01-01T00:00:00Z")
    return correct, np.log(norms.astype(np.float32).astype(np.float64)), table, result


def test_part2_accuracy_and_target_lengths(synthetic):
    correct, _, table, result = synthetic
    p2 = result.to_dict()["part2"]
    assert p2["n_tokens"] == correct.size
    assert p2["n_correct"] == int(correct.sum())
    assert p2["accuracy"] == pytest.approx(correct.mean(), abs=0)
    chars = table.column("target_chars").to_numpy().astype(int)
    assert p2["target_chars"]["correct"]["mean"] == pytest.approx(chars[correct].mean())
    assert p2["target_chars"]["incorrect"]["mean"] == pytest.approx(chars[~correct].mean())
    counts = np.asarray(p2["target_chars"]["counts_correct"])
    assert counts[3] == int((chars[correct] == 3).sum())
    # running mean: one position per token here, so a centred moving average of `correct`
    width = p2["running_mean"]["width_tokens"]
    pos = 150
    lo, hi = pos - width // 2, pos - width // 2 + width
    assert p2["running_mean"]["accuracy"][pos] == pytest.approx(correct[lo:hi].mean())
    groups = p2["by_position"]
    assert sum(g["n_tokens"] for g in groups) == correct.size
    assert sum(g["n_correct"] for g in groups) == correct.sum()


def test_part3_histograms_and_normalisations(synthetic):
    correct, log_norms, _, result = synthetic
    p3 = result.to_dict()["part3"]
    v = log_norms[:, 1]
    edges = robust_edges(v, OPTIONS.bins)  # the default binning
    np.testing.assert_allclose(p3["edges"], edges, rtol=1e-12)
    np.testing.assert_array_equal(p3["counts_correct"], np.histogram(v[correct], edges)[0])
    np.testing.assert_array_equal(p3["counts_incorrect"], np.histogram(v[~correct], edges)[0])
    norms = p3["normalisations"]["correct"]
    density = np.histogram(v[correct], edges, density=True)[0]
    assert norms["sum_counts"] == correct.sum()
    assert norms["sum_density"] == pytest.approx(density.sum())
    assert norms["sum_density_times_bin_width"] == pytest.approx(1.0)
    assert norms["sum_probability"] == pytest.approx(1.0)
    assert p3["difference"] == pytest.approx(v[correct].mean() - v[~correct].mean())
    assert p3["n_bins"] == 30


def test_part4_divergences_against_scipy(synthetic):
    correct, log_norms, _, result = synthetic
    p4 = result.to_dict()["part4"]
    v = log_norms[:, 1]
    edges = robust_edges(v, 30)  # the default binning
    pc, pi = np.histogram(v[correct], edges)[0], np.histogram(v[~correct], edges)[0]
    half = OPTIONS.kl_pseudocount
    kl_ci = scipy.stats.entropy(pc + half, pi + half)
    kl_ic = scipy.stats.entropy(pi + half, pc + half)
    js = scipy.spatial.distance.jensenshannon(pc, pi) ** 2
    ab = p4["at_bins"]
    assert ab["kl_correct_incorrect"]["nats"] == pytest.approx(kl_ci, rel=1e-10)
    assert ab["kl_incorrect_correct"]["nats"] == pytest.approx(kl_ic, rel=1e-10)
    assert ab["js"]["nats"] == pytest.approx(js, rel=1e-10)
    assert ab["js"]["bits"] == pytest.approx(js / math.log(2), rel=1e-10)
    sweep = p4["js_sweep"]
    assert sweep["bins"] == list(range(5, 13))
    for b, value in zip(sweep["bins"], sweep["js_nats"], strict=True):
        e = robust_edges(v, b)
        expected = scipy.spatial.distance.jensenshannon(
            np.histogram(v[correct], e)[0], np.histogram(v[~correct], e)[0]
        )
        assert value == pytest.approx(expected**2, rel=1e-10)
    binless = {e["name"]: e for e in p4["binless"]}
    assert binless["ks"]["value"] == pytest.approx(
        scipy.stats.ks_2samp(v[correct], v[~correct]).statistic
    )
    assert binless["wasserstein"]["value"] == pytest.approx(
        scipy.stats.wasserstein_distance(v[correct], v[~correct])
    )
    for entry in binless.values():
        assert entry["n_permutations"] == 99
        assert 1 / 100 <= entry["pvalue"] <= 1


def test_part5_pvalue_is_b_plus_one_over_m_plus_one(synthetic):
    _, _, _, result = synthetic
    p5 = result.to_dict()["part5"]
    null = np.asarray(p5["null_distribution"])
    b = int((null >= p5["statistic"]).sum())
    assert null.size == 199
    assert p5["n_null_at_least_observed"] == b
    assert p5["pvalue"] == pytest.approx((b + 1) / 200)
    # the shifted layer: nothing in the null reaches the observed JS but the identity shift,
    # which a uniform draw of shifts (300 of them here) may include
    assert p5["pvalue"] <= 2 / 200
    assert b == int((np.abs(null - p5["statistic"]) == 0).sum())


def test_part6_rows_against_numpy_and_scipy(synthetic):
    correct, log_norms, _, result = synthetic
    rows = result.to_dict()["part6"]["layers"]
    assert [r["layer"] for r in rows] == list(range(5))
    for j, row in enumerate(rows):
        c, i = log_norms[correct, j], log_norms[~correct, j]
        assert row["mean_log_norm_correct"] == pytest.approx(c.mean(), rel=1e-12)
        assert row["mean_log_norm_incorrect"] == pytest.approx(i.mean(), rel=1e-12)
        assert row["difference"] == pytest.approx(c.mean() - i.mean(), rel=1e-10)
        u = scipy.stats.mannwhitneyu(c, i).statistic
        assert row["auroc"] == pytest.approx(u / (c.size * i.size))
        n1, n2 = c.size, i.size
        pooled = math.sqrt(((n1 - 1) * c.var(ddof=1) + (n2 - 1) * i.var(ddof=1)) / (n1 + n2 - 2))
        j_corr = math.exp(
            math.lgamma((n1 + n2 - 2) / 2)
            - math.log(math.sqrt((n1 + n2 - 2) / 2))
            - math.lgamma((n1 + n2 - 3) / 2)
        )
        assert row["hedges_g"] == pytest.approx((c.mean() - i.mean()) / pooled * j_corr, rel=1e-4)
        assert row["hedges_g_ci_low"] < row["hedges_g"] < row["hedges_g_ci_high"]
    # corrections: Holm and BH recomputed from the raw p-values
    p = np.array([r["pvalue"] for r in rows])
    order = np.argsort(p)
    holm = np.empty_like(p)
    holm[order] = np.minimum(1, np.maximum.accumulate((p.size - np.arange(p.size)) * p[order]))
    np.testing.assert_allclose([r["pvalue_holm"] for r in rows], holm)
    significant = [r["layer"] for r in rows if r["significant"]]
    assert significant == [1, 3]
    assert result.to_dict()["part6"]["correction"] == "maxstat"
    assert result.to_dict()["part6"]["n_significant_correct_higher"] == 2


def test_part6_records_where_the_counts_ran(monkeypatch):
    monkeypatch.setenv("LAMINA_PERM_BACKEND", "numpy-float32")
    correct, norms = separated_norms(n_tokens=120, n_layers=3, shift_layers=(1,), shift=0.6)
    options = StudyOptions(layer=1, permutations=50, diagnostic_permutations=20, sweep_bins=(5, 6))
    result = analyze_table(token_table(correct, norms), options, created="2000-01-01T00:00:00Z")
    p6 = result.to_dict()["part6"]
    assert p6["backend"] == "numpy-float32"
    assert p6["backend_reason"] == "set by LAMINA_PERM_BACKEND=numpy-float32"
    again = StudyResult.from_dict(json.loads(result.to_json()))
    assert (again.part6.backend, again.part6.backend_reason) == (
        p6["backend"],
        p6["backend_reason"],
    )


def test_maxstat_pvalues_from_the_null(synthetic):
    _, _, _, result = synthetic
    rows = result.to_dict()["part6"]["layers"]
    # Part 5's null is the layer-1 column of the shared labellings; the max over layers
    # of the null is at least each column, so max-statistic p >= raw p.
    for r in rows:
        assert r["pvalue_maxstat"] >= r["pvalue"]
    assert rows[1]["null_mean"] == pytest.approx(
        np.mean(result.to_dict()["part5"]["null_distribution"])
    )


def test_typed_results_read_as_the_json_and_round_trip(synthetic):
    _, _, _, result = synthetic
    data = result.to_dict()
    assert result.part6.significant_layers == data["part6"]["significant_layers"] == [1, 3]
    assert result.part5.pvalue == data["part5"]["pvalue"]
    assert result.part4.binless[2].name == data["part4"]["binless"][2]["name"] == "ks"
    again = StudyResult.from_dict(json.loads(result.to_json()))
    assert isinstance(again.part6.layers[0], LayerRow)
    assert isinstance(again.part3.normalisations["correct"], Normalisations)
    assert again.to_json() == result.to_json()


def test_results_json_is_deterministic_and_finite(synthetic):
    _, _, table, result = synthetic
    text = result.to_json()
    data = json.loads(text)
    assert "NaN" not in text and "Infinity" not in text
    again = analyze_table(table, OPTIONS, created="2000-01-01T00:00:00Z").to_json()
    assert again == text
    later = analyze_table(table, OPTIONS, created="2001-01-01T00:00:00Z").to_json()
    changed = [(a, b) for a, b in zip(text.splitlines(), later.splitlines(), strict=True) if a != b]
    assert changed == [
        ('  "created": "2000-01-01T00:00:00Z",', '  "created": "2001-01-01T00:00:00Z",')
    ]
    assert data["parameters"]["seed"] == 0
    assert data["provenance"]["model"]["fingerprint"].startswith("sha256:")
    assert data["part1"]["text"]["sha256"] == "1" * 64


def test_layers_csv_matches_results(synthetic):
    _, _, _, result = synthetic
    results = result.to_dict()
    lines = layers_csv(results).splitlines()
    header = lines[0].split(",")
    assert header[:3] == ["layer", "n_correct", "n_incorrect"]
    for line, row in zip(lines[1:], results["part6"]["layers"], strict=True):
        cells = dict(zip(header, line.split(","), strict=True))
        assert int(cells["layer"]) == row["layer"]
        assert float(cells["statistic"]) == row["statistic"]
        assert float(cells["pvalue_maxstat"]) == row["pvalue_maxstat"]
        assert cells["significant"] == ("true" if row["significant"] else "false")
        assert cells["statistic_unit"] == "nats"


def test_zero_norms_are_counted_and_excluded():
    correct, norms = separated_norms(n_tokens=120, n_layers=3, shift_layers=(1,), seed=3)
    norms[[5, 6], 2] = 0.0
    norms[7, 0] = 0.0
    result = analyze_table(token_table(correct, norms), OPTIONS.__class__(layer=1, permutations=49))
    ex = result.exclusions
    assert ex["n_tokens_excluded"] == 3
    assert ex["zero_norm_by_layer"] == {"0": 1, "1": 0, "2": 2}
    assert ex["n_correct_excluded"] + ex["n_incorrect_excluded"] == 3
    keep = np.ones(120, dtype=bool)
    keep[[5, 6, 7]] = False
    assert result.to_dict()["part6"]["layers"][1]["n_correct"] == int(correct[keep].sum())
    assert (
        result.to_dict()["part3"]["correct"]["n"] + result.to_dict()["part3"]["incorrect"]["n"]
        == 117
    )
    assert result.to_dict()["part2"]["n_tokens"] == 120  # accuracy keeps every scored token
    assert math.isfinite(result.to_dict()["part6"]["layers"][2]["mean_log_norm_correct"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (StudyOptions(layer=9), "--layer 9 does not exist"),
        (StudyOptions(layer=1, site="mlp_out"), "no 'mlp_out' columns"),
        (StudyOptions(layer=1, compat="notebook"), "--compat notebook needs a table"),
    ],
)
def test_options_the_table_cannot_serve_raise_one_sentence(options, message):
    correct, norms = separated_norms(n_tokens=60, n_layers=2, shift_layers=(1,))
    with pytest.raises(InputError, match=message) as info:
        analyze_table(token_table(correct, norms), options)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bins": 1}, "--bins 1 is too few"),
        ({"permutations": 0}, "--permutations 0"),
        ({"statistic": "nope"}, "--statistic 'nope' is unknown"),
        ({"compat": "nope"}, "--compat 'nope' is unknown"),
        ({"sweep_bins": (5, 3)}, "--sweep-bins 5 3 is not a range"),
        ({"alpha": 1.5}, "--alpha 1.5 must lie"),
        ({"compat": "notebook", "statistic": "ks"}, "drop --statistic"),
    ],
)
def test_options_no_table_can_serve_are_refused_on_construction(kwargs, message):
    with pytest.raises(InputError, match=message) as info:
        StudyOptions(**kwargs)
    assert "\n" not in str(info.value)


def test_seed_is_an_accepted_alias_of_the_notebook_mode():
    assert StudyOptions(compat="seed").compat == "notebook"
    assert StudyOptions(compat="seed") == StudyOptions(compat="notebook")


def test_a_class_with_fewer_than_two_tokens_is_refused():
    rng = np.random.default_rng(0)
    correct = np.zeros(50, dtype=bool)
    correct[3] = True
    with pytest.raises(InputError, match="only 1 token"):
        analyze_table(token_table(correct, rng.random((50, 2)) + 0.1), StudyOptions(layer=1))


@pytest.mark.parametrize(
    ("statistic", "alternative"),
    [("js", None), ("ks", None), ("mean_difference", "less"), ("hedges_g", "two-sided")],
)
def test_part5_counts_extremes_as_its_pvalue_does(statistic, alternative):
    # Three distinct log-norms: many relabellings give the observed statistic again, some
    # only up to rounding (the same values summed in another order), which must count too.
    rng = np.random.default_rng(0)
    correct = rng.random(60) < 0.5
    norms = np.exp(rng.integers(0, 3, size=(60, 2)) * 0.1 + 0.05).astype(np.float32)
    options = StudyOptions(
        layer=1, statistic=statistic, alternative=alternative, permutations=2000, sweep_bins=(5, 6)
    )
    p5 = analyze_table(token_table(correct, norms), options).part5
    # one window of 60 tokens: its 60 shifts are enumerated, the observed one among them
    assert p5.exact and p5.n_permutations == 60
    assert p5.pvalue == pytest.approx(p5.n_null_at_least_observed / p5.n_permutations)
