"""Synthetic token tables (the documented Parquet schema) built from numpy arrays.

Used by the study and report tests to exercise the analysis without a model.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

MODEL_REPORT = {
    "spec": "synthetic",
    "name": "synthetic",
    "source": "local",
    "architecture": "gpt2",
    "n_layers": 0,
    "hidden_size": 8,
    "n_heads": 2,
    "context_length": 64,
    "n_params": 1000,
    "dtype": "float32",
    "device": "cpu",
    "revision": None,
    "fingerprint": "sha256:" + "0" * 64,
}
TEXT_PROVENANCE = {
    "spec": "synthetic.txt",
    "source": "/synthetic.txt",
    "sha256": "1" * 64,
    "raw_sha256": "1" * 64,
    "n_chars": 1000,
    "boilerplate": "none found",
}


def token_table(
    correct: np.ndarray,
    norms: np.ndarray,
    *,
    site: str = "attn_out",
    ctx_pos: np.ndarray | None = None,
    target_chars: np.ndarray | None = None,
    windows: dict | None = None,
    seed: int = 0,
) -> pa.Table:
    """A token table with ``norms`` (n_tokens, n_layers) as the site's raw L2 norms.

    ``correct`` is (n_tokens,) bool. Other per-token columns are filled with
    seeded, plausible values; metadata follows ``lamina.table``'s schema.
    """
    rng = np.random.default_rng(seed)
    correct = np.asarray(correct, dtype=bool)
    norms = np.asarray(norms, dtype=np.float32)
    n, n_layers = norms.shape
    if ctx_pos is None:
        ctx_pos = np.arange(n)
    if target_chars is None:
        target_chars = rng.integers(1, 9, n) + correct.astype(int)
    columns = {
        "text_pos": pa.array(np.arange(n, dtype=np.int64) + 100),
        "window": pa.array(np.zeros(n, dtype=np.int32)),
        "ctx_pos": pa.array(np.asarray(ctx_pos, dtype=np.int32)),
        "token_id": pa.array(rng.integers(0, 50, n).astype(np.int32)),
        "target_id": pa.array(rng.integers(0, 50, n).astype(np.int32)),
        "correct": pa.array(correct),
        "target_rank": pa.array(np.where(correct, 0, rng.integers(1, 20, n)).astype(np.int32)),
        "target_logprob": pa.array(-rng.exponential(2.0, n).astype(np.float32)),
        "entropy": pa.array(rng.exponential(2.0, n).astype(np.float32)),
        "target_chars": pa.array(np.asarray(target_chars, dtype=np.int16)),
    }
    for layer in range(n_layers):
        columns[f"{site}.{layer}"] = pa.array(norms[:, layer])
    model = dict(MODEL_REPORT, n_layers=n_layers)
    meta = {
        "format_version": 1,
        "lamina_version": "0.1.0",
        "model": model,
        "text": dict(TEXT_PROVENANCE),
        "windows": windows
        or {
            "mode": "middle",
            "window": n,
            "stride": None,
            "bos": False,
            "batch_size": 1,
            "max_tokens": None,
            "n_windows": 1,
        },
        "sites": [site],
        "site_modules": {site: "transformer.h.{layer}.attn.c_proj"},
        "n_layers": n_layers,
        "n_heads": 2,
        "command_line": "synthetic",
        "created": "2000-01-01T00:00:00Z",
    }
    table = pa.table(columns)
    return table.replace_schema_metadata({"lamina": json.dumps(meta)})


def separated_norms(
    n_tokens: int = 400,
    n_layers: int = 6,
    *,
    shift_layers: tuple[int, ...] = (1, 4),
    shift: float = 0.4,
    accuracy: float = 0.45,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(correct, norms): log-normal norms whose log is shifted up by ``shift`` for
    correct tokens at ``shift_layers`` and identically distributed elsewhere."""
    rng = np.random.default_rng(seed)
    correct = rng.random(n_tokens) < accuracy
    log_norms = rng.normal(0.0, 0.5, (n_tokens, n_layers)) + np.linspace(0.5, 2.0, n_layers)
    for layer in shift_layers:
        log_norms[correct, layer] += shift
    return correct, np.exp(log_norms)


# A text on which a random-init tiny GPT-2 (tests/tiny_models.py) predicts about a quarter
# of the tokens right: its tied embeddings make it repeat the current token, and the runs of
# "!" reward that. Three copies give ~1800 tokens, more than twice its 128-token context.
def tiny_study_text(copies: int = 3) -> str:
    """Public-domain Alice with runs of '!' after every seventh word, ``copies`` times."""
    from tiny_models import CORPUS

    words = CORPUS.split(" ")
    marked = " ".join(w + (" !!!!!!!!" if k % 7 == 0 else "") for k, w in enumerate(words))
    return "\n".join([marked] * copies) + "\n"


def save_tiny_gpt2(folder, seed: int = 0) -> None:
    """Save the tiny random-init GPT-2 and its tokenizer as a local model directory."""
    from tiny_models import tiny_model

    model, tokenizer = tiny_model("gpt2", seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


WORDS = ["the", " Rabbit", " Alice", ",", " said", " very", "\n", " <b>&", " Queen", "'s"]


def multi_site_table(
    n_tokens: int = 400,
    n_layers: int = 4,
    n_heads: int = 3,
    *,
    sites: tuple[str, ...] = ("attn_out", "mlp_out", "resid_post", "attn_head"),
    vocab: bool = True,
    seed: int = 0,
):
    """A token table with several sites (and per-head norms), ``pred_id`` and token strings.

    Each site has its own planted effect: ``attn_out`` at layer 1, ``mlp_out`` at layer 2,
    ``resid_post`` nowhere, ``attn_head`` at head 0 of layer 1. With ``vocab`` the table has
    the ``pred_id`` column and the ``vocab`` metadata that extraction writes now (ids 0-9 are
    the strings of :data:`WORDS`).
    """
    rng = np.random.default_rng(seed + 1)
    correct, norms = separated_norms(n_tokens, n_layers, shift_layers=(1,), seed=seed)
    table = token_table(correct, norms, seed=seed)
    shifts = {"mlp_out": (2,), "resid_post": ()}
    for site in sites:
        if site in ("attn_out", "attn_head"):
            continue
        log = rng.normal(1.0, 0.5, (n_tokens, n_layers))
        for layer in shifts[site]:
            log[correct, layer] += 0.4
        for layer in range(n_layers):
            table = table.append_column(
                f"{site}.{layer}", pa.array(np.exp(log[:, layer]).astype(np.float32))
            )
    if "attn_head" in sites:
        for layer in range(n_layers):
            log = rng.normal(0.0, 0.5, (n_tokens, n_heads))
            if layer == 1:
                log[correct, 0] += 0.5
            for head in range(n_heads):
                name = f"attn_head.{layer}.{head}"
                table = table.append_column(name, pa.array(np.exp(log[:, head]).astype(np.float32)))
    if "attn_out" not in sites:
        table = table.drop_columns([f"attn_out.{layer}" for layer in range(n_layers)])
    meta = json.loads(table.schema.metadata[b"lamina"])
    meta["sites"] = list(sites)
    meta["n_heads"] = n_heads
    if vocab:
        target = table.column("target_id").to_numpy() % len(WORDS)
        pred = np.where(correct, target, (target + 1) % len(WORDS)).astype(np.int32)
        table = table.set_column(
            table.column_names.index("target_id"), "target_id", pa.array(target.astype(np.int32))
        )
        table = table.set_column(
            table.column_names.index("token_id"),
            "token_id",
            pa.array((table.column("token_id").to_numpy() % len(WORDS)).astype(np.int32)),
        )
        table = table.add_column(10, "pred_id", pa.array(pred))
        meta["format_version"] = 2
        meta["vocab"] = {str(i): word for i, word in enumerate(WORDS)}
    return table.replace_schema_metadata({"lamina": json.dumps(meta)})
