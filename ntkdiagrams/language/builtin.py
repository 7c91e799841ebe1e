"""Where the built-in rule files are: the package data ``ntkdiagrams.rules``.

The repository's top-level ``rules/`` (data only, no ``__init__.py``) is installed as the
namespace package ``ntkdiagrams.rules`` (pyproject.toml's package-dir mapping); in a source tree
that was never installed it is ``rules/`` beside the package.  Standard library only, so that the
command line can list the built-in rule files without importing sympy.
"""
from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

__all__ = ["builtin_rules_dir", "builtin_rule_names"]


def builtin_rules_dir() -> Path:
    """The folder of the built-in rule files.

    The search locations of the namespace package are used directly: ``importlib.resources.files``
    returns a ``MultiplexedPath`` for a namespace package, whose ``str()`` is not a path."""
    spec = find_spec("ntkdiagrams.rules")
    if spec is not None:
        for location in spec.submodule_search_locations or ():
            if Path(location).is_dir():
                return Path(location)
    return Path(__file__).resolve().parents[2] / "rules"


def builtin_rule_names() -> list[str]:
    """Names of the built-in rule files (``mlp`` for rules/mlp.toml), sorted."""
    folder = builtin_rules_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []
