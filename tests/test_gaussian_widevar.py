"""The fast path at effective variances 20 … 60 (2026-12-01: FAST_MAX_VARIANCE 20 → 60, ladder rungs
up to 146 nodes per side, table rows beyond s = 4.5 with 96 nodes per side), and the warning beyond.

References: two variables, the cone method at degree 96 (its own movement from degree 80 ≤ 3e-9 of
the scale at variance 64); three and four variables, the same nested rules with a uniform 150
nodes per side on every outer level (independent of the ladders' choice; 120 and 150 agree to
≤ 2e-12 of the scale here).  Measured (scripts/validate_fast_bigvar.py and docs/gaussian.md):
≤ 1.5e-10 of the scale Π⟨f²⟩^{1/2} for two variables, ≤ 2e-10 for four away from nearly
collinear pairs, where the cone method at its default degree, which took these tuples before, is
off by 2e-6 … 1e-3.  The bound 2e-9 catches a 1e-8 error.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from ntkdiagrams.numerics.activations import parse_activation
from ntkdiagrams.numerics.gaussian import FAST_MAX_VARIANCE, Quadrature, expectation_tensor
from ntkdiagrams.numerics.gaussian.blocks import Block
from ntkdiagrams.numerics.gaussian.fast import integrate_fast
from ntkdiagrams.numerics.gaussian.cone import AccuracyWarning
from ntkdiagrams.numerics.gaussian.table import TABLE_WIDER_S, GrowingTable, table_degree
from ntkdiagrams.numerics.gaussian.tensor import prepare_factors
from ntkdiagrams.settings import Settings

from gaussian_support import scale

TOL = 2e-9


def kernel(m: int, var: float, seed: int = 3) -> np.ndarray:
    """Random correlations, equal variances ``var``."""
    X = np.random.default_rng(seed).standard_normal((m, m + 1))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X @ X.T * var


def factors(name: str, orders) -> list:
    act = parse_activation(name)
    return prepare_factors([act.derivative(k) for k in orders])


def test_bound():
    assert FAST_MAX_VARIANCE == 60.0


@pytest.mark.parametrize("name", ["tanh", "gelu", "erf"])
def test_two_inputs(name):
    """Every entry of σ'' ⊗ σ'' and σ ⊗ σ'' over three inputs at variance 50 (no entry by the
    cone method), against the cone method at degree 96."""
    act = parse_activation(name)
    K = kernel(3, 50.0)
    for fs in ([act.derivative(2)] * 2, [act.derivative(0), act.derivative(2)]):
        with Quadrature(Settings(jit=False, threads=1)) as quad:
            got = expectation_tensor(fs, K, quadrature=quad)
        assert quad.stats["tuples"] == 0
        ref = expectation_tensor(fs, K, method="exact", degree=96)
        sc = np.sqrt(np.outer(*[expectation_tensor([f ** 2], K, method="exact", degree=96)
                                for f in fs]))
        assert np.max(np.abs(got - ref) / sc) <= TOL


@pytest.mark.parametrize("name,orders,var", [("tanh", (0, 0, 0, 0), 45.0), ("tanh", (2, 0, 1, 1), 55.0),
                                             ("gelu", (2, 0, 1, 1), 110.0), ("erf", (1, 1, 0, 0), 60.0),
                                             ("softplus", (0, 1, 1, 2), 180.0)])
def test_four_inputs(name, orders, var):
    """The ladders against the uniform rule (150 nodes per side); GELU and softplus at raw
    variances whose effective variance κ²v is 48 (κ = 0.66) and 27 (κ = 0.39 since 2026-12-02; 52
    at κ = 0.54 before)."""
    pytest.importorskip("numba")  # the uniform reference: 3 × 10⁷ points per tuple
    facs = factors(name, orders)
    C = kernel(4, var)[None]
    blocks = [Block([(f, np.ones(1))]) for f in facs]
    with Quadrature(Settings(threads=2)) as quad:
        got = integrate_fast(blocks, C, None, quad)
        ref = integrate_fast(blocks, C, 150, quad)
        assert quad.stats["tuples"] == 0
    assert abs(got[0] - ref[0]) / scale(facs, C)[0] <= TOL


@pytest.mark.parametrize("name", ["tanh", "erf"])
def test_table_rows_beyond_wider_s(name):
    """Rows s > TABLE_WIDER_S of G(μ, s) = E[f(μ + sξ)] (96 nodes per side) against 140 nodes per
    side, for σ, σ', σ'': ≤ 1e-11 of the row's largest entry (48 nodes: up to 2.5e-5 at s = 8)."""
    from ntkdiagrams.numerics.gaussian.rules import split_nodes, split_rules_full

    act = parse_activation(name)
    for f in prepare_factors([act.derivative(k) for k in range(3)]):
        tab, M = GrowingTable(f).extent(12.0, 8.0)
        mu = -M + 0.02 * np.arange(tab.shape[0])
        for j in (int(TABLE_WIDER_S / 0.02) + 4, tab.shape[1] - 1):
            s = (j - 2) * 0.02  # the row of s = (j − 2) h_s
            assert table_degree(s) == 96
            u, w = split_nodes(split_rules_full(140), -mu / s)
            ref = np.sum(w * f.plus(mu[:, None] + s * u), axis=1)
            assert np.max(np.abs(tab[:, j] - ref)) <= 1e-11 * np.max(np.abs(ref))


def test_warning_beyond_the_bound():
    """Smooth tuples beyond the bound take the cone method at its default degree, with an
    AccuracyWarning; within it, none."""
    act = parse_activation("tanh")
    fs = [act.derivative(0)] * 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", AccuracyWarning)
        expectation_tensor(fs, kernel(3, 0.9 * FAST_MAX_VARIANCE), settings=Settings(jit=False, threads=1))
    with pytest.warns(AccuracyWarning, match="beyond the fast path.s bound 60"):
        expectation_tensor(fs, kernel(3, 1.5 * FAST_MAX_VARIANCE), settings=Settings(jit=False, threads=1))
