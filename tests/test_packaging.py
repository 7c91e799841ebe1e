"""The built wheel holds every module of every subpackage and the built-in rule files.

The wheel is built with ``pip wheel --no-deps --no-build-isolation`` (the running Python's
setuptools, nothing downloaded) from a copy of the sources in ``tmp_path``, so that setuptools'
``build/`` folder neither lands in the source tree nor leaks stale files into the wheel.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _can_build_wheels() -> bool:
    """setuptools >= 70.1 has bdist_wheel itself; older ones need the ``wheel`` package."""
    return (importlib.util.find_spec("setuptools") is not None
            and (importlib.util.find_spec("setuptools.command.bdist_wheel") is not None
                 or importlib.util.find_spec("wheel") is not None))


def _source_modules() -> set[str]:
    """Every module of the package in the source tree, as paths inside the wheel."""
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / "ntkdiagrams").rglob("*.py")
            if "__pycache__" not in p.parts}


def _rule_files() -> set[str]:
    return {f"ntkdiagrams/rules/{p.name}" for p in (ROOT / "rules").glob("*.toml")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    if not (ROOT / "pyproject.toml").exists():
        pytest.skip("not a source tree (no pyproject.toml beside tests/)")
    if not _can_build_wheels():
        pytest.skip("no bdist_wheel: setuptools < 70.1 without the 'wheel' package "
                    "(pip install -e '.[test]' installs it)")
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("ntkdiagrams", "rules"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    dist = tmp / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "--quiet", "--wheel-dir", str(dist), str(src)],
                          cwd=tmp, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = sorted(dist.glob("ntkdiagrams-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as zf:
        yield zf


def test_wheel_contains_the_rule_files(wheel):
    names = set(wheel.namelist())
    assert "ntkdiagrams/rules/mlp.toml" in names
    assert _rule_files() <= names
    assert wheel.read("ntkdiagrams/rules/mlp.toml") == (ROOT / "rules" / "mlp.toml").read_bytes()


def test_wheel_contains_every_subpackage_and_module(wheel):
    names = set(wheel.namelist())
    subpackages = {p.parent.relative_to(ROOT).as_posix() for p in (ROOT / "ntkdiagrams").rglob("__init__.py")}
    assert {"ntkdiagrams", "ntkdiagrams/cli", "ntkdiagrams/engine", "ntkdiagrams/numerics/gaussian"} <= subpackages
    missing = sorted(f"{pkg}/__init__.py" for pkg in subpackages if f"{pkg}/__init__.py" not in names)
    assert not missing, f"subpackages missing from the wheel (pyproject.toml [tool.setuptools] packages): {missing}"
    missing = sorted(_source_modules() - names)
    assert not missing, f"modules missing from the wheel: {missing}"


def test_wheel_declares_the_console_script(wheel):
    entry = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    text = wheel.read(entry).decode()
    assert "[console_scripts]" in text and "ntkdiagrams = ntkdiagrams.cli:main" in text
