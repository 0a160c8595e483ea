"""Tiny checkpoints on disk for the model-loading tests (no downloads).

Every saved model is a random-init 2-layer GPT-2 (hidden size 32, 2 heads, 64
positions) or BERT, with a word-level tokenizer over the words of ``SENTENCE``
(id = 1 + position of the word, 0 = unknown). Fixtures return a
:class:`TinyCheckpoint` so tests can compare loaded logits with the original's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import transformers

SENTENCE = "alice was beginning to get very tired of sitting by her sister on the bank"
UNK = "[UNK]"


@dataclass
class TinyCheckpoint:
    folder: Path
    model: transformers.PreTrainedModel  # the in-memory original, eval mode
    sentence: str
    sentence_ids: list[int]  # the word-level tokenizer's ids of ``sentence``


def _vocab() -> dict[str, int]:
    return {UNK: 0, **{word: i + 1 for i, word in enumerate(SENTENCE.split())}}


def _word_tokenizer() -> transformers.PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers

    backend = Tokenizer(models.WordLevel(_vocab(), unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=UNK)


def _tiny_gpt2(seed: int) -> transformers.GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=2,
        n_positions=64,
        vocab_size=len(_vocab()),
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(config).eval()


def _checkpoint(folder: Path, model: transformers.PreTrainedModel) -> TinyCheckpoint:
    ids = [_vocab()[word] for word in SENTENCE.split()]
    return TinyCheckpoint(folder=folder, model=model, sentence=SENTENCE, sentence_ids=ids)


@pytest.fixture
def lamina_cache(monkeypatch, tmp_path) -> Path:
    """An empty lamina cache directory for this test (the sha256 memo lives there too)."""
    folder = tmp_path / "lamina-cache"
    monkeypatch.setenv("LAMINA_CACHE", str(folder))
    return folder


@pytest.fixture
def gpt2_safetensors(tmp_path) -> TinyCheckpoint:
    """A tiny GPT-2 written by save_pretrained (safetensors) with its tokenizer."""
    folder = tmp_path / "tiny-gpt2"
    model = _tiny_gpt2(seed=0)
    model.save_pretrained(folder)
    _word_tokenizer().save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    return _checkpoint(folder, model)


@pytest.fixture
def gpt2_pickle_only(tmp_path) -> TinyCheckpoint:
    """A tiny GPT-2 whose weights are only in a pickled pytorch_model.bin."""
    folder = tmp_path / "tiny-gpt2-pickle"
    model = _tiny_gpt2(seed=1)
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    _word_tokenizer().save_pretrained(folder)
    assert not list(folder.glob("*.safetensors"))
    return _checkpoint(folder, model)


@pytest.fixture
def gpt2_without_tokenizer(tmp_path) -> TinyCheckpoint:
    """A tiny GPT-2 saved without any tokenizer file."""
    folder = tmp_path / "tiny-gpt2-no-tokenizer"
    model = _tiny_gpt2(seed=2)
    model.save_pretrained(folder)
    return _checkpoint(folder, model)


@pytest.fixture
def bert_masked_lm(tmp_path) -> TinyCheckpoint:
    """A tiny BERT masked LM: a bidirectional encoder, not a causal LM."""
    folder = tmp_path / "tiny-bert"
    torch.manual_seed(0)
    config = transformers.BertConfig(
        num_hidden_layers=1,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=len(_vocab()),
        max_position_embeddings=64,
    )
    model = transformers.BertForMaskedLM(config).eval()
    model.save_pretrained(folder)
    _word_tokenizer().save_pretrained(folder)
    return _checkpoint(folder, model)
