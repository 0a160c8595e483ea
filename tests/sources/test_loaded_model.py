"""A model and tokenizer already loaded with transformers, passed in as objects (a notebook's).

``lamina.load_model(model, tokenizer)`` wraps them: the report identifies the model by
its class, the sha256 of its config's JSON and a sha256 over its tensors (recomputed
here independently); the model is neither moved, cast nor switched to eval mode; a
missing tokenizer or an object that is not a causal LM is one sentence, never the
module's repr.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import transformers

import lamina
from lamina.errors import InputError, LaminaError, ModelLoadError
from lamina.sources import LoadedModel, load_model
from lamina.sources.loaded_model import tensors_fingerprint
from tiny_models import tiny_model, tiny_tokenizer


def _independent_fingerprint(model) -> str:
    """sha256 over (name, dtype, shape, bytes) of every state-dict tensor, in name order."""
    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        shape = ",".join(str(s) for s in tensor.shape)
        digest.update(f"{name}\0{tensor.dtype}\0{shape}\0".encode())
        if tensor.dtype == torch.bfloat16:
            raw = tensor.view(torch.int16).numpy().astype("<i2").tobytes()
        else:
            raw = tensor.numpy().astype(tensor.numpy().dtype.newbyteorder("<")).tobytes()
        digest.update(raw)
    return "sha256-tensors:" + digest.hexdigest()


def _independent_config_hash(config) -> str:
    entries = json.loads(config.to_json_string(use_diff=False))
    for key in ("architectures", "dtype", "torch_dtype", "_name_or_path", "_commit_hash"):
        entries.pop(key, None)
    entries.pop("transformers_version")
    text = json.dumps(entries, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _one_sentence(message: str, *needles: str) -> None:
    assert "\n" not in message and len(message) < 300, message
    for needle in needles:
        assert needle in message, message


@pytest.fixture
def gpt2():
    return tiny_model("gpt2", seed=0)


def test_the_report_identifies_a_model_passed_in(gpt2):
    model, tokenizer = gpt2
    loaded = lamina.load_model(model, tokenizer)
    report = loaded.report

    assert isinstance(loaded, LoadedModel)
    assert loaded.model is model and loaded.tokenizer is tokenizer
    assert report.spec == "<GPT2LMHeadModel passed in>"
    assert (report.source, report.architecture, report.name) == (
        "object",
        "GPT2LMHeadModel",
        "GPT2LMHeadModel",
    )
    assert (report.n_layers, report.hidden_size, report.n_heads, report.context_length) == (
        2,
        32,
        4,
        128,
    )
    assert report.n_params == sum(p.numel() for p in model.parameters())
    assert (report.dtype, report.device, report.revision) == ("float32", "cpu", None)
    expected_config = _independent_config_hash(model.config)
    assert report.config_sha256 == expected_config
    assert report.fingerprint == _independent_fingerprint(model)
    assert report.to_dict()["config_sha256"] == expected_config
    assert f"sha256:{expected_config}" in report.format()
    text = repr(loaded)
    assert text == (
        "LoadedModel('GPT2LMHeadModel', object, 2 layers, float32 on cpu, "
        f"{report.fingerprint[:31]}…)"
    )


def test_the_config_hash_follows_the_config_not_its_bookkeeping(gpt2, tmp_path):
    model, tokenizer = gpt2
    before = load_model(model, tokenizer).report.config_sha256
    model.save_pretrained(tmp_path)  # sets config.architectures and config.dtype
    assert model.config.architectures == ["GPT2LMHeadModel"]
    assert load_model(model, tokenizer).report.config_sha256 == before
    model.config.layer_norm_epsilon = 1e-6
    assert load_model(model, tokenizer).report.config_sha256 != before


def test_the_fingerprint_follows_every_weight(gpt2):
    model, _ = gpt2
    before = tensors_fingerprint(model)
    assert tensors_fingerprint(model) == before
    same, _ = tiny_model("gpt2", seed=0)
    assert tensors_fingerprint(same) == before
    with torch.no_grad():
        model.transformer.h[1].mlp.c_fc.bias[3] += 1e-6
    assert tensors_fingerprint(model) != before
    other, _ = tiny_model("gpt2", seed=1)
    assert tensors_fingerprint(other) != before


def test_a_bfloat16_model_is_fingerprinted_as_bfloat16(gpt2):
    model, tokenizer = gpt2
    f32 = tensors_fingerprint(model)
    model.to(torch.bfloat16)
    loaded = load_model(model, tokenizer)
    assert loaded.report.dtype == "bfloat16"
    assert loaded.report.fingerprint == _independent_fingerprint(model) != f32


def test_the_model_is_left_as_it_was_given(gpt2):
    model, tokenizer = gpt2
    model.train()
    model.requires_grad_(True)
    load_model(model, tokenizer)
    assert model.training
    assert all(p.requires_grad for p in model.parameters())
    assert next(model.parameters()).dtype == torch.float32


def test_device_and_dtype_when_asked_cast_in_place(gpt2):
    model, tokenizer = gpt2
    loaded = load_model(model, tokenizer, device="cpu", dtype="bfloat16")
    assert loaded.model is model
    assert next(model.parameters()).dtype == torch.bfloat16
    assert (loaded.report.dtype, loaded.report.device) == ("bfloat16", "cpu")


def test_a_pair_and_a_loaded_model_are_accepted(gpt2):
    model, tokenizer = gpt2
    pair = load_model((model, tokenizer))
    assert pair.model is model and pair.tokenizer is tokenizer
    assert load_model(pair) is pair
    with pytest.raises(InputError, match="already loaded"):
        load_model(pair, tokenizer)


def test_a_model_without_its_tokenizer_is_one_sentence(gpt2):
    model, _ = gpt2
    with pytest.raises(InputError) as missing:
        lamina.load_model(model)
    _one_sentence(str(missing.value), "GPT2LMHeadModel", "tokenizer")
    assert "GPT2LMHeadModel(" not in str(missing.value)


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        (42, "got int"),
        ({"model": 1}, "got dict"),
        (torch.nn.Linear(2, 2), "got Linear"),
    ],
)
def test_what_is_not_a_model_is_one_sentence(given, needle):
    with pytest.raises(InputError) as refused:
        load_model(given, tiny_tokenizer())
    _one_sentence(str(refused.value), needle, "causal LM")


def _bert(masked: bool):
    config = transformers.BertConfig(
        vocab_size=320,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    return transformers.BertForMaskedLM(config) if masked else transformers.BertModel(config)


def _t5():
    config = transformers.T5Config(
        vocab_size=320, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2
    )
    return transformers.T5ForConditionalGeneration(config)


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: tiny_model("gpt2")[0].transformer, "no language-model head"),
        (lambda: _bert(masked=False), "no language-model head"),
        (lambda: _bert(masked=True), "bidirectional"),
        (_t5, "encoder-decoder"),
    ],
)
def test_models_that_are_not_causal_lms_are_refused(build, needle):
    with pytest.raises(InputError) as refused:
        load_model(build(), tiny_tokenizer())
    _one_sentence(str(refused.value), needle)


def test_a_tokenizer_of_the_wrong_kind_or_size_is_refused(gpt2):
    model, _ = gpt2
    with pytest.raises(InputError, match="got dict"):
        load_model(model, {"hello": 1})
    small = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=100)
    )
    with pytest.raises(ModelLoadError) as too_big:
        load_model(small, tiny_tokenizer())
    _one_sentence(str(too_big.value), "320", "100")


def test_options_that_apply_to_specs_only(gpt2):
    model, tokenizer = gpt2
    with pytest.raises(InputError, match="revision"):
        load_model(model, tokenizer, revision="main")
    with pytest.raises(InputError, match="brings its own"):
        load_model("smollm2-135m", tokenizer)


def test_every_refusal_is_a_lamina_error(gpt2):
    model, tokenizer = gpt2
    for call in (
        lambda: load_model(model),
        lambda: load_model(model, 3),
        lambda: load_model(object(), tokenizer),
    ):
        with pytest.raises(LaminaError):
            call()
