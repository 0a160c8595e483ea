"""Every analysed site of a run: a laminar profile per site, a per-head profile for ``attn_head``.

Each site is analysed exactly as a single-site run analyses its site in Part 6
(the same exclusions, the same seeded labellings, the same statistic and
corrections over the site's own tests), so a site's numbers equal those of a
run with ``--site`` set to it. ``attn_head`` is analysed per (layer, head):
every head of every layer is one test of the site.

Corrections are stated twice for every test: over the site's tests (the
:class:`~lamina.study.records.LayerRow` fields) and over every test of the run
(the ``*_run`` fields: Holm and Benjamini-Hochberg over all raw p-values of
the run; the max-statistic over the maximum of all the run's statistics per
labelling; the cluster-mass over the largest cluster of any site, clusters
running over adjacent layers of one site, or of one head of ``attn_head``).
``correction_scope`` says which marks significance.

The run-wide max-statistic needs one labelling shared by every test: every
site draws its labellings from the same seed, so they are shared whenever the
sites keep the same tokens (no site excludes a token with a zero norm that
another keeps). When they do not, the run-wide max-statistic p-value is the
site's max-statistic p-value times the number of sites (Bonferroni over the
sites, which controls the run's family-wise error all the same, less tightly),
and ``run_maxstat_method`` says so.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina.errors import InputError
from lamina.stats.catalog import SIGNED_CENTERS
from lamina.stats.clusters import cluster_pvalues
from lamina.stats.corrections import fdr_bh, holm, maxstat_pvalues
from lamina.study.options import HEAD_SITE, StudyOptions
from lamina.study.parts.profile import all_layers_test, laminar_profile
from lamina.study.prepare import Prepared, prepare_matrix, prepare_table
from lamina.study.records import LaminarProfile, SiteProfile, SiteRow, SitesSection
from lamina.table import head_matrix, site_layers, table_metadata

if TYPE_CHECKING:
    import pyarrow as pa

    from lamina.stats.permutation import PermutationResult

SCOPE_NOTE = (
    "every test is corrected over its site's tests (pvalue_maxstat, pvalue_holm, pvalue_fdr, "
    "pvalue_corrected, significant: the numbers of a single-site run) and over every test of "
    "the run (the *_run fields); correction_scope says which marks significance"
)


@dataclasses.dataclass
class _SiteTest:
    """One site's prepared arrays, its permutation test and its (layer, head) per column."""

    site: str
    prepared: Prepared
    perm: PermutationResult
    columns: list[tuple[int, int | None]]
    profile: LaminarProfile


def site_profiles(
    table: pa.Table,
    options: StudyOptions,
    primary: Prepared,
    primary_perm: PermutationResult,
) -> SitesSection:
    """The ``sites`` section: every site of ``options.analysed_sites``.

    ``primary`` and ``primary_perm`` are Part 6's arrays and test of the
    primary site, re-used as they are.
    """
    tests = []
    for site in options.analysed_sites:
        if site == options.site:
            prepared, perm = primary, primary_perm
            columns: list[tuple[int, int | None]] = [(layer, None) for layer in prepared.layers]
        else:
            prepared, columns = _prepare_site(table, site, options)
            perm = all_layers_test(prepared, options)
        profile = laminar_profile(perm, prepared, options, _segments(columns))
        tests.append(_SiteTest(site, prepared, perm, columns, profile))
    run, method = _run_pvalues(tests, options)
    profiles = []
    start = 0
    for test in tests:
        stop = start + len(test.columns)
        profiles.append(_site_profile(test, {k: v[start:stop] for k, v in run.items()}, options))
        start = stop
    return SitesSection(
        primary=options.site,
        sites=list(options.analysed_sites),
        correction=options.resolved_correction,
        correction_scope=options.correction_scope,
        alpha=options.alpha,
        n_tests_run=start,
        run_maxstat_method=method,
        note=SCOPE_NOTE,
        profiles=profiles,
    )


def _prepare_site(
    table: pa.Table, site: str, options: StudyOptions
) -> tuple[Prepared, list[tuple[int, int | None]]]:
    layers = site_layers(table, site)
    if not layers:
        present = ", ".join(table_metadata(table).get("sites", [])) or "none"
        raise InputError(
            f"the token table has no {site!r} columns (sites captured: {present}); drop it "
            f"from --sites or re-extract with --sites {site}."
        )
    if site != HEAD_SITE:
        prepared = prepare_table(table, dataclasses.replace(options, site=site))
        return prepared, [(layer, None) for layer in prepared.layers]
    blocks = [np.asarray(head_matrix(table, layer)) for layer in layers]
    columns = [
        (layer, head)
        for layer, block in zip(layers, blocks, strict=True)
        for head in range(block.shape[1])
    ]
    raw = np.hstack(blocks)
    # The matrix's columns are numbered 0..k-1; ``columns`` maps them to (layer, head).
    return prepare_matrix(table, site, raw, list(range(len(columns))), 0, options), columns


def _segments(columns: list[tuple[int, int | None]]) -> list[np.ndarray]:
    """The runs of adjacent layers among a site's columns: its layers, or each head's layers."""
    by_head: dict[int | None, list[tuple[int, int]]] = {}
    for j, (layer, head) in enumerate(columns):
        by_head.setdefault(head, []).append((layer, j))
    return [np.array([j for _, j in sorted(run)], dtype=np.int64) for run in by_head.values()]


def _run_pvalues(
    tests: list[_SiteTest], options: StudyOptions
) -> tuple[dict[str, np.ndarray], str | None]:
    """The run-wide corrected p-values of every test, in site order; and the max-stat method."""
    raw = np.concatenate([np.ravel(t.perm.pvalue) for t in tests]).astype(np.float64)
    out = {"none": raw, "holm": holm(raw), "fdr": fdr_bh(raw)}
    if options.notebook:
        out["maxstat"] = out["cluster"] = np.full(raw.shape, np.nan)
        method = None
    elif _shared_labellings(tests):
        first = tests[0].perm
        statistic = np.concatenate([np.ravel(t.perm.statistic) for t in tests])
        null = np.hstack([np.asarray(t.perm.null_distribution) for t in tests])
        out["maxstat"] = maxstat_pvalues(
            statistic,
            null,
            first.alternative,
            center=SIGNED_CENTERS.get(first.statistic_name, 0.0),
            includes_observed=first.exact,
        )
        segments, offset = [], 0
        for t in tests:
            segments += [segment + offset for segment in _segments(t.columns)]
            offset += len(t.columns)
        out["cluster"] = cluster_pvalues(
            statistic,
            null,
            first.alternative,
            center=SIGNED_CENTERS.get(first.statistic_name),
            includes_observed=first.exact,
            segments=segments,
        )
        method = "max-statistic over every test of the run (shared labellings)"
    else:
        n_sites = len(tests)
        for key, field in (("maxstat", "pvalue_maxstat"), ("cluster", "pvalue_cluster")):
            out[key] = np.concatenate(
                [
                    np.minimum(
                        1.0, n_sites * np.array([getattr(r, field) for r in t.profile.layers])
                    )
                    for t in tests
                ]
            )
        method = (
            "the site's max-statistic (and cluster-mass) p-value times the number of sites "
            "(Bonferroni over sites): the sites exclude different zero-norm tokens, so no "
            "labelling is shared"
        )
    return out, method


def _shared_labellings(tests: list[_SiteTest]) -> bool:
    """Whether every site's null rows are the same labellings of the same tokens."""
    first = tests[0]
    return all(
        np.array_equal(t.prepared.keep, first.prepared.keep)
        and t.perm.n_permutations == first.perm.n_permutations
        and t.perm.exact == first.perm.exact
        for t in tests[1:]
    )


def _site_profile(
    test: _SiteTest, run: dict[str, np.ndarray], options: StudyOptions
) -> SiteProfile:
    correction = options.resolved_correction
    rows = []
    for j, (row, (layer, head)) in enumerate(zip(test.profile.layers, test.columns, strict=True)):
        fields: dict[str, Any] = row.to_dict()
        corrected = float(run[correction][j])
        fields.update(
            layer=layer,
            head=head,
            pvalue_maxstat_run=float(run["maxstat"][j]),
            pvalue_holm_run=float(run["holm"][j]),
            pvalue_fdr_run=float(run["fdr"][j]),
            pvalue_corrected_run=corrected,
            significant_run=bool(corrected <= options.alpha),
        )
        rows.append(SiteRow(**fields))
    by_run = options.correction_scope == "run"
    marked = [r for r in rows if (r.significant_run if by_run else r.significant)]
    heads = test.site == HEAD_SITE
    return SiteProfile(
        site=test.site,
        kind="heads" if heads else "layers",
        n_layers=len({layer for layer, _ in test.columns}),
        n_heads=(max(h for _, h in test.columns if h is not None) + 1) if heads else None,
        n_tests=len(rows),
        n_tokens=int(test.prepared.labels.size),
        n_tokens_excluded=int(test.prepared.exclusions["n_tokens_excluded"]),
        statistic_name=test.profile.statistic_name,
        statistic_unit=test.profile.statistic_unit,
        alternative=test.profile.alternative,
        correction=correction,
        correction_scope=options.correction_scope,
        alpha=options.alpha,
        n_permutations=test.profile.n_permutations,
        n_significant=len(marked),
        significant=[[r.layer, r.head] if heads else r.layer for r in marked],
        n_significant_site=sum(r.significant for r in rows),
        n_significant_run=sum(r.significant_run for r in rows),
        rows=rows,
    )
