"""The grid spacing of a factor's table of G(μ, s) (ntkdiagrams.numerics.gaussian.spacing): the
coarsest of TABLE_SPACINGS whose 6-point interpolation stays within TABLE_SPACING_TOL of the
factor's scale.  These tests check the calibration's choices, that a table read at its spacing
meets the tolerance at points the calibration did not use, that the tables are grown on their
own grid, and that expectations read from coarser tables agree with those from the finest."""
import numpy as np
import pytest
import sympy as sp

from ntkdiagrams.numerics.activations import parse_activation, z
from ntkdiagrams.numerics.gaussian import Quadrature, expectation_tensor
from ntkdiagrams.numerics.gaussian.factors import prepare_factor
from ntkdiagrams.numerics.gaussian.spacing import (SPACING_MIN_VARIANCE, TABLE_SPACING_TOL, TABLE_SPACINGS,
                                                   finest, interpolation_errors, spacing_for, table_spacing)
from ntkdiagrams.numerics.gaussian.table import (TABLE_H_MU, GrowingTable, expectation_at, growing_table,
                                                 table_lookup)
from ntkdiagrams.settings import Settings


def spacing(name, d=0):
    return table_spacing(prepare_factor(parse_activation(name).derivative(d)))


def test_choices():
    """The tanh family and erf keep the finest grid (tanh'' is read to ~1e-8 of its scale there);
    the smoother factors take coarser ones (measured 2026-12-03: softplus 0.05, the sigmoid 0.05,
    sin 0.04, GELU and swish 0.03); a polynomial, which the 6-point stencil reads exactly, the
    coarsest."""
    assert TABLE_SPACINGS[0] == TABLE_H_MU
    assert spacing("tanh") == spacing("tanh", 2) == spacing("erf") == spacing("erf", 2) == TABLE_H_MU
    assert spacing("softplus") >= 0.05 and spacing("softplus", 1) >= 0.04
    assert spacing("gelu") >= 0.03 and spacing("sin") >= 0.04 and spacing("swish") >= 0.03
    assert table_spacing(prepare_factor(z ** 3 - z)) == TABLE_SPACINGS[-1]
    # the spacing is the coarsest within the tolerance, with every finer one
    for name in ("softplus", "swish", "gelu"):
        f = prepare_factor(parse_activation(name).expr)
        err = interpolation_errors(f)
        k = TABLE_SPACINGS.index(table_spacing(f))
        assert np.all(err[:k + 1] <= TABLE_SPACING_TOL) and not err[k + 1] <= TABLE_SPACING_TOL


@pytest.mark.parametrize("name,d", [("softplus", 0), ("softplus", 1), ("swish", 2), ("gelu", 0), ("sin", 0)])
def test_read_within_the_tolerance(name, d):
    """At random (μ, s) (not the calibration's cell middles), s up to 3, the table of the chosen
    spacing reads G within 2 × TABLE_SPACING_TOL of the factor's scale ⟨f²⟩^{1/2} under
    N(0, SPACING_MIN_VARIANCE), against G by the entries' own rule; the finest grid's table is no
    worse."""
    f = prepare_factor(parse_activation(name).derivative(d))
    h = table_spacing(f)
    x, w = np.polynomial.hermite_e.hermegauss(64)
    scale = np.sqrt(np.sum(w * f.plus(np.sqrt(SPACING_MIN_VARIANCE) * x) ** 2) / np.sum(w))
    rng = np.random.default_rng(3)
    s = np.r_[rng.uniform(0, 0.3, 6), rng.uniform(0.3, 3.0, 4)]
    mu = rng.uniform(-8, 8, 300)
    for hh in (h, TABLE_H_MU):
        tab, M = GrowingTable(f, hh).extent(12.0, 3.0)
        L = np.zeros((s.size, 2, 2))
        L[:, 1, 0], L[:, 1, 1] = 10.0, s
        read = table_lookup(tab, M, np.broadcast_to((mu + M) / hh, (s.size, mu.size)).copy(), L, 2, hh)
        exact = np.stack([expectation_at(f, mu, sk) for sk in s])
        assert np.max(np.abs(read - exact)) <= 2 * TABLE_SPACING_TOL * scale, hh


def test_table_on_its_own_grid():
    """A table at spacing h: entry (i, j) is G(−M_t + i h, |j − 2| h), as computed by the entries'
    rule; growing_table keeps one table per factor and spacing."""
    f = prepare_factor(sp.log(1 + sp.exp(z)))
    h = 0.05
    tab, M = GrowingTable(f, h).extent(20.0, 2.0)
    assert M == 20.0 and tab.shape == (801, 46)
    for i, j in ((0, 2), (123, 7), (400, 0), (800, 45)):
        assert tab[i, j] == expectation_at(f, np.array([-M + i * h]), abs(j - 2) * h)[0]
    fine, _ = GrowingTable(f).extent(20.0, 2.0)
    assert fine.shape == (2001, 106)
    assert growing_table(f, h) is growing_table(f, h) is not growing_table(f)


def test_spacing_for_a_call():
    """One grid per call: the finest of its factors' spacings; the finest for all with
    ``spacing=False``."""
    soft = prepare_factor(sp.log(1 + sp.exp(z)))
    tanh2 = prepare_factor(sp.diff(sp.tanh(z), z, 2))
    with Quadrature(Settings(jit=False, threads=1)) as quad:
        assert spacing_for([soft], quad) == table_spacing(soft) > TABLE_H_MU
        assert spacing_for([soft, tanh2], quad) == TABLE_H_MU
    with Quadrature(Settings(jit=False, threads=1), spacing=False) as quad:
        assert spacing_for([soft], quad) == TABLE_H_MU
    assert list(finest(np.array([1e-5, 0.49, 0.5, 30.0]))) == [True, True, False, False]


#: the kernel of six inputs after six softplus layers at |x|²/n0 = 3, C_W = 2 (rounded): correlated,
#: variances 4.8 … 20, where most four-input tuples take the nested rule and some the two-factor form
DEEP = np.array([[4.799, 4.749, 6.492, 5.834, 8.545, 5.017],
                 [4.749, 4.771, 6.435, 5.884, 8.612, 5.076],
                 [6.492, 6.435, 10.606, 7.849, 11.903, 6.893],
                 [5.834, 5.884, 7.849, 8.069, 12.145, 6.744],
                 [8.545, 8.612, 11.903, 12.145, 20.121, 10.282],
                 [5.017, 5.076, 6.893, 6.744, 10.282, 5.773]])


@pytest.mark.parametrize("name,jit", [("softplus", False), ("swish", False), ("softplus", True)])
def test_expectations_agree_with_the_finest_grid(name, jit):
    """⟨σ'σ'σσ⟩ and ⟨σσσσ⟩ over every index tuple of the six inputs of DEEP, the first one's variance
    brought to 0.1 (its tuples read the finest table, the others their factors' own), by the fast
    path (nested rule and two-factor form, numpy and compiled): the tables at their own spacings
    agree with the finest grid's within 1e-9 of the largest entry."""
    pytest.importorskip("numba") if jit else None
    s0 = parse_activation(name).expr
    d = np.sqrt([0.1 / DEEP[0, 0], 1, 1, 1, 1, 1])
    K = DEEP * np.outer(d, d)
    for factors in ([sp.diff(s0, z), sp.diff(s0, z), s0, s0], [s0] * 4):
        out = []
        for own in (True, False):
            with Quadrature(Settings(jit=jit, threads=1), compiled_min_points=0, spacing=own) as quad:
                out.append(expectation_tensor(factors, K, method="fast", quadrature=quad))
            assert quad.stats["two_factor_tuples"] > 0
        assert np.max(np.abs(out[0] - out[1])) < 1e-9 * np.max(np.abs(out[1]))
