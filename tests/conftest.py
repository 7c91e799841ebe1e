"""Test-session setup shared by every test.

A private derivation cache.  Derived recursions are cached on disk in the folder named by
``NTKDIAGRAMS_CACHE`` (default ``~/.cache/ntkdiagrams``, read at the package's entry points).
Before any test is collected, this file points ``NTKDIAGRAMS_CACHE`` at a fresh temporary folder
of the session, removed at its end: the tests never read or write the user's cache, every run
starts cold (a stale cache cannot hide a change), and the environment variable reaches
everything the tests start: in-process calls, command-line subprocesses and the notebook
kernels of tests/test_notebooks.py.  ``NTKDIAGRAMS_TEST_CACHE=<folder>`` uses (and keeps) that
folder instead, for a warm cache across local runs.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_FOLDER = pytest.StashKey()     # (folder made for this session or None, the variable's previous value)


def pytest_configure(config):
    previous = os.environ.get("NTKDIAGRAMS_CACHE")
    keep = os.environ.get("NTKDIAGRAMS_TEST_CACHE", "").strip()
    if keep:
        os.makedirs(keep, exist_ok=True)
        folder, made = keep, None
    else:
        folder = made = tempfile.mkdtemp(prefix="ntkdiagrams-test-cache-")
    os.environ["NTKDIAGRAMS_CACHE"] = folder
    config.stash[_FOLDER] = (made, previous)


def pytest_unconfigure(config):
    made, previous = config.stash.get(_FOLDER, (None, None))
    if made:
        shutil.rmtree(made, ignore_errors=True)
    if previous is None:
        os.environ.pop("NTKDIAGRAMS_CACHE", None)
    else:
        os.environ["NTKDIAGRAMS_CACHE"] = previous


def pytest_report_header(config):
    return f"derivation cache (NTKDIAGRAMS_CACHE): {os.environ.get('NTKDIAGRAMS_CACHE')}"
