"""Pinned outputs: ``results.json`` and ``layers.csv`` must not change without a reason.

``tests/data/golden/`` holds token tables and the outputs that lamina 0.1.0 (commit
dbc6f4e, before the study became a package) wrote for them; see its README. Each
case is analysed again here and compared byte for byte, apart from ``created`` and
the names that were renamed on purpose since (the compatibility mode ``seed`` is
now ``notebook``). A change of any number, field or formatting fails this test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lamina.report.summary import layers_csv
from lamina.study import StudyOptions, analyze_table
from lamina.table import read_table

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"

CASES = {
    # `lamina run` on the defaults (layer 4, 30 bins, JS, 1000 permutations, max-statistic)
    "default": StudyOptions(),
    # `lamina run --compat notebook` (the notebook's statistic, permutations and p-value)
    "notebook": StudyOptions(compat="notebook"),
    # a signed-free binless statistic on every window of the text
    "ks": StudyOptions(statistic="ks", permutations=300, layer=2),
    # a synthetic table with planted effects at layers 1, 4, 5 and one zero norm
    "synthetic": StudyOptions(permutations=500, bins=20, correction="holm"),
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
    results = result.to_dict()
    assert result.to_json() == _expected(case, "results.json")
    assert layers_csv(results) == _expected(case, "layers.csv")
