"""The table G(μ, s) = E[f(μ + s ξ)] of the fast path's innermost integral (numerics/gaussian/table.py):
one table per factor, grown to the widest extent asked for; its entries do not depend on the
order of the requests."""
import numpy as np
import sympy as sp

from ntkdiagrams.settings import Settings

from ntkdiagrams.numerics.activations import z
from ntkdiagrams.numerics.gaussian.factors import prepare_factor
from ntkdiagrams.numerics.gaussian.context import Quadrature
from ntkdiagrams.numerics.gaussian.table import TABLE_H_MU, TABLE_H_S, GrowingTable, g_table


def test_grown_table_equals_a_fresh_one():
    """Small extent, then wider in μ and s: the grown table equals one built at the wide extent
    directly, and the small request's entries keep their values."""
    f = prepare_factor(sp.tanh(z) ** 2)
    grown = GrowingTable(f)
    small, M1 = grown.extent(20.0, 2.0)
    small = small.copy()
    wide, M2 = grown.extent(28.0, 3.0)
    fresh, M3 = GrowingTable(f).extent(28.0, 3.0)
    assert M1 == 20.0 and M2 == M3 == 28.0
    assert np.array_equal(wide, fresh)
    off = int(round((M2 - M1) / TABLE_H_MU))
    assert np.array_equal(wide[off:off + small.shape[0], :small.shape[1]], small)
    # a narrower request reads the wide table (M_t ≥ M)
    again, M4 = grown.extent(20.0, 2.0)
    assert again is wide and M4 == 28.0


def test_threads_give_the_same_entries(tmp_path):
    """A growth whose columns are shared among a Quadrature's threads (in interleaved groups;
    both kinds of growth, new columns and new rows of old columns, across the wide rows' 48-
    and 96-node rules read from the stored tables) gives the same table as one thread with the
    rules computed, bit for bit."""
    f = prepare_factor(sp.log(1 + sp.exp(z)))
    one, threaded = GrowingTable(f), GrowingTable(f)
    with Quadrature(Settings(threads=2, cache_dir=str(tmp_path))) as quad:
        for M, S in ((20.0, 1.0), (24.0, 5.0)):
            a, Ma = one.extent(M, S)
            b, Mb = threaded.extent(M, S, quad)
            assert Ma == Mb and a.shape == b.shape and np.array_equal(a, b)
        assert any((tmp_path / "tables").iterdir())  # the rules were stored


def test_columns_are_the_transposed_table():
    """The compiled kernel's layout (n_s, n_μ): the same entries, made once per growth; a table
    from before a growth still gets its own columns."""
    grown = GrowingTable(prepare_factor(sp.tanh(z)))
    old, _ = grown.extent(20.0, 1.0)
    cols_old = grown.columns(old)
    assert cols_old.flags.c_contiguous and np.array_equal(cols_old, old.T)
    assert grown.columns(old) is cols_old
    new, _ = grown.extent(24.0, 1.5)
    assert np.array_equal(grown.columns(old), old.T)
    cols = grown.columns(new)
    assert cols.shape == new.shape[::-1] and np.array_equal(cols, new.T) and grown.columns(new) is cols


def test_entries():
    """G(μ, s) for f = tanh²: against E[tanh²(μ + sξ)] by a 200-point Gauss–Hermite rule (the
    table's rows s ≤ 2 take 24 nodes per side), and
    G(μ, 0) = f(μ)."""
    f = prepare_factor(sp.tanh(z) ** 2)
    tab, M = g_table(f, 20.0, 2.0)
    x, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / np.sqrt(2 * np.pi)
    for mu, s in ((0.0, 0.3), (1.3, 1.1), (-2.5, 1.9)):
        i, j = int(round((mu + M) / TABLE_H_MU)), int(round(s / TABLE_H_S)) + 2  # s = (j − 2) h_s
        ref = np.sum(w * np.tanh(mu + s * x) ** 2)
        assert abs(tab[i, j] - ref) < 2e-9, (mu, s)  # the 24-node rule: 6e-10 at s = 1.9
    i0 = int(round((0.7 + M) / TABLE_H_MU))
    assert abs(tab[i0, 2] - np.tanh(0.7) ** 2) < 1e-15
