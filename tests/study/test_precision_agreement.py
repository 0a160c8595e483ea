"""The agreement of a half-precision study with the float32 one, recomputed directly from the
two tables: labels, the log-norms' differences against the class difference, the verdicts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats

from lamina.errors import InputError
from lamina.study import StudyOptions, analyze_table
from lamina.study.precision_agreement import (
    MAX_SHIFT_SE,
    MIN_LABEL_AGREEMENT,
    precision_agreement,
)
from study.token_tables import separated_norms, token_table

OPTIONS = StudyOptions(layer=1, permutations=199, diagnostic_permutations=19, controls=())


def _table(correct, norms, dtype):
    table = token_table(correct, norms)
    meta = json.loads(table.schema.metadata[b"lamina"])
    meta["model"]["dtype"] = dtype
    return table.replace_schema_metadata({"lamina": json.dumps(meta)})


@pytest.fixture(scope="module")
def pair():
    correct, norms = separated_norms(3000, 4, shift_layers=(1, 3), shift=0.3, seed=4)
    rng = np.random.default_rng(9)
    # what bfloat16 does to a norm: a relative error of about 2^-9
    noisy = norms * np.exp(rng.normal(0, 2.0**-9, norms.shape))
    return correct, norms, noisy


def test_small_rounding_agrees_and_every_number_is_recomputed(pair):
    correct, norms, noisy = pair
    ref, half = _table(correct, norms, "float32"), _table(correct, noisy, "bfloat16")
    agreement = precision_agreement(
        ref, half, analyze_table(ref, OPTIONS), analyze_table(half, OPTIONS)
    )
    assert agreement["reference_dtype"] == "float32" and agreement["dtype"] == "bfloat16"
    assert agreement["label_agreement"] == 1.0 and agreement["labels_differing"] == 0
    assert agreement["prediction_agreement"] is None  # the synthetic tables have no pred_id
    rows = agreement["sites"][0]["layers"]
    diff = np.abs(np.log(norms.astype(np.float32).astype(np.float64))
                  - np.log(noisy.astype(np.float32).astype(np.float64)))  # fmt: skip
    log_ref = np.log(norms.astype(np.float32).astype(np.float64))
    for j, row in enumerate(rows):
        assert row["median_abs_diff"] == pytest.approx(np.median(diff[:, j]), rel=1e-12)
        assert row["q95_abs_diff"] == pytest.approx(np.quantile(diff[:, j], 0.95), rel=1e-12)
        ok, bad = log_ref[correct, j], log_ref[~correct, j]
        gap = ok.mean() - bad.mean()
        assert row["class_difference"] == pytest.approx(gap, rel=1e-12)
        log_half = np.log(noisy[:, j].astype(np.float32).astype(np.float64))
        moved = abs(log_half[correct].mean() - log_half[~correct].mean() - gap)
        se = scipy.stats.ttest_ind(ok, bad, equal_var=False)
        assert row["shift_se"] == pytest.approx(moved / (gap / se.statistic), rel=1e-9)
        assert row["shift_se"] < MAX_SHIFT_SE  # independent rounding averages out
    assert agreement["verdicts"]["part6"] == {"reference": [1, 3], "other": [1, 3], "same": True}
    assert agreement["verdicts"]["part7"] is None and agreement["verdicts"]["part8"] is None
    assert agreement["holds"] and agreement["moved_layers"] == []


def test_flipped_labels_or_rounding_that_follows_the_labels_break_it(pair):
    correct, norms, noisy = pair
    ref = _table(correct, norms, "float32")
    result = analyze_table(ref, OPTIONS)
    flipped = correct.copy()
    n_flip = int((1 - MIN_LABEL_AGREEMENT) * correct.size) + 30
    flipped[:n_flip] = ~flipped[:n_flip]
    half = _table(flipped, noisy, "bfloat16")
    agreement = precision_agreement(ref, half, result, analyze_table(half, OPTIONS))
    assert agreement["labels_differing"] == n_flip and not agreement["holds"]
    # rounding that is not independent of correctness: correct tokens' norms 2% larger at
    # layer 2 (no effect in float32), which moves that layer's class difference by many SEs
    biased = noisy.copy()
    biased[correct, 2] *= 1.02
    half = _table(correct, biased, "bfloat16")
    agreement = precision_agreement(ref, half, result, analyze_table(half, OPTIONS))
    assert agreement["moved_layers"] == [2] and not agreement["holds"]
    row = agreement["sites"][0]["layers"][2]
    assert row["shift_se"] > 1 and row["class_difference_other"] > row["class_difference"]


def test_tables_of_other_tokens_are_refused(pair):
    correct, norms, _ = pair
    ref = _table(correct, norms, "float32")
    shorter = _table(correct[:-1], norms[:-1], "bfloat16")
    result = analyze_table(ref, OPTIONS)
    with pytest.raises(InputError, match="do not hold the same tokens"):
        precision_agreement(ref, shorter, result, result)
