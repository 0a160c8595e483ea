"""`--compat notebook` reproduces the reference notebook's numbers.

The notebook's code (Parts 1-6 of project 37) is transcribed below as written,
on a tiny random-init GPT-2 instead of gpt2-large, with the layer of Parts 3-5
and the number of permutations as parameters, and ``np.random.seed(seed)``
before each permutation loop so that its random permutations are known.
lamina's seed mode draws the same permutations (numpy's RandomState, in the
notebook's order), so even the p-values must agree.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lamina.pipeline import run_study
from lamina.sources import load_model, load_text
from lamina.study import StudyOptions
from notebook import symmetric_KL
from study.token_tables import save_tiny_gpt2, tiny_study_text

# Slow: a full `lamina run` (figures included) and the notebook's Python loops.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning"),
]

LAYER = 1
PERMUTATIONS = 100
SEED = 0


def notebook(model, tokenizer, text, layeri, n_permutes, seed):
    """The notebook's cells, in order; returns what each part computed."""
    out = {}
    # ---- Part 1
    n_layers = model.config.n_layer
    att_projs = {}

    def implant_hook(layer_number):
        def hook(module, input, output):
            att_projs[f"attn_L{layer_number}"] = output.detach()

        return hook

    handles = []
    for i in range(n_layers):
        h = model.transformer.h[i].attn.c_proj.register_forward_hook(implant_hook(i))
        handles.append(h)

    allTokens = tokenizer.encode(text, return_tensors="pt")
    max_seq_len = model.config.max_position_embeddings
    start_idx = len(allTokens[0]) // 2
    end_idx = start_idx + max_seq_len
    tokens = allTokens[:, start_idx:end_idx]
    with torch.no_grad():
        outs = model(tokens)
    for h in handles:
        h.remove()

    # ---- Part 2
    prediction_acc = np.zeros(max_seq_len, dtype=bool)
    toklens = np.zeros(max_seq_len)
    for toki in range(max_seq_len):
        targettok = allTokens[0, start_idx + toki + 1]
        prediction_acc[toki] = np.argmax(outs.logits[0, toki, :]) == targettok
        toklens[toki] = len(tokenizer.decode(targettok))
    out["prediction_acc"] = prediction_acc
    out["toklens"] = toklens

    # ---- Part 3
    C = att_projs[f"attn_L{layeri}"][0, prediction_acc, :]
    C_norms = torch.norm(C, dim=-1).log()
    I = att_projs[f"attn_L{layeri}"][0, ~prediction_acc, :]  # noqa: E741
    I_norms = torch.norm(I, dim=-1).log()
    minmax = [min(min(C_norms), min(I_norms)), max(max(C_norms), max(I_norms))]
    histbins = torch.linspace(minmax[0], minmax[1], 31)
    yC, _ = torch.histogram(C_norms, bins=histbins, density=False)
    yI, _ = torch.histogram(I_norms, bins=histbins, density=False)
    yC = yC / yC.sum()
    yI = yI / yI.sum()
    y_count, _ = torch.histogram(C_norms, bins=histbins, density=False)
    y_density, _ = torch.histogram(C_norms, bins=histbins, density=True)
    out.update(
        histbins=histbins.numpy(),
        yC=yC.numpy(),
        yI=yI.numpy(),
        sum_counts=float(y_count.sum()),
        sum_density=float(y_density.sum()),
        sum_bin_normalised=float(y_density.sum() * (histbins[1] - histbins[0])),
        sum_probability=float(sum(y_count / y_count.sum())),
    )

    # ---- Part 4
    c2i = F.kl_div(torch.log(yC + 1e-15), yI, reduction="batchmean")
    i2c = F.kl_div(torch.log(yI + 1e-15), yC, reduction="batchmean")
    pAve = (yC + yI) / 2
    symKL = F.kl_div(torch.log(yC + 1e-15), pAve, reduction="batchmean") + F.kl_div(
        torch.log(yI + 1e-15), pAve, reduction="batchmean"
    )
    symKL /= 2
    bincounts = np.arange(10, 51)
    kl_divs = np.zeros(len(bincounts))
    for bini in range(len(bincounts)):
        kl_divs[bini] = symmetric_KL(C_norms, I_norms, bincounts[bini])
    out.update(c2i=float(c2i), i2c=float(i2c), symKL=float(symKL), kl_divs=kl_divs)

    # ---- Part 5
    np.random.seed(seed)  # noqa: NPY002
    kldiv = symmetric_KL(C_norms, I_norms)
    kl_perms = torch.zeros(n_permutes)
    for permi in range(n_permutes):
        fake_predictions = np.random.permutation(prediction_acc)  # noqa: NPY002
        C = att_projs[f"attn_L{layeri}"][0, fake_predictions, :]
        C_norms_p = torch.norm(C, dim=-1).log()
        I = att_projs[f"attn_L{layeri}"][0, ~fake_predictions, :]  # noqa: E741
        I_norms_p = torch.norm(I, dim=-1).log()
        kl_perms[permi] = symmetric_KL(C_norms_p, I_norms_p)
    pval = (kl_perms > kldiv).sum() / n_permutes
    out.update(part5_kldiv=float(kldiv), part5_pval=float(pval), part5_null=kl_perms.numpy())

    # ---- Part 6
    np.random.seed(seed)  # noqa: NPY002
    rows = []
    for layeri in range(n_layers):
        C = att_projs[f"attn_L{layeri}"][0, prediction_acc, :]
        C_norms = torch.norm(C, dim=-1).log()
        I = att_projs[f"attn_L{layeri}"][0, ~prediction_acc, :]  # noqa: E741
        I_norms = torch.norm(I, dim=-1).log()
        diff = C_norms.mean() - I_norms.mean()
        kldiv = symmetric_KL(C_norms, I_norms).item()
        kl_perms = np.zeros(n_permutes)
        for permi in range(n_permutes):
            fake_predictions = np.random.permutation(prediction_acc)  # noqa: NPY002
            C = att_projs[f"attn_L{layeri}"][0, fake_predictions, :]
            C_norms = torch.norm(C, dim=-1).log()
            I = att_projs[f"attn_L{layeri}"][0, ~fake_predictions, :]  # noqa: E741
            I_norms = torch.norm(I, dim=-1).log()
            kl_perms[permi] = symmetric_KL(C_norms, I_norms)
        pval = (kl_perms > kldiv).sum() / n_permutes
        rows.append(
            {
                "diff": float(diff),
                "kldiv": kldiv,
                "pval": float(pval),
                "null_min": kl_perms.min(),
                "null_max": kl_perms.max(),
                "null_mean": kl_perms.mean(),
                "significant": not pval > 0.05,
            }
        )
    out["rows"] = rows
    return out


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("seed")
    save_tiny_gpt2(root / "model")
    (root / "text.txt").write_text(tiny_study_text(), encoding="utf-8")
    options = StudyOptions(layer=LAYER, permutations=PERMUTATIONS, seed=SEED, compat="notebook")
    run = run_study(
        str(root / "model"),
        str(root / "text.txt"),
        root / "out",
        options=options,
        progress=False,
        command_line="lamina run --compat notebook",
    )
    loaded = load_model(str(root / "model"), device="cpu", progress=False)
    text = load_text(str(root / "text.txt"), keep_boilerplate=True).text
    expected = notebook(loaded.model, loaded.tokenizer, text, LAYER, PERMUTATIONS, SEED)
    return run, expected


def test_part2_accuracy_and_lengths(compared):
    run, nb = compared
    p2 = run.result.to_dict()["part2"]
    assert p2["n_tokens"] == nb["prediction_acc"].size == 128
    assert p2["n_correct"] == int(nb["prediction_acc"].sum()) >= 2
    assert p2["accuracy"] == nb["prediction_acc"].mean()
    tc = p2["target_chars"]
    assert tc["correct"]["mean"] == pytest.approx(nb["toklens"][nb["prediction_acc"]].mean())
    assert tc["incorrect"]["mean"] == pytest.approx(nb["toklens"][~nb["prediction_acc"]].mean())


def test_part3_histograms(compared):
    run, nb = compared
    p3 = run.result.to_dict()["part3"]
    np.testing.assert_allclose(p3["edges"], nb["histbins"], rtol=1e-6)
    np.testing.assert_allclose(p3["probability_correct"], nb["yC"], rtol=1e-6)
    np.testing.assert_allclose(p3["probability_incorrect"], nb["yI"], rtol=1e-6)
    norms = p3["normalisations"]["correct"]
    assert norms["sum_counts"] == nb["sum_counts"]
    assert norms["sum_density"] == pytest.approx(nb["sum_density"], rel=1e-5)
    assert norms["sum_density_times_bin_width"] == pytest.approx(nb["sum_bin_normalised"], rel=1e-5)
    assert norms["sum_probability"] == pytest.approx(nb["sum_probability"], rel=1e-6)


def test_part4_divergences_and_sweep(compared):
    run, nb = compared
    ab = run.result.to_dict()["part4"]["at_bins"]
    assert ab["kl_incorrect_correct"]["nats"] == pytest.approx(nb["c2i"], rel=1e-5)
    assert ab["kl_correct_incorrect"]["nats"] == pytest.approx(nb["i2c"], rel=1e-5)
    assert ab["js"]["nats"] == pytest.approx(nb["symKL"], rel=1e-5)
    sweep = run.result.to_dict()["part4"]["js_sweep"]
    assert sweep["edges"] == list(range(10, 51))
    np.testing.assert_allclose(sweep["js_nats"], nb["kl_divs"], rtol=1e-5)


def test_part5_statistic_null_and_pvalue(compared):
    run, nb = compared
    p5 = run.result.to_dict()["part5"]
    assert p5["statistic"] == pytest.approx(nb["part5_kldiv"], rel=1e-5)
    np.testing.assert_allclose(p5["null_distribution"], nb["part5_null"], rtol=1e-5, atol=1e-9)
    assert p5["pvalue"] == nb["part5_pval"]


def test_part6_laminar_profile(compared):
    run, nb = compared
    rows = run.result.to_dict()["part6"]["layers"]
    assert len(rows) == len(nb["rows"]) == 2
    for row, expected in zip(rows, nb["rows"], strict=True):
        assert row["difference"] == pytest.approx(expected["diff"], rel=1e-4, abs=1e-6)
        assert row["statistic"] == pytest.approx(expected["kldiv"], rel=1e-5)
        assert row["pvalue"] == expected["pval"]
        assert row["null_min"] == pytest.approx(expected["null_min"], rel=1e-5)
        assert row["null_max"] == pytest.approx(expected["null_max"], rel=1e-5)
        assert row["null_mean"] == pytest.approx(expected["null_mean"], rel=1e-5)
        assert row["significant"] == expected["significant"]
    assert run.result.to_dict()["part6"]["correction"] == "none"


def test_every_output_says_notebook_mode(compared):
    run, _ = compared
    out = run.outputs
    results = run.result.to_dict()
    assert results["compat"] == "notebook"
    assert "notebook compatibility mode" in results["compat_note"]
    assert results["part1"]["text"]["boilerplate"] != "stripped"
    assert results["part1"]["windows"]["window"] == 128
    header, first = (line.split(",") for line in out.layers.read_text().splitlines()[:2])
    assert dict(zip(header, first, strict=True))["compat"] == "notebook"
    assert "Notebook compatibility mode" in out.report.read_text()
