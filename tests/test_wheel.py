"""lamina as a user installs it: the sdist and the wheel built from the tree, the wheel installed
into a fresh virtual environment outside the source tree, and a short study run from there.

The fresh environment reuses the dependencies already installed in the test's own
environment (torch, transformers, ...) through a path entry, so nothing is downloaded;
lamina itself comes only from the wheel (``--no-deps``, and the test checks that the
imported package is the installed one and that the wheel's declared dependencies are
met). Built from the files git tracks, so a file the code needs but git does not have
fails here as it would for a user.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from study.token_tables import save_tiny_gpt2, tiny_study_text

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "lamina"

pytestmark = pytest.mark.slow


def _tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [f for f in listed.split("\0") if f and (ROOT / f).is_file()]


def _run(argv: list, **kwargs) -> subprocess.CompletedProcess:
    # the fresh environment sees only what it installed: no PYTHONPATH into a source tree
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=600, env=env, **kwargs
    )
    assert done.returncode == 0, f"{argv}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """The sdist and the wheel, built from a copy of the tracked files (the wheel from the sdist)."""
    root = tmp_path_factory.mktemp("dist")
    tree = root / "tree"
    for name in _tracked_files():
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", root / "out", tree])
    (sdist,) = (root / "out").glob("lamina-*.tar.gz")
    (wheel,) = (root / "out").glob("lamina-*.whl")
    return sdist, wheel


def _package_files() -> set[str]:
    """Every file of the package in the tree (Python and data), as the wheel names it."""
    return {
        "lamina/" + p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_the_wheel_carries_exactly_the_package_files(dists):
    _, wheel = dists
    with zipfile.ZipFile(wheel) as archive:
        names = {n for n in archive.namelist() if not n.split("/")[0].endswith(".dist-info")}
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [
            line for line in archive.read(metadata).decode().splitlines() if "Requires-Dist" in line
        ]
    assert names == _package_files()
    assert {"lamina/report/static/explore.js", "lamina/report/templates/report.html.j2"} <= names
    # ray and pandas are extras, not requirements of every install
    assert not any(line.split(":", 1)[1].strip().startswith("ray") and "extra" not in line
                   for line in requires)  # fmt: skip
    assert any("ray[data]" in line and 'extra == "ray"' in line for line in requires)


def test_the_sdist_carries_the_package_and_its_build_files(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    wanted = {"src/" + f for f in _package_files()} | {"pyproject.toml", "README.md"}
    assert wanted <= names, sorted(wanted - names)
    assert top.startswith("lamina-")


@pytest.fixture(scope="module")
def fresh_env(dists, tmp_path_factory):
    """A new virtual environment with the wheel installed and the test env's dependencies."""
    _, wheel = dists
    root = tmp_path_factory.mktemp("fresh")
    env_dir = root / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    # the dependencies, reused: a path line (the .pth files of that directory, among them
    # the editable install of the source tree, are not processed)
    Path(site.stdout.strip(), "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel])
    return env_dir


def test_the_installed_wheel_is_the_package_imported_and_its_dependencies_are_met(fresh_env):
    check = """
import importlib.metadata as md, json, lamina
from packaging.requirements import Requirement
unmet = []
for line in md.requires("lamina"):
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    try:
        if md.version(req.name) not in req.specifier:
            unmet.append(line)
    except md.PackageNotFoundError:
        unmet.append(line)
print(json.dumps({"file": lamina.__file__, "unmet": unmet}))
"""
    import json

    done = _run([fresh_env / "bin" / "python", "-c", check], cwd=fresh_env)
    found = json.loads(done.stdout)
    assert Path(found["file"]).is_relative_to(fresh_env), found["file"]
    assert found["unmet"] == []


def test_a_short_study_runs_from_the_installed_wheel(fresh_env, tmp_path):
    save_tiny_gpt2(tmp_path / "model")
    (tmp_path / "text.txt").write_text(tiny_study_text(), encoding="utf-8")
    argv = [
        fresh_env / "bin" / "lamina", "run", "--model", "model", "--text", "text.txt",
        "--layer", "1", "--window", "64", "--permutations", "50", "--no-progress", "--out", "out",
    ]  # fmt: skip
    _run(argv, cwd=tmp_path)
    out = tmp_path / "out"
    page = (out / "report.html").read_text(encoding="utf-8")
    script = (PACKAGE / "report" / "static" / "explore.js").read_text(encoding="utf-8")
    assert script.strip()[:200] in page  # the static script was read from the installed package
    for name in (
        "results.json",
        "layers.csv",
        "tokens.parquet",
        "figures/part6_laminar_profile.png",
    ):
        assert (out / name).stat().st_size > 0, name
