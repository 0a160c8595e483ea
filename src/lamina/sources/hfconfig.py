"""What a Hugging Face config says about a model's shape: the one place that reads it.

Configs of different families name the same dimension differently (``n_layer`` /
``num_hidden_layers``, ``n_positions`` / ``max_position_embeddings``, ...);
:func:`config_dims` reads them all, from the text part of a multimodal config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Config attributes that hold each dimension, in order of precedence.
N_LAYERS_NAMES = ("num_hidden_layers", "n_layer", "num_layers")
HIDDEN_SIZE_NAMES = ("hidden_size", "n_embd", "d_model")
N_HEADS_NAMES = ("num_attention_heads", "n_head", "num_heads")
CONTEXT_NAMES = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length", "max_seq_len")


@dataclass(frozen=True)
class ConfigDims:
    """A model's dimensions as its config states them; 0 where the config says nothing."""

    model_type: str
    n_layers: int
    hidden_size: int
    n_heads: int
    context_length: int


def text_config(config: Any) -> Any:
    """The text model's part of a config (the config itself for a text-only model)."""
    get_text_config = getattr(config, "get_text_config", None)
    return get_text_config() if callable(get_text_config) else config


def first_positive(config: Any, names: tuple[str, ...]) -> int:
    """The first of ``names`` that the config sets to a positive int, else 0."""
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def config_dims(config: Any) -> ConfigDims:
    """The dimensions of the text model that ``config`` (a transformers config) describes."""
    text = text_config(config)
    return ConfigDims(
        model_type=str(getattr(text, "model_type", "") or ""),
        n_layers=first_positive(text, N_LAYERS_NAMES),
        hidden_size=first_positive(text, HIDDEN_SIZE_NAMES),
        n_heads=first_positive(text, N_HEADS_NAMES),
        context_length=first_positive(text, CONTEXT_NAMES),
    )
