"""Every file the package reads at run time is declared as package data, so a wheel has it."""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_non_python_file_of_the_package_is_package_data():
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[tool.setuptools.package-data]", 1)[1]
    patterns = ast.literal_eval(re.search(r"^lamina = (\[.*?\])$", section, re.M).group(1))
    package = ROOT / "src" / "lamina"
    data = [
        p.relative_to(package).as_posix()
        for p in package.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    assert "report/static/explore.js" in data and "report/templates/report.html.j2" in data
    missing = [f for f in data if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
