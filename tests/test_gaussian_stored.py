"""Quadrature tables kept on disk (ntkdiagrams.numerics.gaussian.stored): the arrays read back
are exactly the computed ones; files of another key, or damaged ones, are never used."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from ntkdiagrams.numerics.activations import z
from ntkdiagrams.numerics.gaussian import Quadrature, expectation_tensor
from ntkdiagrams.numerics.gaussian.rules import rule_for_code, split_rules
from ntkdiagrams.numerics.gaussian.series import hermite_basis
from ntkdiagrams.numerics.gaussian.stored import stored, tables_key
from ntkdiagrams.settings import Settings


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y)          # bit for bit (no NaN in these tables)


@pytest.mark.parametrize("name, call", [
    ("hermite_basis", lambda f: hermite_basis(128, f)),
    ("split_rules", lambda f: split_rules(8, f)),
    ("split_rules", lambda f: split_rules(40, f)),      # the tridiagonal solver's side of SPLIT_BATCHED_MAX
    ("hermite_rule", lambda f: rule_for_code(-5, f)),
])
def test_stored_tables_are_the_computed_ones(tmp_path, name, call):
    computed = call(None)
    first = call(tmp_path)                    # computes and writes
    files = list(tmp_path.glob(f"{name}-*.npz"))
    assert len(files) == 1
    _same(first, computed)
    for f in (hermite_basis, split_rules, rule_for_code):
        f.cache_clear()                       # as in a fresh process: read from the file
    again = call(tmp_path)
    _same(again, computed)
    assert all(not a.flags.writeable for a in again)


def test_damaged_or_mismatched_files_are_recomputed(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return (np.arange(3.0), np.ones((2, 2)))

    def hermite_like():
        calls.append(1)
        return (np.zeros(4), np.ones(4), np.ones((4, 3)))

    out = stored(tmp_path, "hermite_basis", (4,), hermite_like)
    (path,) = tmp_path.glob("hermite_basis-*.npz")
    assert len(calls) == 1
    stored(tmp_path, "hermite_basis", (4,), hermite_like)
    assert len(calls) == 1                    # read back
    path.write_bytes(path.read_bytes()[:100])  # truncated: not a zip any more
    _same(stored(tmp_path, "hermite_basis", (4,), hermite_like), out)
    assert len(calls) == 2
    # a file with the right name but the wrong shapes (as from a different layout) is not used
    np.savez(path, a0=np.zeros(5), a1=np.ones(5), a2=np.ones((5, 3)))
    _same(stored(tmp_path, "hermite_basis", (4,), hermite_like), out)
    assert len(calls) == 3
    # other arguments, another file; no folder, no file
    stored(tmp_path, "hermite_basis", (5,), lambda: (np.zeros(5), np.ones(5), np.ones((5, 3))))
    assert len(list(tmp_path.glob("hermite_basis-*.npz"))) == 2
    assert stored(None, "hermite_basis", (4,), compute)[0].shape == (3,)
    assert len(tables_key()) == 64


def test_series_tensor_with_stored_tables_is_unchanged(tmp_path):
    """The two-point path with the tables read from a folder gives the same doubles."""
    x = np.random.default_rng(3).standard_normal((6, 3))
    K = x @ x.T / 3
    facs = [sp.tanh(z), sp.tanh(z)]
    off = expectation_tensor(facs, K, settings=Settings(jit=False, threads=1, cache_dir=None))
    for _ in range(2):                        # writes, then reads
        for f in (hermite_basis, split_rules, rule_for_code):
            f.cache_clear()
        with Quadrature(Settings(jit=False, threads=1, cache_dir=tmp_path)) as quad:
            assert quad.tables == tmp_path / "tables"
            on = expectation_tensor(facs, K, quadrature=quad)
        assert np.array_equal(on, off)
    assert list((tmp_path / "tables").glob("hermite_basis-*.npz"))
