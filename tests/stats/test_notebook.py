"""compat='notebook' against a direct torch transcription of the reference notebook."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lamina.errors import InputError
from lamina.stats import (
    js_divergence,
    permutation_test,
)
from lamina.stats._notebook import (
    notebook_kl_div,
    notebook_linspace,
    notebook_pvalue,
    notebook_symmetric_kl,
)
from notebook import notebook_loop as notebook


def _log_norm_groups(seed: int, n: int = 400):
    """Float32 log-norms of random vectors, split as the notebook splits them."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, 32)) * np.exp(rng.normal(0, 0.3, (n, 1)))
    log_norms = torch.norm(torch.from_numpy(vectors.astype(np.float32)), dim=-1).log()
    correct = rng.random(n) < 0.45
    return log_norms, correct


@pytest.mark.parametrize("seed", range(3))
def test_linspace_matches_torch_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        lo, hi = np.sort(rng.normal(size=2) * rng.choice([0.01, 1, 30])).astype(np.float32)
        lo = lo + np.float32(rng.normal() * 3)
        steps = int(rng.integers(2, 80))
        expected = torch.linspace(torch.tensor(lo), torch.tensor(hi), steps).numpy()
        np.testing.assert_array_equal(notebook_linspace(lo, hi, steps), expected)


@pytest.mark.parametrize("seed", range(4))
def test_symmetric_kl_and_its_bin_sweep_match_the_notebook(seed):
    log_norms, correct = _log_norm_groups(seed)
    c, i = log_norms[correct], log_norms[~correct]
    assert notebook_symmetric_kl(c.numpy(), i.numpy()) == pytest.approx(
        float(notebook.symmetric_KL(c, i)), abs=1e-6, rel=1e-6
    )
    sweep = notebook.bincount_sweep(c, i)  # nbins (edges) 10..50
    ours = [notebook_symmetric_kl(c.numpy(), i.numpy(), int(nb)) for nb in range(10, 51)]
    np.testing.assert_allclose(ours, sweep, rtol=1e-6, atol=1e-6)


def test_notebook_statistic_is_not_js_and_scales_with_the_bin_count():
    log_norms, correct = _log_norm_groups(7)
    c, i = log_norms[correct].numpy(), log_norms[~correct].numpy()
    edges = notebook_linspace(min(c.min(), i.min()), max(c.max(), i.max()), 31)
    counts_c = np.histogram(c, edges)[0]
    counts_i = np.histogram(i, edges)[0]
    # the notebook's value is KL(mix || each) / n_bins, not JS
    assert notebook_symmetric_kl(c, i) != pytest.approx(js_divergence(counts_c, counts_i), rel=0.1)


def test_notebook_pvalue_is_the_notebooks():
    null = np.array([0.1, 0.2, 0.2, 0.3])
    assert notebook_pvalue(null, 0.2) == 0.25  # ties do not count
    assert notebook_pvalue(null, 0.5) == 0.0  # can be zero


def test_permutation_test_notebook_mode_reproduces_the_notebook_loop():
    rng = np.random.default_rng(3)
    n, n_layers, m = 200, 3, 40
    acts = {
        f"attn_L{j}": torch.from_numpy(
            (rng.normal(size=(1, n, 24)) * np.exp(rng.normal(0, 0.3, (1, n, 1)))).astype(np.float32)
        )
        for j in range(n_layers)
    }
    correct = rng.random(n) < 0.45
    np.random.seed(17)  # noqa: NPY002 (the notebook draws from numpy's global state)
    kldivs, kl_perms, pvals, _ = notebook.permutation_loop(acts, correct, n_layers, m)
    log_norms = np.stack(
        [torch.norm(acts[f"attn_L{j}"][0], dim=-1).log().numpy() for j in range(n_layers)], axis=1
    )
    res = permutation_test(log_norms, correct, n_permutations=m, seed=17, compat="notebook")
    np.testing.assert_allclose(res.statistic, kldivs, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(res.null_distribution, kl_perms, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(res.pvalue, pvals)
    assert res.compat == "notebook" and res.statistic_name == "notebook_symmetric_kl"
    assert np.isnan(res.pvalue_maxstat).all()
    assert res.n_bins.tolist() == [30] * n_layers  # 31 edges


@pytest.mark.parametrize(
    "kwargs",
    [
        {"statistic": "ks"},
        {"bins": "fd"},
        {"alternative": "two-sided"},
        {"base": 2},
        {"exact": True},
    ],
)
def test_notebook_mode_refuses_what_the_notebook_did_not_do(kwargs):
    log_norms, correct = _log_norm_groups(1, n=50)
    with pytest.raises(InputError):
        permutation_test(log_norms.numpy(), correct, compat="notebook", n_permutations=5, **kwargs)


@pytest.mark.parametrize("seed", range(3))
def test_notebook_kl_div_is_the_notebooks_f_kl_div(seed):
    """Part 4's c2i / i2c: F.kl_div(log(y + 1e-15), target, reduction='batchmean')."""
    rng = np.random.default_rng(seed)
    counts_c = rng.integers(0, 40, size=30)
    counts_i = rng.integers(0, 40, size=30)
    counts_i[rng.integers(0, 30, size=3)] = 0  # empty bins, where the 1e-15 matters
    yc = torch.from_numpy(counts_c.astype(np.float32))
    yi = torch.from_numpy(counts_i.astype(np.float32))
    yc, yi = yc / yc.sum(), yi / yi.sum()
    c2i = torch.nn.functional.kl_div(torch.log(yc + 1e-15), yi, reduction="batchmean")
    i2c = torch.nn.functional.kl_div(torch.log(yi + 1e-15), yc, reduction="batchmean")
    assert notebook_kl_div(counts_i, counts_c) == pytest.approx(float(c2i), rel=1e-6, abs=1e-7)
    assert notebook_kl_div(counts_c, counts_i) == pytest.approx(float(i2c), rel=1e-6, abs=1e-7)
