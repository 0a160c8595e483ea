"""Part 5: the permutation test of the chosen statistic at one layer.

The test is the chosen layer's column of Part 6's all-layer test (the same
labellings), except in the notebook mode, where the notebook ran a loop of its
own for this layer and so does lamina.
"""

from __future__ import annotations

import numpy as np

from lamina.stats.catalog import LN2, SIGNED_CENTERS, is_divergence, unit
from lamina.stats.corrections import count_at_least_as_extreme
from lamina.stats.permutation import PermutationResult, permutation_test
from lamina.study.options import StudyOptions
from lamina.study.parts._common import bits, null_summary
from lamina.study.prepare import Prepared
from lamina.study.records import Significance


def single_layer_test(
    prepared: Prepared, options: StudyOptions, all_layers: PermutationResult
) -> tuple[PermutationResult, int]:
    """The test of the single layer and its column in it."""
    if not options.notebook:
        return all_layers, prepared.layer_index
    single = permutation_test(
        prepared.values[:, [prepared.layer_index]],
        prepared.labels,
        statistic=options.statistic,
        bins=options.bins_spec,
        n_permutations=options.permutations,
        seed=options.seed,
        compat="notebook",
    )
    return single, 0


def significance(perm: PermutationResult, column: int, options: StudyOptions) -> Significance:
    """Part 5 from ``column`` of a permutation test."""
    observed = float(np.ravel(perm.statistic)[column])
    null = np.asarray(perm.null_distribution)[:, column].astype(np.float64)
    alternative = options.resolved_alternative
    if options.notebook:
        n_extreme = int((null > observed).sum())  # the notebook's count, no ties
    else:
        center = SIGNED_CENTERS.get(options.statistic, 0.0)
        n_extreme = int(
            count_at_least_as_extreme([observed], null[:, None], alternative, center=center)[0]
        )
    statistic = options.effective_statistic
    divergence = is_divergence(statistic)
    return Significance(
        layer=options.layer,
        statistic_name=statistic,
        statistic_unit=unit(statistic),
        statistic=observed,
        statistic_bits=bits(observed) if divergence else None,
        alternative=alternative,
        n_permutations=int(perm.n_permutations),
        exact=bool(perm.exact),
        n_null_at_least_observed=n_extreme,
        pvalue=float(np.ravel(perm.pvalue)[column]),
        pvalue_rule=perm.pvalue_rule,
        pvalue_floor=None if (options.notebook or perm.exact) else 1.0 / (perm.n_permutations + 1),
        null=null_summary(null),
        null_distribution=null,
        null_distribution_bits=null / LN2 if divergence else None,
        seed=options.seed,
    )
