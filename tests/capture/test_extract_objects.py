"""``lamina.extract`` of a model and tokenizer passed in as objects (a notebook's).

The table equals, column by column, the table of the same model saved with
``save_pretrained`` and loaded by path; its metadata identify the model by class,
config hash and tensor fingerprint; the model's training mode is restored.
"""

from __future__ import annotations

import numpy as np
import pytest

import lamina
from lamina.errors import InputError
from lamina.table import table_metadata
from study.token_tables import tiny_study_text
from tiny_models import tiny_model

TEXT = tiny_study_text(2)
OPTIONS = {"windows": "all", "window": 64, "progress": False}


@pytest.fixture(scope="module")
def gpt2():
    return tiny_model("gpt2", seed=0)


@pytest.fixture(scope="module")
def from_objects(gpt2):
    model, tokenizer = gpt2
    return lamina.extract(model=model, tokenizer=tokenizer, text=TEXT, **OPTIONS)


def test_objects_give_the_table_of_the_same_model_loaded_by_path(gpt2, from_objects, tmp_path):
    model, tokenizer = gpt2
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    loaded = lamina.load_model(str(tmp_path / "tiny"), device="cpu", dtype="float32")
    by_path = lamina.extract(loaded, TEXT, **OPTIONS)

    assert from_objects.column_names == by_path.column_names
    assert from_objects.num_rows == by_path.num_rows > 500
    for name in by_path.column_names:
        got = from_objects.column(name).to_numpy(zero_copy_only=False)
        want = by_path.column(name).to_numpy(zero_copy_only=False)
        np.testing.assert_array_equal(got, want, err_msg=name)
    objects_meta, path_meta = table_metadata(from_objects), table_metadata(by_path)
    for key in ("windows", "text", "sites", "n_layers"):
        assert objects_meta[key] == path_meta[key], key


def test_the_table_records_what_was_passed_in(gpt2, from_objects):
    model, tokenizer = gpt2
    recorded = table_metadata(from_objects)["model"]
    report = lamina.load_model(model, tokenizer).report
    assert recorded == report.to_dict()
    assert recorded["spec"] == "<GPT2LMHeadModel passed in>"
    assert recorded["source"] == "object"
    assert recorded["architecture"] == "GPT2LMHeadModel"
    assert recorded["fingerprint"].startswith("sha256-tensors:")
    assert len(recorded["config_sha256"]) == 64


def test_a_pair_and_a_loaded_model_give_the_same_table(gpt2, from_objects):
    model, tokenizer = gpt2
    pair = lamina.extract((model, tokenizer), TEXT, **OPTIONS)
    loaded = lamina.extract(lamina.load_model(model, tokenizer), TEXT, **OPTIONS)
    for table in (pair, loaded):
        assert table.column_names == from_objects.column_names
        for name in table.column_names:
            assert table.column(name).equals(from_objects.column(name)), name


def test_a_model_in_training_mode_is_scored_in_eval_mode_and_given_back(gpt2, from_objects):
    model, tokenizer = gpt2
    model.train()  # dropout on: the forward passes must still be deterministic
    try:
        table = lamina.extract(model=model, tokenizer=tokenizer, text=TEXT, **OPTIONS)
        assert model.training
    finally:
        model.eval()
    for name in table.column_names:
        assert table.column(name).equals(from_objects.column(name)), name


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda m, t: lamina.extract(m, TEXT), "needs its tokenizer"),
        (lambda m, t: lamina.extract(text=TEXT), "needs a model"),
        (lambda m, t: lamina.extract((m, t), model=m, tokenizer=t, text=TEXT), "twice"),
        (lambda m, t: lamina.extract("smollm2-135m", TEXT), "lamina.load_model('smollm2-135m')"),
        (lambda m, t: lamina.extract(model=m, tokenizer=t), "text must be"),
    ],
)
def test_wrong_calls_are_one_sentence(gpt2, call, needle):
    model, tokenizer = gpt2
    with pytest.raises(InputError) as refused:
        call(model, tokenizer)
    message = str(refused.value)
    assert needle in message and "\n" not in message, message
    assert "GPT2LMHeadModel(" not in message
