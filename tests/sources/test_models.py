"""Model loading: local safetensors, the pickle guard, the documented errors, the GGUF cache
and the embedded default."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from lamina.errors import InputError, ModelLoadError
from lamina.sources import gguf as gguf_module
from lamina.sources import load_model


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_one_sentence(message: str, *needles: str) -> None:
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_local_safetensors_directory_loads(lamina_cache, gpt2_safetensors):
    folder, original = gpt2_safetensors.folder, gpt2_safetensors.model
    loaded = load_model(str(folder), device="cpu", progress=False)
    report = loaded.report

    assert (report.source, report.architecture, report.name) == ("local", "gpt2", "tiny-gpt2")
    assert (report.n_layers, report.hidden_size, report.n_heads) == (2, 32, 2)
    assert report.context_length == 64
    assert report.n_params == sum(p.numel() for p in original.parameters())
    assert report.fingerprint == "sha256:" + _sha256(folder / "model.safetensors")
    assert (report.dtype, report.device, report.revision) == ("float32", "cpu", None)
    assert not loaded.model.training
    assert not any(p.requires_grad for p in loaded.model.parameters())

    ids = loaded.tokenizer(gpt2_safetensors.sentence, add_special_tokens=False)["input_ids"]
    assert ids == gpt2_safetensors.sentence_ids
    with torch.no_grad():
        expected = original(torch.tensor([ids])).logits
        got = loaded.model(torch.tensor([ids])).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert json.loads(json.dumps(report.to_dict())) == report.to_dict()


def test_pickle_only_checkpoint_is_refused_then_loads_when_allowed(lamina_cache, gpt2_pickle_only):
    folder, original = gpt2_pickle_only.folder, gpt2_pickle_only.model
    with pytest.raises(ModelLoadError) as refused:
        load_model(str(folder), device="cpu", progress=False)
    _assert_one_sentence(str(refused.value), str(folder), "--allow-pickle")

    loaded = load_model(str(folder), device="cpu", allow_pickle=True, progress=False)
    assert loaded.report.fingerprint == "sha256:" + _sha256(folder / "pytorch_model.bin")
    ids = torch.tensor([gpt2_pickle_only.sentence_ids])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, original(ids).logits, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["does-not-exist", "./nowhere/model", "missing.gguf"])
def test_missing_path_is_a_one_sentence_error(lamina_cache, tmp_path, name):
    spec = name if name.startswith(".") else str(tmp_path / name)
    with pytest.raises(ModelLoadError) as error:
        load_model(spec, device="cpu", progress=False)
    _assert_one_sentence(str(error.value), repr(spec), "does not exist")


def test_masked_lm_is_not_a_causal_lm(lamina_cache, bert_masked_lm):
    spec = str(bert_masked_lm.folder)
    with pytest.raises(ModelLoadError) as error:
        load_model(spec, device="cpu", progress=False)
    _assert_one_sentence(str(error.value), spec, "not a causal language model")


def test_model_without_tokenizer_is_refused(lamina_cache, gpt2_without_tokenizer):
    spec = str(gpt2_without_tokenizer.folder)
    with pytest.raises(ModelLoadError) as error:
        load_model(spec, device="cpu", progress=False)
    _assert_one_sentence(str(error.value), spec, "no tokenizer")


def test_hub_id_loads_from_the_local_hub_cache_without_network(
    lamina_cache, gpt2_safetensors, tmp_path, monkeypatch
):
    import shutil

    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--lamina-tests--tiny-gpt2"
    shutil.copytree(gpt2_safetensors.folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    loaded = load_model("lamina-tests/tiny-gpt2", device="cpu", progress=False)
    report = loaded.report
    assert (report.source, report.name, report.fingerprint) == ("hub", "tiny-gpt2", f"hub:{commit}")
    ids = torch.tensor([gpt2_safetensors.sentence_ids])
    with torch.no_grad():
        expected = gpt2_safetensors.model(ids).logits
        torch.testing.assert_close(loaded.model(ids).logits, expected, rtol=0, atol=0)


def test_hub_id_offline_without_cache_fails_fast(lamina_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as error:
        load_model("lamina-tests/no-such-model", device="cpu", progress=False)
    _assert_one_sentence(str(error.value), "'lamina-tests/no-such-model'", "HF_HUB_OFFLINE")


def test_bad_options_are_input_errors(lamina_cache, gpt2_safetensors):
    folder = gpt2_safetensors.folder
    with pytest.raises(InputError, match="float8"):
        load_model(str(folder), device="cpu", dtype="float8", progress=False)
    with pytest.raises(InputError, match="--revision"):
        load_model(str(folder), device="cpu", revision="main", progress=False)


# ----------------------------------------------------------------------------- GGUF cache


def test_gguf_cache_is_verified_and_rebuilt_when_corrupt(lamina_cache, tmp_path, monkeypatch):
    """The cache folder is built once, reused, and rebuilt when a file or the manifest is bad."""
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF stand-in")
    builds = []

    def fake_dequantise(folder, gguf_path, *, progress):
        builds.append(gguf_path)
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(bytes(range(256)) * 4)

    monkeypatch.setattr(gguf_module, "_dequantise_into", fake_dequantise)
    folder, sha = gguf_module.ensure_gguf_cache(gguf, label="fake", progress=False)
    assert sha == _sha256(gguf)
    assert folder == lamina_cache / "models" / f"fake-{sha[:12]}"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["gguf_sha256"] == sha
    assert manifest["files"]["model.safetensors"] == {
        "size": 1024,
        "sha256": _sha256(folder / "model.safetensors"),
    }

    gguf_module.ensure_gguf_cache(gguf, label="fake", progress=False)
    assert len(builds) == 1  # a sound cache is reused

    # Same size, different bytes: only the sha256 check can catch it.
    (folder / "model.safetensors").write_bytes(bytes(reversed(range(256))) * 4)
    gguf_module.ensure_gguf_cache(gguf, label="fake", progress=False)
    assert len(builds) == 2
    assert _sha256(folder / "model.safetensors") == manifest["files"]["model.safetensors"]["sha256"]

    (folder / "manifest.json").unlink()
    gguf_module.ensure_gguf_cache(gguf, label="fake", progress=False)
    assert len(builds) == 3
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]


def test_failed_gguf_build_leaves_no_cache_folder(lamina_cache, tmp_path, monkeypatch):
    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(b"not a gguf")

    def failing_dequantise(folder, gguf_path, *, progress):
        (folder / "model.safetensors").write_bytes(b"half")
        raise ModelLoadError("cannot read it.")

    monkeypatch.setattr(gguf_module, "_dequantise_into", failing_dequantise)
    with pytest.raises(ModelLoadError):
        gguf_module.ensure_gguf_cache(gguf, label="broken", progress=False)
    assert list((lamina_cache / "models").iterdir()) == []


# ----------------------------------------------------------------------------- embedded


@pytest.mark.slow
def test_embedded_default_loads_and_predicts_alice_better_than_chance(embedded, alice):
    report = embedded.report
    gguf = gguf_module.embedded_gguf_path("smollm2-135m")
    assert (report.source, report.architecture) == ("embedded", "llama")
    assert (report.n_layers, report.hidden_size, report.n_heads) == (30, 576, 9)
    assert report.context_length == 8192
    assert report.n_params == sum(p.numel() for p in embedded.model.parameters())
    assert report.fingerprint == "sha256:" + _sha256(gguf)

    # 256 tokens from the middle of the book, as the reference study reads it.
    ids = embedded.tokenizer(alice.text, add_special_tokens=False)["input_ids"]
    start = len(ids) // 2
    window = torch.tensor([ids[start : start + 257]])
    with torch.no_grad():
        logits = embedded.model(window[:, :-1]).logits[0]
    targets = window[0, 1:]
    accuracy = (logits.argmax(-1) == targets).double().mean().item()
    # Baselines: uniform guessing, and always guessing the window's most frequent token.
    chance = 1 / len(embedded.tokenizer)
    majority = targets.bincount().max().item() / len(targets)
    assert accuracy > 2 * majority, (
        f"top-1 accuracy {accuracy:.3f} on 256 Alice tokens vs majority baseline "
        f"{majority:.3f} and chance {chance:.2e}"
    )


@pytest.mark.slow
def test_embedded_cache_matches_direct_gguf_dequantisation(embedded, capfd):
    """The cached safetensors give exactly the logits of transformers' own GGUF loading; and
    that loading, inside ``progress_bars(False, gguf=True)`` as lamina builds its cache with
    ``--no-progress``, prints no bar (transformers' GGUF loader calls tqdm directly)."""
    from transformers import AutoModelForCausalLM

    from lamina.sources._hf import progress_bars

    gguf = gguf_module.embedded_gguf_path("smollm2-135m")
    capfd.readouterr()
    with progress_bars(False, gguf=True):
        direct = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        ).eval()
    err = capfd.readouterr().err
    assert "%|" not in err and "it/s" not in err, err
    ids = embedded.tokenizer("Alice was beginning to get very tired", return_tensors="pt")
    with torch.no_grad():
        cached_logits = embedded.model(ids["input_ids"]).logits
        direct_logits = direct(ids["input_ids"]).logits
    torch.testing.assert_close(cached_logits, direct_logits, rtol=0, atol=0)
