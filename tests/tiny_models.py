"""Tiny random-init causal LMs of every supported family, built from configs (no downloads).

``tiny_model(family, seed)`` returns ``(model, tokenizer)``: a 2-layer model with
hidden size 32 and 4 heads in float32 eval mode, and a byte-level BPE tokenizer
trained deterministically on a short built-in text (vocabulary of
``VOCAB_SIZE`` ids). ``tiny_loaded(family, seed)`` wraps the same in a
:class:`lamina.sources.LoadedModel`.

``FAMILIES`` lists the model types lamina knows by table; ``DISCOVERY_FAMILIES``
lists model types that lamina resolves by discovery.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import transformers

VOCAB_SIZE = 320
N_LAYERS = 2
HIDDEN = 32
N_HEADS = 4
CONTEXT = 128
SPECIAL = "<|endoftext|>"

# Public-domain opening of Alice's Adventures in Wonderland (Lewis Carroll, 1865).
CORPUS = (
    "Alice was beginning to get very tired of sitting by her sister on the bank, and of "
    "having nothing to do: once or twice she had peeped into the book her sister was "
    "reading, but it had no pictures or conversations in it, 'and what is the use of a "
    "book,' thought Alice 'without pictures or conversations?' So she was considering in "
    "her own mind (as well as she could, for the hot day made her feel very sleepy and "
    "stupid), whether the pleasure of making a daisy-chain would be worth the trouble of "
    "getting up and picking the daisies, when suddenly a White Rabbit with pink eyes ran "
    "close by her. There was nothing so very remarkable in that; nor did Alice think it so "
    "very much out of the way to hear the Rabbit say to itself, 'Oh dear! Oh dear! I shall "
    "be late!'"
)


@functools.cache
def tiny_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """Byte-level BPE with ``VOCAB_SIZE`` ids (id 0 is ``<|endoftext|>``, also BOS/EOS)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([CORPUS], trainer=trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=SPECIAL, eos_token=SPECIAL, unk_token=SPECIAL
    )


_COMMON = {"vocab_size": VOCAB_SIZE, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}
_LLAMA_LIKE = {
    "num_hidden_layers": N_LAYERS,
    "hidden_size": HIDDEN,
    "num_attention_heads": N_HEADS,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": CONTEXT,
}

_CONFIGS: dict[str, Callable[[], transformers.PretrainedConfig]] = {
    "gpt2": lambda: transformers.GPT2Config(
        n_layer=N_LAYERS, n_embd=HIDDEN, n_head=N_HEADS, n_positions=CONTEXT, **_COMMON
    ),
    "gpt_neo": lambda: transformers.GPTNeoConfig(
        num_layers=N_LAYERS,
        hidden_size=HIDDEN,
        num_heads=N_HEADS,
        max_position_embeddings=CONTEXT,
        attention_types=[[["global", "local"], 1]],
        window_size=8,
        **_COMMON,
    ),
    "gptj": lambda: transformers.GPTJConfig(
        n_layer=N_LAYERS,
        n_embd=HIDDEN,
        n_head=N_HEADS,
        n_positions=CONTEXT,
        rotary_dim=4,
        **_COMMON,
    ),
    "gpt_neox": lambda: transformers.GPTNeoXConfig(
        num_hidden_layers=N_LAYERS,
        hidden_size=HIDDEN,
        num_attention_heads=N_HEADS,
        intermediate_size=64,
        max_position_embeddings=CONTEXT,
        **_COMMON,
    ),
    "opt": lambda: transformers.OPTConfig(
        num_hidden_layers=N_LAYERS,
        hidden_size=HIDDEN,
        num_attention_heads=N_HEADS,
        ffn_dim=64,
        word_embed_proj_dim=HIDDEN,
        max_position_embeddings=CONTEXT,
        **_COMMON,
    ),
    "bloom": lambda: transformers.BloomConfig(
        n_layer=N_LAYERS, hidden_size=HIDDEN, n_head=N_HEADS, **_COMMON
    ),
    "falcon": lambda: transformers.FalconConfig(
        num_hidden_layers=N_LAYERS,
        hidden_size=HIDDEN,
        num_attention_heads=N_HEADS,
        max_position_embeddings=CONTEXT,
        **_COMMON,
    ),
    "llama": lambda: transformers.LlamaConfig(**_LLAMA_LIKE, **_COMMON),
    "mistral": lambda: transformers.MistralConfig(**_LLAMA_LIKE, **_COMMON),
    "qwen2": lambda: transformers.Qwen2Config(**_LLAMA_LIKE, **_COMMON),
    "gemma": lambda: transformers.GemmaConfig(**_LLAMA_LIKE, head_dim=8, **_COMMON),
    "phi": lambda: transformers.PhiConfig(
        num_hidden_layers=N_LAYERS,
        hidden_size=HIDDEN,
        num_attention_heads=N_HEADS,
        intermediate_size=64,
        max_position_embeddings=CONTEXT,
        **_COMMON,
    ),
    # resolved by discovery, not by lamina's family table
    "gpt_bigcode": lambda: transformers.GPTBigCodeConfig(
        n_layer=N_LAYERS, n_embd=HIDDEN, n_head=N_HEADS, n_positions=CONTEXT, **_COMMON
    ),
    "qwen3": lambda: transformers.Qwen3Config(**_LLAMA_LIKE, head_dim=8, **_COMMON),
}

FAMILIES: tuple[str, ...] = (
    "gpt2",
    "gpt_neo",
    "gptj",
    "gpt_neox",
    "opt",
    "bloom",
    "falcon",
    "llama",
    "mistral",
    "qwen2",
    "gemma",
    "phi",
)
DISCOVERY_FAMILIES: tuple[str, ...] = ("gpt_bigcode", "qwen3")


def tiny_config(family: str) -> transformers.PretrainedConfig:
    """The tiny config of ``family`` (a ``model_type``)."""
    if family not in _CONFIGS:
        raise KeyError(f"no tiny config for {family!r}; known: {sorted(_CONFIGS)}")
    return _CONFIGS[family]()


def tiny_model(
    family: str, seed: int = 0
) -> tuple[transformers.PreTrainedModel, transformers.PreTrainedTokenizerFast]:
    """A random-init 2-layer model of ``family`` (float32, eval mode, no grad) and the tokenizer."""
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(tiny_config(family))
    model.eval()
    model.requires_grad_(False)
    return model, tiny_tokenizer()


def tiny_loaded(family: str, seed: int = 0):
    """``tiny_model`` wrapped in a :class:`lamina.sources.LoadedModel` with its report."""
    from lamina.sources import LoadedModel, ModelReport

    model, tokenizer = tiny_model(family, seed)
    config = model.config
    report = ModelReport(
        spec=f"tiny-{family}",
        name=f"tiny-{family}",
        source="local",
        architecture=config.model_type,
        n_layers=N_LAYERS,
        hidden_size=HIDDEN,
        n_heads=N_HEADS,
        context_length=CONTEXT,
        n_params=sum(p.numel() for p in model.parameters()),
        dtype="float32",
        device="cpu",
        revision=None,
        fingerprint=f"random-init:{family}:seed={seed}",
    )
    return LoadedModel(model=model, tokenizer=tokenizer, report=report)
