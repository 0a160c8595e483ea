"""The top-level API re-exports the objects of the submodules, lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import lamina


@pytest.mark.parametrize("name", sorted(lamina._EXPORTS))
def test_every_export_is_the_submodule_object(name):
    import importlib

    module = importlib.import_module(lamina._EXPORTS[name])
    assert getattr(lamina, name) is getattr(module, name)


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        lamina.no_such_thing  # noqa: B018


def test_importing_lamina_does_not_import_torch_or_scipy():
    code = "import sys, lamina; print('torch' in sys.modules, 'scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("code", "absent"),
    [
        ("from lamina.capture import SITES, plan_windows", ("torch", "transformers")),
        ("from lamina.stats import STATISTICS, is_divergence", ("numpy", "scipy")),
        ("from lamina.sources import DEFAULT_MODEL, DEFAULT_TEXT", ("torch", "transformers")),
        ("from lamina.study import StudyOptions, WindowOptions", ("torch", "scipy")),
        ("from lamina.cli import build_parser; build_parser()", ("torch", "scipy", "matplotlib")),
        ("import lamina.pipeline, lamina.report.figures", ("torch", "scipy", "matplotlib")),
    ],
)
def test_subpackages_import_only_what_a_name_needs(code, absent):
    check = f"{code}\nimport sys\nprint(*[m for m in {list(absent)!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
