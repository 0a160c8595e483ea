"""Cross-fitted probe scores: the arithmetic, the folds, no leakage, and the scores of a tiny
model against a direct recomputation from its activations (plain torch hooks, float64 numpy,
scikit-learn's Ledoit-Wolf)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.covariance import ledoit_wolf_shrinkage

from capture.probe_reference import assert_scores_close, reference_direction, reference_scores
from lamina.capture import extract
from lamina.capture.probe_folds import group_units
from lamina.capture.probe_hooks import ProjectionCapture, SumsAccumulator
from lamina.capture.probe_math import Totals, compute_directions, ledoit_wolf_intensity
from lamina.capture.probe_spec import ProbeSpec, check_probe_memory, probe_bytes, resolve_probe
from lamina.errors import InputError
from lamina.table import layer_matrix, probe_matrix, site_layers, validate_table
from study.token_tables import tiny_study_text
from tiny_models import tiny_loaded

SITES = ("attn_out", "mlp_out", "resid_post")


# ------------------------------------------------------------------ the arithmetic


def test_ledoit_wolf_intensity_from_sums_is_scikit_learns():
    rng = np.random.default_rng(0)
    for n, d in ((40, 12), (300, 8), (25, 60)):
        y = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)
        y -= y.mean(axis=0)
        fourth = float(((y * y).sum(axis=1) ** 2).sum())
        ours = ledoit_wolf_intensity(y.T @ y, n, fourth)
        assert ours == pytest.approx(ledoit_wolf_shrinkage(y, assume_centered=True), rel=1e-9)


def _synthetic(n: int = 1000, d: int = 6, k: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, d) + rng.normal(size=d) * 4
    correct = rng.random(n) < 0.35
    x[correct] += rng.normal(size=d)
    fold = (k * np.arange(n) // n).astype(np.int16)
    return x.astype(np.float32), correct, fold


def _accumulated(x, correct, fold, method: str, k: int = 5, shards: int = 3):
    """The probe's directions from ``shards`` shards' sums (torch, float64), as extraction has."""
    spec = ProbeSpec(method, k, ("attn_out",), 1)
    totals = Totals(k, ["attn_out.0"], spec.second_moments)
    for rows in np.array_split(np.arange(len(x)), shards):
        acc = SumsAccumulator(spec, fold[rows], torch.device("cpu"), x.shape[1])
        for batch in np.array_split(rows, 4):  # several batches per shard
            acc.add([torch.from_numpy(x[batch])], correct[batch], fold[batch])
        totals.add(acc.result())
    return compute_directions(totals, method)


@pytest.mark.parametrize("method", ["diffmeans", "lda"])
def test_directions_from_sums_are_the_held_out_directions(method):
    x, correct, fold = _synthetic()
    directions = _accumulated(x, correct, fold, method)
    for f in range(5):
        w, centre, shrink = reference_direction(x[fold != f], correct[fold != f], method)
        np.testing.assert_allclose(directions.w["attn_out.0"][f], w, rtol=1e-9)
        assert directions.offset["attn_out.0"][f] == pytest.approx(centre @ w, rel=1e-9)
        if method == "lda":
            assert directions.shrinkage["attn_out.0"][f] == pytest.approx(shrink, rel=1e-7)
    assert directions.n_per_fold.tolist() == [
        [int((~correct[fold == f]).sum()), int(correct[fold == f].sum())] for f in range(5)
    ]


def test_a_fold_without_both_classes_in_its_training_rows_has_nan_directions():
    x, correct, fold = _synthetic(n=200)
    correct[fold != 0] = False  # only fold 0 has correct rows: its training rows have none
    directions = _accumulated(x, correct, fold, "diffmeans")
    w = directions.w["attn_out.0"]
    assert not np.isfinite(w[0]).any() and np.isfinite(w[1:]).all()
    assert np.isnan(directions.offset["attn_out.0"][0])


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    n1, n0 = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


@pytest.mark.parametrize("method", ["diffmeans", "lda"])
def test_a_folds_own_signal_does_not_leak_into_its_scores(method):
    """Within each fold the correct rows differ along that fold's own direction (orthogonal
    to every other fold's), nothing else: a held-out score cannot see it (AUROC 0.5 within
    sampling error), while a probe fitted on every fold, its own included, does."""
    k, n, d, strength = 5, 2500, 10, 3.0
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, d))
    correct = rng.random(n) < 0.5
    fold = (k * np.arange(n) // n).astype(np.int16)
    x[correct] += strength * np.eye(d)[fold[correct]]  # fold f: along axis f
    x = x.astype(np.float32)
    directions = _accumulated(x, correct, fold, method, k)
    projection = _projection_hook(directions, "attn_out.0")
    held_out = projection(x, fold)
    leaky, _, _ = reference_direction(x, correct, method)
    for f in range(k):
        rows = fold == f
        n1, n0 = correct[rows].sum(), (~correct[rows]).sum()
        sd = np.sqrt((n0 + n1 + 1) / (12 * n0 * n1))  # AUROC's sd under no signal
        assert abs(_auroc(held_out[rows], correct[rows]) - 0.5) < 4.5 * sd
        assert _auroc(x[rows] @ leaky, correct[rows]) > 0.5 + 8 * sd


def _projection_hook(directions, name: str):
    """Pass 2's real hook (:class:`ProjectionCapture`) on a one-module stand-in model."""

    class Resolved:
        n_heads = 1

        def module_path(self, site, layer):
            return "site"

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.site = torch.nn.Identity()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def get_input_embeddings(self):
            return None

    model = Model()
    capture = ProjectionCapture(model, Resolved(), directions)

    def project(x: np.ndarray, fold: np.ndarray) -> np.ndarray:
        with capture:
            capture.start_batch(1, len(x), len(x), torch.device("cpu"))
            capture.set_folds(fold[None].astype(np.int64))
            model.site(torch.from_numpy(x)[None])
        return capture.buffer[0, 0].numpy()

    return project


def test_folds_are_contiguous_nearly_equal_groups_of_whole_units():
    sizes = [10, 10, 10, 50, 10, 10, 10, 10, 10, 10]
    folds = group_units(sizes, 5)
    assert folds.tolist() == sorted(folds.tolist()) and set(folds.tolist()) == set(range(5))
    assert folds.tolist() == [0, 0, 0, 1, 2, 3, 3, 4, 4, 4]  # starts nearest 28, 56, 84, 112
    assert group_units([1, 1, 1, 1, 100], 5).tolist() == [0, 1, 2, 3, 4]  # each fold a unit


# ------------------------------------------------------------------ options and memory


def test_auto_probes_middle_windows_only_and_attn_head_is_never_probed():
    assert resolve_probe("auto", 5, "middle", ("attn_out", "attn_head"), 2).sites == ("attn_out",)
    assert resolve_probe("auto", 5, "all", ("attn_out",), 2) is None
    assert resolve_probe("auto", 5, "middle", ("attn_head",), 2) is None
    with pytest.raises(InputError, match="none of them is among the sites extracted"):
        resolve_probe("lda", 5, "all", ("attn_head",), 2)
    with pytest.raises(InputError, match="--probe-folds 1 must be"):
        resolve_probe("diffmeans", 1, "all", ("attn_out",), 2)


def test_lda_beyond_the_memory_available_is_refused_in_one_sentence():
    spec = ProbeSpec("lda", 5, ("attn_out", "resid_post"), 30)
    # (5 folds + 2 of a shard) x 2 classes x 60 vectors x (576^2 + 2 * 576 + 2) x 8 bytes
    assert probe_bytes(spec, 576, 2) == 7 * 2 * 60 * (576**2 + 2 * 576 + 2) * 8
    with pytest.raises(InputError) as refused:
        check_probe_memory(spec, 576, 2, available=2 * 2**30)
    assert str(refused.value) == (
        "--probe lda would hold 2.1 GiB of sums ((folds 5 + 2 of a shard) x 2 classes x 30 "
        "layers x 2 site(s) x (d^2 + 2d + 2) x 8 bytes, d = 576) but 2.0 GiB is available; "
        "use --probe diffmeans, fewer --sites or fewer --probe-folds."
    )
    assert "\n" not in str(refused.value)


def test_extraction_refuses_before_any_forward_pass(monkeypatch):
    from lamina.capture import batching
    from lamina.capture.compute import ShardComputer

    monkeypatch.setattr(batching, "available_memory", lambda: 10_000)
    monkeypatch.setattr(ShardComputer, "compute", lambda *a, **k: pytest.fail("computed"))
    with pytest.raises(InputError, match=r"^--probe lda would hold .* GiB is available"):
        extract(tiny_loaded("gpt2"), tiny_study_text(1), window=64, probe="lda", progress=False)


# ------------------------------------------------------------------ the tiny model, end to end


def _activations(loaded, table, sites=SITES) -> dict[str, np.ndarray]:
    """Every row's vector at every site and layer, by plain torch hooks on GPT-2's modules,
    one forward pass per window of the table (rebuilt from its positions)."""
    model = loaded.model
    text_pos = table.column("text_pos").to_numpy()
    ctx_pos = table.column("ctx_pos").to_numpy()
    window = table.column("window").to_numpy()
    stream = np.zeros(text_pos.max() + 1, dtype=np.int64)
    stream[text_pos] = table.column("token_id").to_numpy()
    modules = {
        "attn_out": lambda layer: model.transformer.h[layer].attn.c_proj,
        "mlp_out": lambda layer: model.transformer.h[layer].mlp,
        "resid_post": lambda layer: model.transformer.h[layer],
    }
    n_layers = len(model.transformer.h)
    out = {
        f"{s}.{layer}": np.zeros((len(text_pos), 32)) for s in sites for layer in range(n_layers)
    }
    seen: dict[str, torch.Tensor] = {}
    handles = [
        modules[s](layer).register_forward_hook(
            lambda m, a, o, name=f"{s}.{layer}": seen.__setitem__(
                name, o[0] if isinstance(o, tuple) else o
            )
        )
        for s in sites
        for layer in range(n_layers)
    ]
    try:
        with torch.no_grad():
            for w in np.unique(window):
                rows = np.flatnonzero(window == w)
                start, stop = text_pos[rows[0]] - ctx_pos[rows[0]], text_pos[rows[-1]] + 1
                model(input_ids=torch.from_numpy(stream[start:stop])[None])
                for name, vectors in seen.items():
                    out[name][rows] = vectors[0, text_pos[rows] - start].double().numpy()
    finally:
        for handle in handles:
            handle.remove()
    return out


@pytest.fixture(scope="module")
def gpt2():
    return tiny_loaded("gpt2", 0)


@pytest.mark.parametrize(("method", "kept"), [("diffmeans", False), ("lda", True)])
def test_scores_equal_a_direct_recomputation_from_the_activations(gpt2, method, kept, monkeypatch):
    """diffmeans with pass 2's forward passes, lda from the vectors pass 1 kept."""
    from lamina.capture import probe_run

    if not kept:
        monkeypatch.setattr(probe_run, "KEEP_VECTORS_BYTES", 0)
    table = extract(
        gpt2, tiny_study_text(3), windows="all", window=64, sites=SITES, probe=method,
        progress=False,
    )  # fmt: skip
    meta = validate_table(table)
    assert bool(meta["extraction"]["probe"]["shards_from_kept_vectors"]) is kept
    probe = meta["probe"]
    assert (probe["method"], probe["folds"], probe["fold_unit"]) == (method, 5, "window")
    assert probe["sites"] == list(SITES) and probe["sign"] == "correct minus incorrect"
    fold = table.column("fold").to_numpy()
    window = table.column("window").to_numpy()
    correct = table.column("correct").to_numpy()
    # contiguous folds of whole windows, in plan order, nearly equal in rows
    assert (np.diff(fold) >= 0).all() and set(fold) == set(range(5))
    assert all(len(set(fold[window == w])) == 1 for w in np.unique(window))
    assert np.bincount(fold).max() - np.bincount(fold).min() <= 2 * 32
    assert probe["n_per_fold"] == [
        [int((~correct[fold == f]).sum()), int(correct[fold == f].sum())] for f in range(5)
    ]
    vectors = _activations(gpt2, table)
    for name, x in vectors.items():
        site, layer = name.split(".")
        # the vector hooked here is the one whose norm the table holds
        np.testing.assert_allclose(
            np.linalg.norm(x, axis=1), table.column(name).to_numpy(), rtol=1e-5
        )
        expected, lambdas = reference_scores(x, correct, fold, method)
        assert table.schema.field(f"probe.{name}").type == "float"
        assert_scores_close(table.column(f"probe.{name}").to_numpy(), expected)
        if method == "lda":
            np.testing.assert_allclose(probe["shrinkage"][site][int(layer)], lambdas, rtol=1e-6)
    # the readers take probe columns for what they are
    assert site_layers(table, "attn_out") == [0, 1]
    assert layer_matrix(table, "attn_out").shape == (table.num_rows, 2)
    assert probe_matrix(table, "resid_post").shape == (table.num_rows, 2)
