"""docs/api.md documents every public name, with the signature the code has."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import lamina

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
HEADING = re.compile(r"^### `lamina\.(\w+)(\((.*?)\))?( -> [^`]+)?`", re.MULTILINE)


def _documented() -> dict[str, str | None]:
    """Every ``### `lamina.NAME(...)` `` heading: name -> its parameter text (None: no call)."""
    text = API_DOC.read_text(encoding="utf-8")
    found: dict[str, str | None] = {}
    for line in text.splitlines():
        if not line.startswith("### `lamina."):
            continue
        for part in line[4:].split("`, `"):
            match = HEADING.match("### `" + part.strip("`") + "`")
            assert match, line
            found[match.group(1)] = match.group(3)
    return found


def _names(parameters: str) -> list[str]:
    """The parameter names of ``a, b=(1, 2), *, c=None`` (``*`` kept), top-level commas only."""
    names, depth, current = [], 0, ""
    for char in parameters + ",":
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            if current.strip():
                names.append(current.split("=")[0].strip())
            current = ""
        else:
            current += char
    return names


def test_every_public_name_is_documented():
    assert sorted(_documented()) == sorted(lamina.__all__)


@pytest.mark.parametrize("name", sorted(lamina._EXPORTS))
def test_the_documented_parameters_are_the_codes(name):
    parameters = _documented()[name]
    obj = getattr(lamina, name)
    if parameters is None or name in ("StudyOptions", "StudyResult"):
        return  # documented by field, not by call
    signature = inspect.signature(obj)
    expected = []
    for p in signature.parameters.values():
        if p.kind is p.KEYWORD_ONLY and "*" not in expected:
            expected.append("*")
        expected.append(p.name)
    assert _names(parameters) == expected
