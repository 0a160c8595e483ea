"""Every supported family: the captured norms equal an independent recomputation.

For each tiny random-init model the test runs its own forward pass per window
with plain ``register_forward_hook`` hooks on the modules written below (an
independent statement of where each family writes) and ``output_hidden_states``:

- the residual stream grows by exactly attn_out + mlp_out in every layer
  (``resid_post[l] - resid_pre[l] == attn + mlp``), which proves the hooked
  modules are what each block writes, for sequential and parallel blocks alike;
- ``resid_post`` is the decoder layer's output (== ``hidden_states[l + 1]`` for
  all but the last layer, whose ``hidden_states`` entry has the final norm);
- each head's vector is the projection applied to its input with every other
  head zeroed, minus the bias; the heads plus the bias sum to ``attn_out``;
- the table's norms equal the norms of those vectors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lamina.capture import SITES, extract, resolve_sites, tokenize
from tiny_models import CORPUS, DISCOVERY_FAMILIES, FAMILIES, N_HEADS, N_LAYERS, tiny_loaded

# (decoder-layer list, attention output projection, MLP output), relative to a layer
EXPECTED_MODULES = {
    "gpt2": ("transformer.h", "attn.c_proj", "mlp"),
    "gpt_neo": ("transformer.h", "attn.attention.out_proj", "mlp"),
    "gptj": ("transformer.h", "attn.out_proj", "mlp"),
    "gpt_neox": ("gpt_neox.layers", "attention.dense", "mlp"),
    "opt": ("model.decoder.layers", "self_attn.out_proj", "fc2"),
    "bloom": ("transformer.h", "self_attention.dense", "mlp.dense_4h_to_h"),
    "falcon": ("transformer.h", "self_attention.dense", "mlp"),
    "llama": ("model.layers", "self_attn.o_proj", "mlp"),
    "mistral": ("model.layers", "self_attn.o_proj", "mlp"),
    "qwen2": ("model.layers", "self_attn.o_proj", "mlp"),
    "gemma": ("model.layers", "self_attn.o_proj", "mlp"),
    "phi": ("model.layers", "self_attn.dense", "mlp"),
    "gpt_bigcode": ("transformer.h", "attn.c_proj", "mlp"),
    "qwen3": ("model.layers", "self_attn.o_proj", "mlp"),
}

TEXT = CORPUS[:260]
WINDOW, STRIDE = 40, 16


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _reference(model, input_ids: torch.Tensor, family: str) -> dict[str, list[torch.Tensor]]:
    """Per-layer (positions, hidden) vectors of every site from plain hooks, for one window."""
    layers_path, attn_rel, mlp_rel = EXPECTED_MODULES[family]
    captured: dict[str, list] = {"attn_in": [], "attn_out": [], "mlp_out": [], "resid_post": []}
    handles = []
    for layer in range(N_LAYERS):
        prefix = f"{layers_path}.{layer}"
        attn = model.get_submodule(f"{prefix}.{attn_rel}")
        handles.append(
            attn.register_forward_pre_hook(lambda m, a: captured["attn_in"].append(a[0].clone()))
        )
        handles.append(
            attn.register_forward_hook(
                lambda m, a, o: captured["attn_out"].append(_first(o).clone())
            )
        )
        handles.append(
            model.get_submodule(f"{prefix}.{mlp_rel}").register_forward_hook(
                lambda m, a, o: captured["mlp_out"].append(_first(o).clone())
            )
        )
        handles.append(
            model.get_submodule(prefix).register_forward_hook(
                lambda m, a, o: captured["resid_post"].append(_first(o).clone())
            )
        )
    try:
        with torch.no_grad():
            out = model(input_ids[None], output_hidden_states=True, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    n = input_ids.shape[0]
    vectors = {key: [v.reshape(n, -1) for v in values] for key, values in captured.items()}
    vectors["hidden_states"] = [h[0] for h in out.hidden_states]

    heads = []
    with torch.no_grad():
        for layer in range(N_LAYERS):
            attn = model.get_submodule(f"{layers_path}.{layer}.{attn_rel}")
            x = vectors["attn_in"][layer]
            head_dim = x.shape[-1] // N_HEADS
            bias = attn.bias if attn.bias is not None else torch.zeros(())
            per_head = []
            for head in range(N_HEADS):
                only_this_head = torch.zeros_like(x)
                cols = slice(head * head_dim, (head + 1) * head_dim)
                only_this_head[:, cols] = x[:, cols]
                per_head.append(attn(only_this_head) - bias)
            heads.append((torch.stack(per_head, dim=1), bias))  # (positions, heads, hidden)
    vectors["heads"] = heads
    return vectors


def _norm(x: torch.Tensor) -> np.ndarray:
    return torch.linalg.vector_norm(x.double(), dim=-1).numpy()


@pytest.mark.parametrize("family", FAMILIES + DISCOVERY_FAMILIES)
def test_family_sites_match_independent_hooks(family):
    loaded = tiny_loaded(family, seed=1)
    model = loaded.model
    resolved = resolve_sites(model, SITES)
    expected_source = "family" if family in FAMILIES else "discovery"
    assert set(resolved.source.values()) == {expected_source}
    assert resolved.n_layers == N_LAYERS and resolved.n_heads == N_HEADS

    table = extract(
        loaded, TEXT, sites=SITES, window=WINDOW, stride=STRIDE, batch_size=2, progress=False
    )
    tokens = torch.from_numpy(tokenize(loaded.tokenizer, TEXT))
    assert table.num_rows == len(tokens) - 1
    columns = table.to_pydict()
    text_pos = np.asarray(columns["text_pos"])
    start_of = text_pos - np.asarray(columns["ctx_pos"])
    windows = np.asarray(columns["window"])
    assert len(np.unique(windows)) >= 3

    for w in np.unique(windows):
        rows = np.flatnonzero(windows == w)
        start = int(start_of[rows[0]])
        stop = int(text_pos[rows].max()) + 1
        ref = _reference(model, tokens[start:stop], family)
        at = text_pos[rows] - start
        for layer in range(N_LAYERS):
            attn = ref["attn_out"][layer]
            mlp = ref["mlp_out"][layer]
            resid_pre = ref["hidden_states"][layer]
            resid_post = ref["resid_post"][layer]
            # what the block wrote is exactly attention plus MLP
            torch.testing.assert_close(
                resid_post - resid_pre, attn + mlp, rtol=1e-4, atol=1e-5 * resid_post.abs().max()
            )
            if layer < N_LAYERS - 1:
                torch.testing.assert_close(resid_post, ref["hidden_states"][layer + 1])
            heads, bias = ref["heads"][layer]
            torch.testing.assert_close(
                heads.sum(dim=1) + bias, attn, rtol=1e-5, atol=1e-6 * attn.abs().max()
            )
            for site, vectors in (("attn_out", attn), ("mlp_out", mlp), ("resid_post", resid_post)):
                np.testing.assert_allclose(
                    np.asarray(columns[f"{site}.{layer}"])[rows], _norm(vectors)[at], rtol=1e-5
                )
            head_norms = _norm(heads)[at]  # (rows, heads)
            for head in range(N_HEADS):
                np.testing.assert_allclose(
                    np.asarray(columns[f"attn_head.{layer}.{head}"])[rows],
                    head_norms[:, head],
                    rtol=1e-5,
                )


@pytest.mark.parametrize("family", FAMILIES)
def test_family_table_paths(family):
    """The family table names the modules this test file expects."""
    model = tiny_loaded(family).model
    layers, attn, mlp = EXPECTED_MODULES[family]
    resolved = resolve_sites(model, SITES)
    assert resolved.module_paths("attn_out") == [f"{layers}.{i}.{attn}" for i in range(N_LAYERS)]
    assert resolved.module_paths("mlp_out") == [f"{layers}.{i}.{mlp}" for i in range(N_LAYERS)]
    assert resolved.module_paths("resid_post") == [f"{layers}.{i}" for i in range(N_LAYERS)]
    assert resolved.module_paths("attn_head") == resolved.module_paths("attn_out")


def test_known_family_inside_a_wrapper_finds_its_layers():
    """A known family wrapped in another module (as in multimodal models) keeps its sites."""
    inner = tiny_loaded("llama").model

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = inner.config
            self.language_model = inner

    resolved = resolve_sites(Wrapper(), ["attn_out", "mlp_out", "resid_post"])
    assert resolved.module_paths("attn_out") == [
        f"language_model.model.layers.{i}.self_attn.o_proj" for i in range(N_LAYERS)
    ]
    assert resolved.module_path("mlp_out", 1) == "language_model.model.layers.1.mlp"
    assert resolved.module_path("resid_post", 1) == "language_model.model.layers.1"
