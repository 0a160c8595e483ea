"""The permutation engine against brute force, direct recomputation and scipy."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina import backends
from lamina.backends import counts as backend_counts
from lamina.errors import InputError
from lamina.stats import (
    STATISTICS,
    _kernels,
    auroc,
    bin_edges,
    hedges_g,
    histogram_counts,
    js_divergence,
    kl_divergence,
    knn_kl_divergence,
    ks_statistic,
    mean_difference,
    permutation_test,
    wasserstein,
)
from lamina.stats._labellings import exact_labellings, random_labellings

BACKENDS = ["numpy"] + (["torch"] if backends.torch_int_mm_available() else [])


def _direct(statistic: str, x: np.ndarray, lab: np.ndarray, *, bins=8, pseudocount=0.5) -> float:
    """One column's statistic from lamina's public two-sample functions."""
    a, b = x[lab], x[~lab]
    if statistic in ("js", "kl", "kl_reverse"):
        edges = bin_edges(x, bins)
        ca, cb = histogram_counts(a, edges), histogram_counts(b, edges)
        if statistic == "js":
            return js_divergence(ca, cb)
        if statistic == "kl":
            return kl_divergence(ca, cb, pseudocount=pseudocount)
        return kl_divergence(cb, ca, pseudocount=pseudocount)
    funcs = {
        "mean_difference": mean_difference,
        "hedges_g": hedges_g,
        "auroc": auroc,
        "ks": ks_statistic,
        "wasserstein": wasserstein,
        "knn_kl": knn_kl_divergence,
    }
    if statistic == "knn_kl_reverse":
        return knn_kl_divergence(b, a)
    return funcs[statistic](a, b)


def _data(seed=0, n=60, n_cols=3, ties=False):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, n_cols)) * rng.uniform(0.5, 2, n_cols)
    if ties:
        values = np.round(values, 1)
    labels = rng.random(n) < 0.45
    labels[:2], labels[2:4] = True, False
    return values, labels


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("statistic", STATISTICS)
def test_every_null_row_equals_a_direct_recomputation(statistic, backend):
    values, labels = _data(seed=1, ties=statistic in ("ks", "wasserstein", "auroc"))
    m, seed = 12, 5
    kwargs = {"pseudocount": 0.5} if statistic in ("kl", "kl_reverse") else {}
    res = permutation_test(
        values,
        labels,
        statistic=statistic,
        bins=8,
        n_permutations=m,
        seed=seed,
        backend=backend,
        **kwargs,
    )
    (block,) = list(random_labellings(labels.size, int(labels.sum()), m, seed))
    for j in range(values.shape[1]):
        assert res.statistic[j] == pytest.approx(_direct(statistic, values[:, j], labels), rel=1e-9)
        expected = [_direct(statistic, values[:, j], row) for row in block]
        np.testing.assert_allclose(res.null_distribution[:, j], expected, rtol=1e-9, atol=1e-12)


def test_kl_without_pseudocount_is_infinite_and_counted():
    values, labels = _data(seed=2, n=40, n_cols=1)
    res = permutation_test(values, labels, statistic="kl", bins=12, n_permutations=50, seed=0)
    assert res.statistic[0] == math.inf
    b = np.isinf(res.null_distribution[:, 0]).sum()
    assert res.pvalue[0] == pytest.approx((b + 1) / 51)


@pytest.mark.parametrize(
    ("statistic", "alternative"),
    [
        ("js", "greater"),
        ("mean_difference", "two-sided"),
        ("auroc", "less"),
        ("hedges_g", "greater"),
        ("ks", "greater"),
        ("wasserstein", "greater"),
    ],
)
def test_exact_test_equals_brute_force_enumeration(statistic, alternative):
    values, labels = _data(seed=3, n=10, n_cols=2)
    labels = np.zeros(10, dtype=bool)
    labels[[0, 3, 4, 8]] = True
    res = permutation_test(
        values, labels, statistic=statistic, bins=4, n_permutations=500, alternative=alternative
    )
    assert res.exact and res.n_permutations == math.comb(10, 4) == 210
    center = 0.5 if statistic == "auroc" else 0.0
    for j in range(2):
        x = values[:, j]
        null = []
        for chosen in itertools.combinations(range(10), 4):
            lab = np.zeros(10, dtype=bool)
            lab[list(chosen)] = True
            null.append(_direct(statistic, x, lab, bins=4))
        null = np.array(null)
        observed = _direct(statistic, x, labels, bins=4)
        np.testing.assert_allclose(res.null_distribution[:, j], null, rtol=1e-9, atol=1e-12)
        tol = 1e-12 * abs(observed)
        if alternative == "greater":
            b = (null >= observed - tol).sum()
        elif alternative == "less":
            b = (null <= observed + tol).sum()
        else:
            b = (np.abs(null - center) >= abs(observed - center) - tol).sum()
        assert res.pvalue[j] == pytest.approx(b / 210, rel=1e-12)
        assert res.pvalue[j] >= 1 / 210


def test_exact_is_chosen_automatically_and_can_be_refused():
    values, labels = _data(seed=4, n=12, n_cols=1)
    n_labellings = math.comb(12, int(labels.sum()))
    assert permutation_test(values, labels, n_permutations=n_labellings).exact
    assert not permutation_test(values, labels, n_permutations=n_labellings - 1).exact
    assert not permutation_test(values, labels, n_permutations=5000, exact=False).exact
    with pytest.raises(InputError, match="exact"):
        permutation_test(np.arange(60.0), np.arange(60) < 30, exact=True)


def test_exact_labellings_enumerate_each_subset_once():
    blocks = np.concatenate(list(exact_labellings(7, 3)))
    assert blocks.shape == (35, 7) and (blocks.sum(axis=1) == 3).all()
    assert len({row.tobytes() for row in blocks}) == 35


@pytest.mark.parametrize(("n", "k"), [(6, 2), (7, 5), (9, 1)])
def test_random_labellings_are_uniform(n, k):
    draws = np.concatenate(list(random_labellings(n, k, 30_000, seed=8)))
    assert (draws.sum(axis=1) == k).all()
    subsets = list(itertools.combinations(range(n), k))
    index = {s: i for i, s in enumerate(subsets)}
    counts = np.bincount([index[tuple(np.flatnonzero(r))] for r in draws], minlength=len(subsets))
    assert scipy.stats.chisquare(counts).pvalue > 1e-3


def test_randomized_agrees_with_scipy_permutation_test():
    rng = np.random.default_rng(2)
    x = rng.normal(size=150)
    labels = rng.random(150) < 0.5
    x[labels] *= 1.5  # a wider P group: p about 0.16
    edges = bin_edges(x, 10)
    bin_of = np.searchsorted(edges, x, side="right") - 1
    bin_of = np.minimum(bin_of, 9).astype(float)

    def js_statistic(a, b, axis=-1):  # vectorized JS of two groups of bin indices
        a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
        pa = np.stack([(a == i).mean(axis=-1) for i in range(10)], axis=-1)
        pb = np.stack([(b == i).mean(axis=-1) for i in range(10)], axis=-1)
        mix = (pa + pb) / 2
        return 0.5 * (scipy.special.rel_entr(pa, mix) + scipy.special.rel_entr(pb, mix)).sum(-1)

    m = 3999
    ref = scipy.stats.permutation_test(
        (bin_of[labels], bin_of[~labels]),
        js_statistic,
        vectorized=True,
        n_resamples=m,
        alternative="greater",
        rng=np.random.default_rng(10),
    )
    ours = permutation_test(x, labels, statistic="js", bins=10, n_permutations=m, seed=11)
    assert ours.statistic[0] == pytest.approx(ref.statistic, rel=1e-12)
    p = ref.pvalue
    se = math.sqrt(2 * p * (1 - p) / m)  # two independent Monte-Carlo estimates
    assert abs(ours.pvalue[0] - p) < 4 * se
    # and the two nulls sample the same distribution
    assert scipy.stats.ks_2samp(ours.null_distribution[:, 0], ref.null_distribution).pvalue > 1e-3


def test_pvalues_are_uniform_under_the_null():
    rng = np.random.default_rng(12)
    n_datasets, m = 300, 99
    p_mean, p_js = [], []
    for _ in range(n_datasets):
        values = rng.normal(size=(30, 1))
        labels = rng.permutation(np.arange(30) < 13)  # independent of the values
        seed = int(rng.integers(2**31))
        p_mean.append(
            permutation_test(
                values,
                labels,
                statistic="mean_difference",
                n_permutations=m,
                seed=seed,
                backend="numpy",
            ).pvalue[0]
        )
        p_js.append(
            permutation_test(
                values, labels, bins=5, n_permutations=m, seed=seed, backend="numpy"
            ).pvalue[0]
        )
    # a continuous statistic: p is uniform on {1/100, ..., 1}
    assert scipy.stats.kstest(p_mean, "uniform").pvalue > 1e-3
    # JS of 5-bin histograms has many ties, which make p conservative, never anti-conservative
    se = math.sqrt(0.1 * 0.9 / n_datasets)
    assert np.mean(np.array(p_js) <= 0.1) <= 0.1 + 3 * se
    assert np.mean(np.array(p_mean) <= 0.1) == pytest.approx(0.1, abs=3 * se)


def test_maxstat_controls_the_familywise_error():
    rng = np.random.default_rng(13)
    n_datasets, n_cols, alpha = 300, 8, 0.05
    any_raw = any_maxstat = any_holm = 0
    for _ in range(n_datasets):
        values = rng.normal(size=(40, n_cols))
        labels = rng.permutation(np.arange(40) < 20)
        res = permutation_test(
            values,
            labels,
            statistic="mean_difference",
            alternative="two-sided",
            n_permutations=99,
            seed=int(rng.integers(2**31)),
            backend="numpy",
        )
        any_raw += (res.pvalue <= alpha).any()
        any_maxstat += (res.pvalue_maxstat <= alpha).any()
        any_holm += (res.pvalue_holm <= alpha).any()
    se = math.sqrt(alpha * (1 - alpha) / n_datasets)
    assert any_maxstat / n_datasets <= alpha + 3 * se
    assert any_holm / n_datasets <= alpha + 3 * se
    assert any_raw / n_datasets > 0.2  # uncorrected: about 1 - 0.95**8 = 0.34


def test_power_on_a_real_difference():
    rng = np.random.default_rng(14)
    values = rng.normal(size=(400, 4))
    labels = rng.random(400) < 0.5
    values[labels, 2] += 0.8
    for statistic in ("js", "mean_difference", "auroc", "ks"):
        res = permutation_test(values, labels, statistic=statistic, n_permutations=199)
        assert res.pvalue[2] == pytest.approx(1 / 200)
        assert res.pvalue_maxstat[2] == pytest.approx(1 / 200)
        assert res.pvalue_maxstat[[0, 1, 3]].min() > 0.01


def test_same_seed_same_null_whatever_the_chunking(monkeypatch):
    values, labels = _data(seed=15, n=200, n_cols=4)
    first = permutation_test(values, labels, n_permutations=100, seed=3)
    again = permutation_test(values, labels, n_permutations=100, seed=3, backend="numpy")
    np.testing.assert_array_equal(first.null_distribution, again.null_distribution)
    monkeypatch.setattr(_kernels, "CHUNK_BYTES", 30_000)  # ~10 labellings per chunk
    monkeypatch.setattr(backend_counts, "ONEHOT_BYTES", 10_000)  # one-hot of 1-2 columns at a time
    chunked = permutation_test(values, labels, n_permutations=100, seed=3)
    np.testing.assert_allclose(first.null_distribution, chunked.null_distribution, rtol=1e-14)
    other = permutation_test(values, labels, n_permutations=100, seed=4)
    assert not np.array_equal(first.null_distribution, other.null_distribution)
    assert first.seed == 3 and other.seed == 4


def test_rules_give_per_column_bins_and_bits():
    values, labels = _data(seed=16, n=300, n_cols=3)
    values[:, 1] *= 10
    res = permutation_test(values, labels, bins="fd", n_permutations=20)
    for j in range(3):
        assert res.n_bins[j] == bin_edges(values[:, j], "fd").size - 1
        assert res.statistic[j] == pytest.approx(_direct("js", values[:, j], labels, bins="fd"))
    bits = permutation_test(values, labels, bins="fd", n_permutations=20, base=2)
    np.testing.assert_allclose(bits.statistic, res.statistic / math.log(2), rtol=1e-12)
    np.testing.assert_allclose(bits.pvalue, res.pvalue)


def test_result_records_its_parameters_and_serialises():
    values, labels = _data(seed=17, n=50, n_cols=2)
    res = permutation_test(values, labels, statistic="kl", bins=15, n_permutations=30, seed=7)
    assert res.null_distribution.shape == (30, 2)
    for arr in (res.statistic, res.pvalue, res.pvalue_maxstat, res.pvalue_holm, res.pvalue_fdr):
        assert arr.shape == (2,)
    assert (res.statistic_name, res.alternative, res.seed, res.bins, res.compat) == (
        "kl",
        "greater",
        7,
        15,
        "none",
    )
    assert (res.n_true, res.n_false) == (int(labels.sum()), int((~labels).sum()))
    out = json.loads(json.dumps(res.to_dict(include_null=True)))
    assert out["statistic"][0] in ("inf", res.statistic[0])
    assert len(out["null_distribution"]) == 30


def test_one_dimensional_values():
    values, labels = _data(seed=18, n=80, n_cols=1)
    res = permutation_test(values[:, 0], labels, n_permutations=50)
    assert res.statistic.shape == (1,) and res.null_distribution.shape == (50, 1)


@pytest.mark.parametrize(
    ("values", "labels", "kwargs", "match"),
    [
        (np.array([[0.0], [np.inf], [1.0], [2.0]]), [True, True, False, False], {}, "non-finite"),
        (np.arange(6.0), np.array([1, 1, 0, 0, 1, 0]), {}, "bool"),
        (np.arange(6.0), np.array([True] * 5), {}, "one label per row"),
        (np.arange(6.0), np.array([True] + [False] * 5), {}, "at least 2"),
        (np.arange(6.0), np.arange(6) < 3, {"bins": 1}, "at least 2"),
        (np.arange(6.0), np.arange(6) < 3, {"n_permutations": 0}, "n_permutations"),
        (np.arange(6.0), np.arange(6) < 3, {"statistic": "t"}, "unknown"),
        (np.arange(6.0), np.arange(6) < 3, {"alternative": "less"}, "not signed"),
        (np.arange(6.0), np.arange(6) < 3, {"alternative": "bigger"}, "unknown"),
        (np.arange(6.0), np.arange(6) < 3, {"statistic": "ks", "base": 2}, "divergences"),
        (np.arange(6.0), np.arange(6) < 3, {"compat": "nope"}, "compat"),
        (np.arange(6.0), np.arange(6) < 3, {"pseudocount": -1}, "pseudocount"),
        (np.arange(6.0), np.arange(6) < 3, {"backend": "gpu"}, "backend"),
        (np.ones((6, 2)), np.arange(6) < 3, {"statistic": "hedges_g"}, "constant"),
    ],
)
def test_bad_inputs_raise_one_sentence(values, labels, kwargs, match):
    with pytest.raises(InputError, match=match) as info:
        permutation_test(values, labels, n_permutations=kwargs.pop("n_permutations", 10), **kwargs)
    assert "\n" not in str(info.value)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(4, 30),
    seed=st.integers(0, 2**16),
    statistic=st.sampled_from(["js", "mean_difference", "auroc", "ks"]),
    m=st.integers(1, 60),
)
def test_pvalues_lie_in_the_unit_interval(n, seed, statistic, m):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, 2))
    labels = rng.permutation(np.arange(n) < max(2, min(n - 2, n // 3)))
    res = permutation_test(
        values, labels, statistic=statistic, n_permutations=m, seed=seed, bins=5, backend="numpy"
    )
    floor = 1 / res.n_permutations if res.exact else 1 / (m + 1)
    for p in (res.pvalue, res.pvalue_maxstat, res.pvalue_holm, res.pvalue_fdr):
        assert ((p >= floor - 1e-15) & (p <= 1)).all()


def test_auto_backend_imports_torch_only_when_it_pays():
    """`lamina analyze` on a small table must not pay torch's import for the counts."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from lamina.stats import permutation_test\n"
        "rng = np.random.default_rng(0)\n"
        "r = permutation_test(rng.normal(size=(200, 3)), rng.random(200) < 0.5,\n"
        "                     n_permutations=50)\n"
        "print(r.backend, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["numpy-float32", "False"]


def test_auto_backend_gives_the_same_null_as_numpy():
    rng = np.random.default_rng(5)
    values, labels = rng.normal(size=(120, 4)), rng.random(120) < 0.4
    auto = permutation_test(values, labels, n_permutations=200, seed=1, backend="auto")
    plain = permutation_test(values, labels, n_permutations=200, seed=1, backend="numpy")
    np.testing.assert_array_equal(auto.null_distribution, plain.null_distribution)
    np.testing.assert_array_equal(auto.pvalue, plain.pvalue)
