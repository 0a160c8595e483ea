"""Every site of a run: per-site numbers equal single-site runs; run-wide corrections recomputed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.special
import scipy.stats

from lamina.errors import InputError
from lamina.report.summary import LAYER_COLUMNS, layers_csv
from lamina.stats.catalog import SIGNED_CENTERS
from lamina.stats.corrections import maxstat_pvalues
from lamina.stats.permutation import permutation_test
from lamina.study import StudyOptions, analyze_table
from lamina.study.records import LayerRow
from study.token_tables import multi_site_table

OPTIONS = StudyOptions(
    layer=1,
    permutations=199,
    diagnostic_permutations=49,
    sweep_bins=(8, 10),
    sites=("mlp_out", "resid_post", "attn_head"),
)
LAYER_FIELDS = [f.name for f in dataclasses.fields(LayerRow)]


@pytest.fixture(scope="module")
def table():
    return multi_site_table(n_tokens=400, n_layers=4, n_heads=3)


@pytest.fixture(scope="module")
def result(table):
    return analyze_table(table, OPTIONS, created="x")


def test_each_site_equals_a_single_site_run(table, result):
    sites = result.to_dict()["sites"]
    assert sites["sites"] == ["attn_out", "mlp_out", "resid_post", "attn_head"]
    for profile in sites["profiles"][:3]:
        alone = analyze_table(
            table, dataclasses.replace(OPTIONS, site=profile["site"], sites=()), created="x"
        )
        expected = alone.to_dict()["part6"]["layers"]
        got = [{k: row[k] for k in LAYER_FIELDS} for row in profile["rows"]]
        assert got == expected
    # the primary site's profile is Part 6 itself, field for field
    primary = sites["profiles"][0]["rows"]
    assert [{k: r[k] for k in LAYER_FIELDS} for r in primary] == result.to_dict()["part6"]["layers"]


def _head_matrix(table):
    names = [n for n in table.column_names if n.startswith("attn_head.")]
    return np.column_stack([table.column(n).to_numpy() for n in names]).astype(np.float64)


def test_heads_equal_a_direct_recomputation(table, result):
    heads = result.sites.profiles[3]
    assert (heads.kind, heads.n_layers, heads.n_heads, heads.n_tests) == ("heads", 4, 3, 12)
    assert [(r.layer, r.head) for r in heads.rows] == [(la, h) for la in range(4) for h in range(3)]
    values = np.log(_head_matrix(table))
    labels = table.column("correct").to_numpy()
    perm = permutation_test(
        values,
        labels,
        statistic="js",
        bins=30,
        robust_bins=True,
        n_permutations=199,
        seed=0,
        shift_within=table.column("window").to_numpy(),
    )
    for j, row in enumerate(heads.rows):
        c, i = values[labels, j], values[~labels, j]
        assert row.statistic == pytest.approx(float(perm.statistic[j]), rel=1e-12)
        assert row.pvalue == pytest.approx(float(perm.pvalue[j]), rel=1e-12)
        assert row.pvalue_maxstat == pytest.approx(float(perm.pvalue_maxstat[j]), rel=1e-12)
        assert row.difference == pytest.approx(c.mean() - i.mean(), rel=1e-12)
        u = scipy.stats.mannwhitneyu(c, i).statistic
        assert row.auroc == pytest.approx(u / (c.size * i.size), rel=1e-12)
        pooled = np.sqrt(
            ((c.size - 1) * c.var(ddof=1) + (i.size - 1) * i.var(ddof=1)) / (c.size + i.size - 2)
        )
        df = c.size + i.size - 2  # Hedges' exact small-sample factor J(df)
        correction = np.exp(
            scipy.special.gammaln(df / 2) - scipy.special.gammaln((df - 1) / 2)
        ) / np.sqrt(df / 2)
        assert row.hedges_g == pytest.approx(correction * (c.mean() - i.mean()) / pooled, rel=1e-9)
    assert heads.significant == [[1, 0]]  # the planted head


def test_run_wide_corrections_recomputed(table, result):
    rows = [r for p in result.sites.profiles for r in p.rows]
    raw = np.array([r.pvalue for r in rows])
    # Holm: the sorted p-values times (L - rank), running maximum, capped at 1
    order = np.argsort(raw, kind="stable")
    holm = np.empty_like(raw)
    running = 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (raw.size - rank) * raw[k]))
        holm[k] = running
    np.testing.assert_allclose([r.pvalue_holm_run for r in rows], holm, rtol=1e-12)
    np.testing.assert_allclose(
        [r.pvalue_fdr_run for r in rows], scipy.stats.false_discovery_control(raw), rtol=1e-12
    )
    # The run-wide max-statistic is one test of every column of every site at once.
    labels = table.column("correct").to_numpy()
    blocks = [
        np.column_stack([table.column(f"{site}.{layer}").to_numpy() for layer in range(4)])
        for site in ("attn_out", "mlp_out", "resid_post")
    ]
    every = np.log(np.hstack([*blocks, _head_matrix(table)]).astype(np.float64))
    joint = permutation_test(
        every,
        labels,
        statistic="js",
        bins=30,
        robust_bins=True,
        n_permutations=199,
        seed=0,
        shift_within=table.column("window").to_numpy(),
    )
    np.testing.assert_allclose(
        [r.pvalue_maxstat_run for r in rows], joint.pvalue_maxstat, rtol=1e-12
    )
    assert result.sites.n_tests_run == 24
    assert result.sites.run_maxstat_method.startswith("max-statistic over every test")
    # The default scope is the run: significance is the run-wide max-statistic's.
    for r in rows:
        assert r.pvalue_corrected_run == r.pvalue_maxstat_run
        assert r.significant_run == (r.pvalue_maxstat_run <= 0.05)
    assert all(p.n_significant == p.n_significant_run for p in result.sites.profiles)


def test_site_scope_marks_the_sites_own_corrections(table):
    options = dataclasses.replace(OPTIONS, correction="holm", correction_scope="site")
    sites = analyze_table(table, options, created="x").sites
    for p in sites.profiles:
        assert p.correction_scope == "site"
        marked = [
            [r.layer, r.head] if r.head is not None else r.layer for r in p.rows if r.significant
        ]
        assert p.significant == marked
        assert all(r.pvalue_corrected == r.pvalue_holm for r in p.rows)


def test_one_site_the_run_and_the_site_agree():
    table = multi_site_table(n_tokens=300, n_layers=3, sites=("attn_out",))
    result = analyze_table(table, StudyOptions(layer=1, permutations=99), created="x")
    (profile,) = result.sites.profiles
    for r in profile.rows:
        assert (r.pvalue_maxstat_run, r.pvalue_holm_run, r.pvalue_fdr_run) == (
            r.pvalue_maxstat,
            r.pvalue_holm,
            r.pvalue_fdr,
        )
        assert r.significant_run == r.significant


def test_sites_that_keep_different_tokens_fall_back_to_bonferroni_over_sites():
    table = multi_site_table(n_tokens=300, n_layers=3, sites=("attn_out", "mlp_out"))
    column = table.column("mlp_out.2").to_numpy().copy()
    column[7] = 0.0  # a zero norm in mlp_out only: its test keeps one token fewer
    import pyarrow as pa

    table = table.set_column(table.column_names.index("mlp_out.2"), "mlp_out.2", pa.array(column))
    options = StudyOptions(layer=1, permutations=99, sites=("mlp_out",))
    sites = analyze_table(table, options, created="x").sites
    assert "Bonferroni" in sites.run_maxstat_method
    attn, mlp = sites.profiles
    assert (attn.n_tokens, mlp.n_tokens, mlp.n_tokens_excluded) == (300, 299, 1)
    for p in (attn, mlp):
        for r in p.rows:
            assert r.pvalue_maxstat_run == min(1.0, 2 * r.pvalue_maxstat)


def test_joint_maxstat_helper_matches_the_engine_on_concatenated_nulls(table, result):
    """The same maximum taken by hand over the sites' own null distributions."""
    labels = table.column("correct").to_numpy()
    nulls, observed = [], []
    for site in ("attn_out", "mlp_out"):
        x = np.log(
            np.column_stack([table.column(f"{site}.{la}").to_numpy() for la in range(4)]).astype(
                np.float64
            )
        )
        perm = permutation_test(x, labels, statistic="js", bins=30, n_permutations=199, seed=0)
        nulls.append(perm.null_distribution)
        observed.append(perm.statistic)
    null = np.hstack(nulls)
    by_hand = [(np.sum(null.max(axis=1) >= o - 1e-12) + 1) / 200 for o in np.concatenate(observed)]
    np.testing.assert_allclose(
        maxstat_pvalues(
            np.concatenate(observed), null, "greater", center=SIGNED_CENTERS.get("js", 0.0)
        ),
        by_hand,
    )


def test_layers_csv_has_every_site_and_keeps_its_columns(result):
    text = layers_csv(result.to_dict())
    header, *rows = [line.split(",") for line in text.splitlines()]
    assert header[: len(LAYER_COLUMNS)] == list(LAYER_COLUMNS)
    assert header[len(LAYER_COLUMNS) : len(LAYER_COLUMNS) + 4] == [
        "statistic_name",
        "statistic_unit",
        "correction",
        "compat",
    ]
    n = len(LAYER_COLUMNS) + 4
    assert header[n : n + 8] == [
        "site",
        "head",
        "pvalue_maxstat_run",
        "pvalue_holm_run",
        "pvalue_fdr_run",
        "pvalue_corrected_run",
        "significant_run",
        "correction_scope",
    ]
    assert len(rows) == 4 + 4 + 4 + 12
    site, head = header.index("site"), header.index("head")
    assert [r[site] for r in rows] == ["attn_out"] * 4 + ["mlp_out"] * 4 + ["resid_post"] * 4 + [
        "attn_head"
    ] * 12
    assert [r[head] for r in rows[:12]] == [""] * 12
    assert [r[head] for r in rows[12:15]] == ["0", "1", "2"]
    # Part 6's cluster p-value and Part 7's columns are the primary site's, on its rows only
    cluster = header.index("pvalue_cluster")
    assert all(r[cluster] != "" for r in rows[:4]) and all(r[cluster] == "" for r in rows[4:])


def test_results_round_trip_with_the_sites_section(result):
    from lamina.study.result import StudyResult

    again = StudyResult.from_dict(result.to_dict())
    assert again.sites == result.sites
    assert again.to_dict()["sites"] == result.to_dict()["sites"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(site="attn_head"), "--site attn_head has no per-layer norms"),
        (dict(correction_scope="layer"), "--correction-scope 'layer' is unknown"),
    ],
)
def test_option_errors_are_one_sentence(options, message):
    with pytest.raises(InputError, match=message):
        StudyOptions(**options)


def test_a_site_the_table_lacks_is_refused():
    table = multi_site_table(n_tokens=200, n_layers=3, sites=("attn_out",))
    with pytest.raises(InputError, match=r"no .mlp_out. columns .* drop it from --sites"):
        analyze_table(table, StudyOptions(layer=1, permutations=19, sites=("mlp_out",)))


def test_cluster_mass_runs_over_each_sites_and_each_heads_layers(table):
    """--correction cluster: per head along its layers at the site, over every site for the run."""
    from lamina.stats.clusters import cluster_pvalues

    options = dataclasses.replace(OPTIONS, correction="cluster")
    sites = analyze_table(table, options, created="x").sites
    labels = table.column("correct").to_numpy()
    observed, nulls, segments, offset = [], [], [], 0
    for profile in sites.profiles:
        if profile.kind == "heads":
            x = np.log(_head_matrix(table))  # columns layer-major: layer * 3 + head
            runs = [np.arange(h, 12, 3) for h in range(3)]
        else:
            names = [f"{profile.site}.{la}" for la in range(4)]
            x = np.log(np.column_stack([table.column(n).to_numpy() for n in names]).astype(float))
            runs = [np.arange(4)]
        perm = permutation_test(
            x,
            labels,
            statistic="js",
            bins=30,
            robust_bins=True,
            n_permutations=199,
            seed=0,
            shift_within=table.column("window").to_numpy(),
        )
        site_p = cluster_pvalues(perm.statistic, perm.null_distribution, "greater", segments=runs)
        np.testing.assert_allclose([r.pvalue_cluster for r in profile.rows], site_p)
        observed.append(perm.statistic)
        nulls.append(perm.null_distribution)
        segments += [run + offset for run in runs]
        offset += x.shape[1]
    run_p = cluster_pvalues(
        np.concatenate(observed), np.hstack(nulls), "greater", segments=segments
    )
    got = [r.pvalue_corrected_run for p in sites.profiles for r in p.rows]
    np.testing.assert_allclose(got, run_p)
    assert all(r.pvalue_corrected == r.pvalue_cluster for p in sites.profiles for r in p.rows)
