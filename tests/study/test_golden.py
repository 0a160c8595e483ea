"""Pinned outputs: ``results.json`` and ``layers.csv`` must not change without a reason.

``tests/data/golden/`` holds token tables and the outputs that lamina 0.1.0 (commit
dbc6f4e, before the study became a package) wrote for them; see its README. Each
case is analysed again here. Every field the golden file has must come out byte for
byte the same (apart from ``created`` and the names renamed on purpose since:
the compatibility mode ``seed`` is now ``notebook``); fields added since (a new
part, new parameters, new ``layers.csv`` columns) are allowed. A change of any
existing number, field or formatting fails this test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lamina.report.summary import layers_csv
from lamina.study import StudyOptions, analyze_table
from lamina.study.result import dumps_results
from lamina.table import read_table

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"

# The golden files predate robust bins and the circular-shift null (both defaults now):
# these cases ask for the methods of then, which must still give the numbers of then.
THEN = {"binning": "range", "scheme": "exchangeable"}
CASES = {
    # `lamina run` on the defaults of then (layer 4, 30 bins, JS, 1000 permutations, max-statistic)
    "default": StudyOptions(**THEN),
    # `lamina run --compat notebook` (the notebook's statistic, permutations and p-value)
    "notebook": StudyOptions(compat="notebook"),
    # a signed-free binless statistic on every window of the text
    "ks": StudyOptions(statistic="ks", permutations=300, layer=2, **THEN),
    # a synthetic table with planted effects at layers 1, 4, 5 and one zero norm
    "synthetic": StudyOptions(permutations=500, bins=20, correction="holm", **THEN),
}

# Renamed on purpose since the golden files were written: (old text, new text).
RENAMES: list[tuple[str, str]] = [
    # the compatibility mode `seed` is now `notebook` (seed means the random seed only)
    ('"compat": "seed"', '"compat": "notebook"'),
    ('"compat_note": "seed compatibility mode:', '"compat_note": "notebook compatibility mode:'),
    ("seed_symmetric_kl", "notebook_symmetric_kl"),
    ("(seed compatibility mode)", "(notebook compatibility mode)"),
    (",seed\n", ",notebook\n"),
]


def _expected(case: str, name: str) -> str:
    text = (GOLDEN / case / name).read_text(encoding="utf-8")
    for old, new in RENAMES:
        text = text.replace(old, new)
    return text


def pruned(new, old):
    """``new`` restricted to the keys ``old`` has, recursively (dicts; lists element-wise)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {k: pruned(new[k], v) for k, v in old.items() if k in new}
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [pruned(n, o) for n, o in zip(new, old, strict=True)]
    return new


def csv_columns(text: str) -> dict[str, list[str]]:
    header, *rows = [line.split(",") for line in text.splitlines()]
    return {name: [row[j] for row in rows] for j, name in enumerate(header)}


def test_pruning_keeps_only_the_golden_keys_and_sees_changes():
    old = {"a": 1, "b": {"c": [1, 2], "d": [{"e": 1}]}}
    new = {"a": 1, "x": 0, "b": {"y": 0, "c": [1, 2], "d": [{"e": 1, "f": 2}]}}
    assert pruned(new, old) == old
    assert pruned({**new, "a": 2}, old) != old
    assert pruned({"a": 1, "b": {"c": [1, 2]}}, old) != old


@pytest.mark.parametrize("case", sorted(CASES))
def test_results_and_layers_csv_are_unchanged(case):
    golden = json.loads((GOLDEN / case / "results.json").read_text(encoding="utf-8"))
    table = read_table(GOLDEN / case / "tokens.parquet")
    result = analyze_table(
        table,
        CASES[case],
        command_line=golden["command_line"],
        table_path=golden["provenance"]["table"]["path"],
        created=golden["created"],
    )
    expected = _expected(case, "results.json")
    assert dumps_results(pruned(result.to_dict(), json.loads(expected))) == expected
    csv = csv_columns(layers_csv(result.to_dict()))
    for column, values in csv_columns(_expected(case, "layers.csv")).items():
        assert csv[column] == values, column
