"""A faithful transcription of the reference notebook's divergence and permutation loop.

Source: notebook 37, "Token prediction and attention KL divergences"
(Mike X Cohen, *50 ML projects to understand LLMs*), Part 4's
``symmetric_KL`` and Part 6's per-layer permutation loop, in torch, as
written there (plotting removed; the activations dict and the accuracy
vector are arguments instead of notebook globals). It is the baseline of
``benchmarks/bench_permutation.py`` and the reference that
``tests/stats/test_seed.py`` checks lamina's ``compat='seed'`` mode against.
Its flaws are kept on purpose; see docs/statistics.md.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


# JSD function
def symmetric_KL(d1, d2, nbins=31):
    # histogram bins
    minmax = [min(min(d1), min(d2)), max(max(d1), max(d2))]
    histbins = torch.linspace(minmax[0], minmax[1], nbins)

    # histogram data in probabilities
    yd1, _ = torch.histogram(d1, bins=histbins)
    yd2, _ = torch.histogram(d2, bins=histbins)
    yd1 = yd1 / yd1.sum()
    yd2 = yd2 / yd2.sum()

    # get the average probability distribution
    pAve = (yd1 + yd2) / 2

    # and calculate symmetric KL
    symKL = F.kl_div(torch.log(yd1 + 1e-15), pAve, reduction="batchmean") + F.kl_div(
        torch.log(yd2 + 1e-15), pAve, reduction="batchmean"
    )
    return symKL / 2


def bincount_sweep(C_norms, I_norms, bincounts=None):
    """Part 4's bin-count study: ``symmetric_KL`` for nbins = 10..50 (edges)."""
    if bincounts is None:
        bincounts = np.arange(10, 51)
    kl_divs = np.zeros(len(bincounts))
    for bini in range(len(bincounts)):
        kl_divs[bini] = symmetric_KL(C_norms, I_norms, bincounts[bini])
    return kl_divs


def permutation_loop(att_projs, prediction_acc, n_layers, n_permutes=1000):
    """Part 6's loop: per layer, the observed divergence, its null and its p-value.

    ``att_projs``: {f"attn_L{i}": tensor (1, n_tokens, d)}; ``prediction_acc``:
    bool numpy array (n_tokens,). Draws permutations from numpy's global
    RandomState (``np.random.permutation``), as the notebook does. Returns
    (kldivs (L,), kl_perms (n_permutes, L), pvals (L,), diffs (L,)).
    """
    kldivs = np.zeros(n_layers)
    kl_perms_all = np.zeros((n_permutes, n_layers))
    pvals = np.zeros(n_layers)
    diffs = np.zeros(n_layers)

    for layeri in range(n_layers):
        # adjustment vectors and their norms
        C = att_projs[f"attn_L{layeri}"][0, prediction_acc, :]
        C_norms = torch.norm(C, dim=-1).log()

        I = att_projs[f"attn_L{layeri}"][0, ~prediction_acc, :]  # noqa: E741 (the notebook's name)
        I_norms = torch.norm(I, dim=-1).log()

        diff = C_norms.mean() - I_norms.mean()

        # observed KL distance
        kldiv = symmetric_KL(C_norms, I_norms).item()

        # H0 distribution via permutation testing
        kl_perms = np.zeros(n_permutes)
        for permi in range(n_permutes):
            # permuted predictions
            fake_predictions = np.random.permutation(prediction_acc)  # noqa: NPY002
            C = att_projs[f"attn_L{layeri}"][0, fake_predictions, :]
            C_norms = torch.norm(C, dim=-1).log()

            I = att_projs[f"attn_L{layeri}"][0, ~fake_predictions, :]  # noqa: E741
            I_norms = torch.norm(I, dim=-1).log()

            # calculate and store KL
            kl_perms[permi] = symmetric_KL(C_norms, I_norms)

        # p-value is number of H0 values greater than observed value
        pval = (kl_perms > kldiv).sum() / n_permutes

        kldivs[layeri] = kldiv
        kl_perms_all[:, layeri] = kl_perms
        pvals[layeri] = pval
        diffs[layeri] = float(diff)

    return kldivs, kl_perms_all, pvals, diffs
