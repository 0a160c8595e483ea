"""The count backends: bit-identical exact counts on every path, and ``auto`` following the cache.

Counts are checked against a direct ``np.bincount`` per labelling and column;
the choice of ``auto`` against monkeypatched measurements (never a timing).
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from lamina import backends
from lamina.backends import autotune, choice, counts, products
from lamina.errors import InputError
from lamina.stats import permutation_test

CPU_BACKENDS = [name for name in backends.NAMES if name != "cuda"]


def _requires(name: str) -> None:
    if not backends.available(name):
        pytest.skip(f"{name} is not available here")


def _data(seed: int, n: int = 500, n_bins=(3, 7, 30, 2), rows: int = 37):
    rng = np.random.default_rng(seed)
    n_bins = np.array(n_bins)
    bins = np.stack([rng.integers(0, b, n) for b in n_bins], axis=1).astype(np.uint8)
    block = rng.random((rows, n)) < rng.random((rows, 1))
    return bins, n_bins, block


def _direct(bins: np.ndarray, n_bins: np.ndarray, block: np.ndarray) -> np.ndarray:
    """Each labelling's count per bin of each column, with np.bincount."""
    return np.array(
        [
            np.concatenate([np.bincount(bins[row, j], minlength=b) for j, b in enumerate(n_bins)])
            for row in block
        ]
    )


class Pieces:
    """A block handed over a range of tokens at a time, as a streamed block is."""

    def __init__(self, block: np.ndarray, cuts: list[int]) -> None:
        self.block, self.cuts, self.shape = block, cuts, block.shape

    def token_pieces(self):
        edges = [0, *self.cuts, self.block.shape[1]]
        for start, stop in itertools.pairwise(edges):
            yield start, self.block[:, start:stop]


@pytest.mark.parametrize("name", backends.NAMES)
def test_every_backend_counts_exactly(name):
    _requires(name)
    bins, n_bins, block = _data(1)
    got = backends.OneHotCounts(bins, n_bins, name)(block)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, _direct(bins, n_bins, block))
    # one labelling given as a zero-stride view (as the observed labels are)
    np.testing.assert_array_equal(
        backends.OneHotCounts(bins, n_bins, name)(block[0][None, :]), got[:1]
    )


@pytest.mark.parametrize("name", backends.NAMES)
@pytest.mark.parametrize("keep", [True, False])
def test_tiles_groups_and_pieces_give_the_same_counts(name, keep, monkeypatch):
    """Small budgets: many tiles of tokens, one column per group, kept or scratch one-hot."""
    _requires(name)
    bins, n_bins, block = _data(2, n=700)
    expected = _direct(bins, n_bins, block)
    monkeypatch.setattr(counts, "TILE_TOKENS", 64)
    monkeypatch.setattr(counts, "MIN_TILE_TOKENS", 200)
    monkeypatch.setattr(counts, "SCRATCH_BYTES", 2000)
    monkeypatch.setattr(counts, "ONEHOT_BYTES", 10**7 if keep else 2000)
    engine = backends.OneHotCounts(bins, n_bins, name)
    assert (engine.cache is not None) == keep
    assert len(engine.groups) > 1 and engine.tile <= 64
    np.testing.assert_array_equal(engine(block), expected)
    np.testing.assert_array_equal(engine(Pieces(block, [5, 64, 100, 333, 699])), expected)
    np.testing.assert_array_equal(engine(block), expected)  # the scratch tile was cleared


def test_the_device_path_runs_on_the_cpu_too():
    """The cuda backend's code (one-hot and sums kept on the device) on torch's CPU device."""
    pytest.importorskip("torch")
    bins, n_bins, block = _data(3)
    engine = backends.OneHotCounts(bins, n_bins, "numpy-float32")
    engine.product = products.TorchDevice("cpu")
    engine.cache = [[engine._cached(0, bins.shape[0], g) for g in range(len(engine.groups))]]
    np.testing.assert_array_equal(engine(block), _direct(bins, n_bins, block))
    engine.cache = None
    np.testing.assert_array_equal(engine(Pieces(block, [100])), _direct(bins, n_bins, block))


@pytest.mark.parametrize("name", ["numpy-float32", "torch-float32"])
def test_float32_counts_stay_exact_past_two_to_the_24(name):
    """2^24 + 3 is not a float32; summing tiles of 2^17 tokens in int64 still counts it exactly."""
    _requires(name)
    n = 2**24 + 3
    assert int(np.float32(n)) != n
    bins = np.zeros((n, 1), dtype=np.uint8)
    got = backends.OneHotCounts(bins, np.array([1]), name)(np.ones((1, n), dtype=bool))
    assert got.tolist() == [[n]]


@pytest.mark.parametrize("statistic", ["js", "kl"])
def test_every_backend_gives_the_same_null(statistic):
    rng = np.random.default_rng(4)
    values, labels = rng.normal(size=(300, 3)), rng.random(300) < 0.4
    kwargs = {"statistic": statistic, "n_permutations": 150, "seed": 2, "bins": 12}
    if statistic == "kl":
        kwargs["pseudocount"] = 0.5
    reference = permutation_test(values, labels, backend="numpy-float32", **kwargs)
    for name in backends.NAMES:
        if backends.available(name):
            res = permutation_test(values, labels, backend=name, **kwargs)
            assert res.backend == name and res.backend_reason == f"requested with backend={name!r}"
            np.testing.assert_array_equal(res.null_distribution, reference.null_distribution)
            np.testing.assert_array_equal(res.statistic, reference.statistic)


# ---------------------------------------------------------------------------- choosing


@pytest.fixture
def fake_machine(tmp_path, monkeypatch):
    """torch imported, three CPU backends available, a private cache, and timings we set."""
    monkeypatch.setenv("LAMINA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(backends.ENVIRONMENT, raising=False)
    monkeypatch.setattr(choice, "torch_imported", lambda: True)
    monkeypatch.setattr(choice, "available", lambda name: name != "cuda")
    seconds = {"numpy-float32": 3.0, "torch-float32": 1.0, "torch-int8": 2.0}
    calls: list[tuple[str, int]] = []

    def measure(name, rows, tokens, bins, repeats):
        calls.append((name, repeats))
        return seconds[name] * rows

    monkeypatch.setattr(autotune, "measure", measure)
    return seconds, calls, tmp_path / "cache" / autotune.CACHE_NAME


SHAPE = {"rows": 300, "tokens": 40_000, "bins": 1080}


def test_auto_takes_the_calibrated_fastest_and_caches_it(fake_machine):
    seconds, calls, path = fake_machine
    first = backends.choose_backend("auto", **SHAPE)
    assert first.name == "torch-float32"
    assert first.reason == (
        "calibrated on this machine: torch-float32 fastest of numpy-float32, torch-float32, "
        f"torch-int8 (cached in {path})"
    )
    assert {name for name, _ in calls} == set(CPU_BACKENDS)
    data = json.loads(path.read_text())
    (entries,) = data["machines"].values()
    assert [e["fastest"] for e in entries.values()] == ["torch-float32"]
    # the next run reads the cache: no measurement, the same choice and sentence
    calls.clear()
    seconds["torch-int8"] = 0.1  # would win if measured again
    again = backends.choose_backend("auto", **SHAPE)
    assert again == first and calls == []
    # another shape class is measured on its own
    other = backends.choose_backend("auto", rows=16, tokens=1000, bins=90)
    assert other.name == "torch-int8" and calls


def test_the_screen_drops_a_much_slower_backend(fake_machine):
    seconds, calls, _ = fake_machine
    seconds["torch-int8"] = 100.0
    assert backends.choose_backend("auto", **SHAPE).name == "torch-float32"
    assert ("torch-int8", autotune.REPEATS) not in calls
    assert ("torch-float32", autotune.REPEATS) in calls


@pytest.mark.parametrize(
    "spoil",
    [
        lambda path, data: path.write_text("{not json"),
        lambda path, data: path.write_text(json.dumps({**data, "version": 0})),
        lambda path, data: path.write_text(
            json.dumps({**data, "machines": {"cpu=another": next(iter(data["machines"].values()))}})
        ),
        lambda path, data: path.write_text(
            json.dumps(data).replace('"torch-float32", "torch-int8"', '"torch-float32"')
        ),
    ],
    ids=["corrupt", "old-format", "other-machine", "other-candidates"],
)
def test_a_spoilt_or_foreign_cache_is_measured_again(fake_machine, spoil):
    seconds, calls, path = fake_machine
    backends.choose_backend("auto", **SHAPE)
    data = json.loads(path.read_text())
    spoil(path, data)
    calls.clear()
    seconds["torch-int8"] = 0.1
    assert backends.choose_backend("auto", **SHAPE).name == "torch-int8"
    assert calls
    assert backends.choose_backend("auto", **SHAPE).name == "torch-int8"  # and cached again


def test_an_unwritable_cache_is_said(fake_machine, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("LAMINA_CACHE", str(blocker))
    got = backends.choose_backend("auto", **SHAPE)
    assert got.name == "torch-float32"
    assert got.reason.endswith(f"(not cached: {blocker / autotune.CACHE_NAME} cannot be written)")


def test_overrides_come_before_the_calibration(fake_machine, monkeypatch):
    _, calls, _ = fake_machine
    monkeypatch.setenv(backends.ENVIRONMENT, "torch-int8")
    got = backends.choose_backend("auto", **SHAPE)
    assert got == backends.Choice("torch-int8", "set by LAMINA_PERM_BACKEND=torch-int8")
    got = backends.choose_backend("numpy", **SHAPE)  # the argument wins over the environment
    assert got == backends.Choice("numpy-float32", "requested with backend='numpy'")
    assert calls == []
    monkeypatch.setenv(backends.ENVIRONMENT, "gpu")
    with pytest.raises(InputError, match="LAMINA_PERM_BACKEND=gpu is unknown") as info:
        backends.choose_backend("auto", **SHAPE)
    assert "\n" not in str(info.value)


def test_small_work_without_torch_keeps_numpy_unmeasured(fake_machine, monkeypatch):
    _, calls, _ = fake_machine
    monkeypatch.setattr(choice, "torch_imported", lambda: False)
    got = backends.choose_backend("auto", rows=100, tokens=1000, bins=90, work=1e9)
    assert got.name == "numpy-float32" and "not imported" in got.reason and calls == []
    big = backends.choose_backend("auto", **SHAPE, work=1e12)
    assert big.name == "torch-float32" and calls


def test_a_backend_that_is_not_here_is_refused_in_one_sentence(monkeypatch):
    monkeypatch.setattr(choice, "available", lambda name: name == "numpy-float32")
    for name in ("cuda", "torch-int8", "torch-float32"):
        with pytest.raises(InputError, match="not available here") as info:
            backends.choose_backend(name, **SHAPE)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="unknown"):
        backends.choose_backend("gpu", **SHAPE)


def test_permutation_test_records_the_calibrated_choice(fake_machine):
    for name in ("torch-float32", "torch-int8"):
        _requires(name)
    seconds, _, _ = fake_machine
    seconds["torch-int8"] = 0.5
    rng = np.random.default_rng(6)
    values, labels = rng.normal(size=(400, 5)), rng.random(400) < 0.5
    res = permutation_test(values, labels, n_permutations=120, seed=3)
    assert res.backend == "torch-int8"
    assert res.backend_reason.startswith("calibrated on this machine: torch-int8 fastest")
    assert res.to_dict()["backend_reason"] == res.backend_reason
    plain = permutation_test(values, labels, n_permutations=120, seed=3, backend="numpy-float32")
    np.testing.assert_array_equal(res.null_distribution, plain.null_distribution)
    ks = permutation_test(values, labels, statistic="ks", n_permutations=20)
    assert ks.backend == "numpy" and "no count product" in ks.backend_reason


def test_calibration_measures_real_products():
    """The real measurement runs every CPU backend here on a small product and returns seconds."""
    for name in CPU_BACKENDS:
        if backends.available(name):
            t = autotune.measure(name, 8, 256, 64, 1)
            assert 0 < t < 60
