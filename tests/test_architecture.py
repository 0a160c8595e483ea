"""The map of docs/architecture.md, enforced: rooms, the one-way flow, no cycles, short modules.

Every ``import`` in ``src/lamina`` (at any depth, type-only imports included) is
read with :mod:`ast`, so a forbidden import fails here even inside a function.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lamina"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

# lamina's rooms: the second part of a module name; the package itself and its
# small shared modules (errors, _io, _staging, _format, _lazy) form the base every room may use.
BASE = {
    "lamina",
    "lamina.errors",
    "lamina._io",
    "lamina._staging",
    "lamina._format",
    "lamina._lazy",
}

# What each room may import from lamina (module prefixes), besides itself and the base.
ALLOWED = {
    "sources": (),
    "table": (),
    "capture": ("lamina.sources", "lamina.table"),
    "backends": (),
    "stats": ("lamina.backends",),
    # the study reads token tables, runs statistics, and knows the window vocabulary and
    # the covariates' definitions (to derive them for tables written before them)
    "study": (
        "lamina.table",
        "lamina.stats",
        "lamina.capture.windows",
        "lamina.capture.covariate_columns",
    ),
    # the report reads study results and the statistics' catalogue, nothing else
    "report": ("lamina.study.result", "lamina.study.records", "lamina.stats.catalog"),
    "pipeline": (
        "lamina.sources",
        "lamina.table",
        "lamina.capture",
        "lamina.backends",
        "lamina.stats",
        "lamina.study",
        "lamina.report",
    ),
    "cli": ("lamina.",),
}

# Third-party packages a room must never import (stats works on arrays, the report on results).
FORBIDDEN_PACKAGES = {
    "base": ("torch", "transformers", "scipy", "numpy", "matplotlib", "pyarrow"),
    "table": ("torch", "transformers"),
    "stats": ("torch", "transformers", "pyarrow", "matplotlib"),
    "study": ("torch", "transformers", "matplotlib"),
    "report": ("torch", "transformers", "scipy", "pyarrow"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def room(module: str) -> str:
    if module in BASE:
        return "base"
    if module == "lamina.__main__":
        return "cli"
    return module.split(".")[1]


def imports(module: str) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import statement of ``module``, at any depth."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:  # `from pkg import submodule`
                if f"{target}.{alias.name}" in MODULES:
                    yield f"{target}.{alias.name}", node.lineno


def lamina_edges() -> dict[str, set[str]]:
    """Module -> the lamina modules it imports.

    Importing ``a.b.c`` also runs the packages ``a`` and ``a.b``; those count,
    except the importer's own enclosing packages, which Python runs first anyway.
    """
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        enclosing = {".".join(module.split(".")[:k]) for k in range(1, module.count(".") + 1)}
        for target, _ in imports(module):
            if not target.startswith("lamina"):
                continue
            parts = target.split(".")
            implied = {".".join(parts[:k]) for k in range(1, len(parts))} - enclosing
            for name in {target, *implied}:
                if name in MODULES and name != module:
                    edges[module].add(name)
    return edges


def test_every_module_belongs_to_a_known_room():
    rooms = {room(m) for m in MODULES}
    assert rooms <= {"base", *ALLOWED}, rooms - {"base", *ALLOWED}


def test_no_import_runs_against_the_flow():
    wrong = []
    for module in MODULES:
        here = room(module)
        for target, line in imports(module):
            if target.startswith("lamina") and target not in BASE:
                there = room(target)
                allowed = ALLOWED.get(here, ())
                ok = here == "cli" or there == here or target.startswith(allowed)
                if not ok:
                    wrong.append(f"{module}:{line} imports {target}")
            top = target.split(".")[0]
            if top in FORBIDDEN_PACKAGES.get(here, ()):
                wrong.append(f"{module}:{line} imports {target} ({here} must not use {top})")
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_command_line():
    wrong = [
        f"{module}:{line}"
        for module in MODULES
        if room(module) != "cli"
        for target, line in imports(module)
        if target == "lamina.cli" or target.startswith("lamina.cli.")
    ]
    assert not wrong, wrong


def test_there_is_no_import_cycle():
    edges = lamina_edges()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_and_functions_stay_short(module):
    text = MODULES[module].read_text(encoding="utf-8")
    n_lines = text.count("\n")
    assert n_lines <= MAX_MODULE_LINES, f"{module} has {n_lines} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{module}: {', '.join(long)}"


def test_the_checks_see_a_forbidden_import(tmp_path, monkeypatch):
    """The rules are not vacuous: a stats module importing torch or the study is caught."""
    bad = SRC / "stats" / "_architecture_probe.py"
    monkeypatch.setitem(MODULES, "lamina.stats._architecture_probe", bad)
    source = "def f():\n    import torch\n    from lamina.study import analyze_table\n"
    monkeypatch.setattr(Path, "read_text", lambda self, **kw: source)
    found = [t for t, _ in imports("lamina.stats._architecture_probe")]
    assert found == ["torch", "lamina.study"]
    assert room("lamina.stats._architecture_probe") == "stats"
    assert "torch" in FORBIDDEN_PACKAGES["stats"]
    assert not "lamina.study".startswith(ALLOWED["stats"])


def twin_names(modules) -> list[str]:
    """Modules of different rooms whose names a reader could take for one another.

    Two names are twins when they are equal, or are single words that differ
    only after the shorter's second-last letter (``compare`` and ``comparison``,
    ``extract`` and ``extraction``); a second word (``compare_runs``) says the job.
    The only twins allowed are a part and its figure (``study/parts/profile.py``,
    ``report/figures/profile.py``: one figure per part, by design) and the
    private ``_common`` helpers of a package.
    """
    stems = sorted(
        (name.rsplit(".", 1)[-1], name)
        for name in modules
        if not name.endswith("__init__") and name.count(".") >= 2
    )
    stems = [(s, n) for s, n in stems if s != "_common"]
    mirrored = ("lamina.study.parts.", "lamina.report.figures.")
    found = []
    for i, (a, name_a) in enumerate(stems):
        for b, name_b in stems[i + 1 :]:
            shared = next(
                (k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)),
            )
            one_word = "_" not in a.strip("_") and "_" not in b.strip("_")
            if a != b and (not one_word or shared < max(len(min(a, b, key=len)) - 1, 4)):
                continue
            if {name_a.rsplit(".", 1)[0] + ".", name_b.rsplit(".", 1)[0] + "."} == set(mirrored):
                continue
            found.append(f"{name_a} / {name_b}")
    return found


def test_module_names_say_which_room_they_are_in():
    """No two modules read as twins (docs/architecture.md names each by its job)."""
    assert not twin_names(MODULES), twin_names(MODULES)


def test_the_twin_check_sees_twins():
    names = ["lamina.pipeline.compare", "lamina.pipeline.comparison", "lamina.report.compare"]
    assert len(twin_names(names)) == 3
    assert twin_names(["lamina.study.parts.profile", "lamina.report.figures.profile"]) == []
    assert twin_names(["lamina.capture.sites", "lamina.study.sites"]) != []
    assert twin_names(["lamina.pipeline.compare_runs", "lamina.report.comparison_page"]) == []


@pytest.mark.parametrize(
    "package", sorted(m for m, p in MODULES.items() if p.name == "__init__.py")
)
def test_every_lazily_exported_name_resolves(package):
    """A package's lazy ``__getattr__`` finds every name it lists (a renamed module is caught)."""
    import importlib

    module = importlib.import_module(package)
    for name in getattr(module, "__all__", None) or dir(module):
        if not name.startswith("_"):
            assert getattr(module, name) is not None, f"{package}.{name}"
