"""The token view's data equals the table's columns; large tables are sampled as documented."""

from __future__ import annotations

import base64
import json

import numpy as np
import pyarrow as pa
import pytest

from lamina.study import StudyOptions
from lamina.study.token_view import MISSING, PAGE_TOKENS, PASSAGES, SHOW_ALL, token_view
from study.token_tables import WORDS, multi_site_table, separated_norms, token_table


def decoded(view: dict, j: int) -> np.ndarray:
    """The log-norms of layer ``j`` as the page's script decodes them (NaN for missing)."""
    q = np.frombuffer(base64.b64decode(view["norms"]["data"][j]), dtype="<u2").astype(np.float64)
    out = view["norms"]["lo"][j] + q * view["norms"]["step"][j]
    out[q == MISSING] = np.nan
    return out


def test_view_equals_the_table():
    table = multi_site_table(n_tokens=300, n_layers=4, sites=("attn_out",))
    norms = table.column("attn_out.2").to_numpy().copy()
    norms[5] = 0.0  # a zero norm: marked missing, not a number
    table = table.set_column(table.column_names.index("attn_out.2"), "attn_out.2", pa.array(norms))
    view = token_view(table, StudyOptions(layer=1))
    json.dumps(view, allow_nan=False)  # JSON-ready as it is
    assert view["available"] and view["site"] == "attn_out" and view["layer"] == 1
    assert (view["n_tokens"], view["n_shown"]) == (300, 300)
    assert view["pages"] == [{"from": 0, "to": 300, "context": table.column("token_id")[0].as_py()}]
    assert view["target"] == table.column("target_id").to_pylist()
    assert view["pred"] == table.column("pred_id").to_pylist()
    assert view["correct"] == "".join(
        "1" if c else "0" for c in table.column("correct").to_pylist()
    )
    assert view["rank"] == table.column("target_rank").to_pylist()
    np.testing.assert_allclose(
        view["logprob"], table.column("target_logprob").to_numpy(), atol=5e-5
    )
    np.testing.assert_allclose(view["entropy"], table.column("entropy").to_numpy(), atol=5e-5)
    assert set(view["vocab"]) <= {str(i) for i in range(len(WORDS))}
    assert all(view["vocab"][str(t)] == WORDS[t] for t in view["target"])
    for j in range(4):
        with np.errstate(divide="ignore"):
            truth = np.log(table.column(f"attn_out.{j}").to_numpy().astype(np.float64))
        got = decoded(view, j)
        finite = np.isfinite(truth)
        assert np.isnan(got[~finite]).all()
        assert np.abs(got[finite] - truth[finite]).max() <= view["norms"]["step"][j] / 2 + 1e-12
        assert view["norms"]["q02"][j] == pytest.approx(np.quantile(truth[finite], 0.02))
        assert view["norms"]["q98"][j] == pytest.approx(np.quantile(truth[finite], 0.98))
    assert np.isnan(decoded(view, 2)[5])


def test_a_large_table_is_shown_as_evenly_spaced_passages():
    n = 10_000
    correct, norms = separated_norms(n_tokens=n, n_layers=2, shift_layers=(1,))
    table = token_table(correct, norms)
    meta = json.loads(table.schema.metadata[b"lamina"])
    meta["vocab"] = {str(i): f"w{i}" for i in range(50)}
    table = table.replace_schema_metadata({"lamina": json.dumps(meta)})
    view = token_view(table, StudyOptions(layer=1))
    assert n > SHOW_ALL
    assert view["n_shown"] == PASSAGES * PAGE_TOKENS == len(view["target"])
    starts = [round(k * (n - PAGE_TOKENS) / (PASSAGES - 1)) for k in range(PASSAGES)]
    assert [view["text_pos"][p["from"]] - 100 for p in view["pages"]] == starts
    assert [p["to"] - p["from"] for p in view["pages"]] == [PAGE_TOKENS] * PASSAGES
    assert starts[0] == 0 and starts[-1] + PAGE_TOKENS == n
    assert view["pred"] is None and not view["has_pred"]  # an older table: no predictions
    assert "4 passages of 1,024 consecutive tokens" in view["sampling"]


def test_pages_of_a_midsize_table():
    correct, norms = separated_norms(n_tokens=2500, n_layers=2, shift_layers=(1,))
    table = token_table(correct, norms)
    meta = json.loads(table.schema.metadata[b"lamina"])
    meta["vocab"] = {str(i): f"w{i}" for i in range(50)}
    view = token_view(
        table.replace_schema_metadata({"lamina": json.dumps(meta)}), StudyOptions(layer=0)
    )
    assert [(p["from"], p["to"]) for p in view["pages"]] == [(0, 1024), (1024, 2048), (2048, 2500)]
    assert view["sampling"] == "all 2,500 scored tokens"


def test_a_table_without_token_strings_says_so():
    correct, norms = separated_norms(n_tokens=100, n_layers=2, shift_layers=(1,))
    view = token_view(token_table(correct, norms), StudyOptions(layer=1))
    assert view == {"available": False, "reason": view["reason"]}
    assert "stores no token strings" in view["reason"] and "re-extract" in view["reason"]
