"""Every site of the embedded SmolLM2 in one run equals separate single-site runs (slow)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lamina.capture import extract
from lamina.study import StudyOptions, analyze_table
from lamina.study.records import LayerRow

pytestmark = pytest.mark.slow

LAYER_FIELDS = [f.name for f in dataclasses.fields(LayerRow)]
OPTIONS = StudyOptions(permutations=300, diagnostic_permutations=20, sweep_bins=(10, 12))


@pytest.fixture(scope="module")
def every_site(embedded, alice):
    table = extract(embedded, alice, sites="all", windows="middle", window=1024, progress=False)
    options = dataclasses.replace(OPTIONS, sites=("mlp_out", "resid_post", "attn_head"))
    return table, analyze_table(table, options, created="x")


@pytest.mark.parametrize("site", ["attn_out", "mlp_out", "resid_post"])
def test_each_site_equals_its_own_run(embedded, alice, every_site, site):
    table, result = every_site
    alone = extract(embedded, alice, sites=(site,), windows="middle", window=1024, progress=False)
    for layer in range(30):  # the same forward pass: the same norms, bit for bit
        np.testing.assert_array_equal(
            alone.column(f"{site}.{layer}").to_numpy(), table.column(f"{site}.{layer}").to_numpy()
        )
    single = analyze_table(alone, dataclasses.replace(OPTIONS, site=site), created="x")
    profile = next(p for p in result.to_dict()["sites"]["profiles"] if p["site"] == site)
    got = [{k: row[k] for k in LAYER_FIELDS} for row in profile["rows"]]
    assert got == single.to_dict()["part6"]["layers"]


def test_heads_equal_a_run_of_attn_head_alone(embedded, alice, every_site):
    _, result = every_site
    alone = extract(
        embedded,
        alice,
        sites=("attn_out", "attn_head"),
        windows="middle",
        window=1024,
        progress=False,
    )
    single = analyze_table(alone, dataclasses.replace(OPTIONS, sites=("attn_head",)), created="x")
    heads = result.to_dict()["sites"]["profiles"][3]
    alone_heads = single.to_dict()["sites"]["profiles"][1]
    assert (heads["site"], heads["n_layers"], heads["n_heads"]) == ("attn_head", 30, 9)
    assert [{k: r[k] for k in [*LAYER_FIELDS, "head"]} for r in heads["rows"]] == [
        {k: r[k] for k in [*LAYER_FIELDS, "head"]} for r in alone_heads["rows"]
    ]
    # the run-wide corrections span all 3 x 30 layers and 30 x 9 heads
    assert result.sites.n_tests_run == 90 + 270
    assert single.sites.n_tests_run == 30 + 270
