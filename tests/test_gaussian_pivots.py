"""The order of the fast path's levels: every level's own factor must vary at least about as fast as
the factors inside it (ntkdiagrams.numerics.gaussian.fast.pivots_dominate).

On the rank-3 first-layer kernel of issue 15's grid (16 inputs in three dimensions) every four-input
tuple is degenerate.  Until 2026-12-02 the order search took the order with the fewest points, and
for some tuples that was an order with a level of a nearly degenerate direction (L_jj ≈ 0.3 against
inside slopes ~3): σ'σ'σ''σ of softplus at |x|²/n0 = 3, C_W = 2 on the inputs (3, 9, 13, 15) was off
by 3.1e-7 of the scale Π⟨f²⟩^{1/2}, where the orders that avoid such a level agree with the uniform
rules to 6e-14.  References: the nested rule at a uniform 128 nodes per side, which moves ≤ 1e-13
from 96 nodes on these tuples.
"""
from __future__ import annotations

import numpy as np
import pytest

from ntkdiagrams.numerics.activations import parse_activation
from ntkdiagrams.numerics.gaussian import Quadrature
from ntkdiagrams.numerics.gaussian.fast import FAST_PIVOT_RATIO, pivots_dominate
from ntkdiagrams.numerics.gaussian.tensor import prepare_factors, tensor_values
from ntkdiagrams.settings import Settings

from gaussian_support import first_layer_kernel, scale

TOL = 1e-8


@pytest.mark.parametrize("activation,orders,tup", [
    ("softplus", (1, 1, 2, 0), (3, 9, 13, 15)),
    ("softplus", (1, 1, 2, 0), (1, 3, 10, 15)),
    ("swish", (0, 0, 0, 0), (3, 9, 13, 15)),
])
def test_degenerate_tuples(activation, orders, tup):
    """The fast path on degenerate four-input tuples, every order of the slots, against the uniform
    rule; the same number whatever the slots' order."""
    K = first_layer_kernel(3.0)
    act = parse_activation(activation)
    exprs = [act.derivative(d) for d in orders]
    perms = [(0, 1, 2, 3), (2, 3, 0, 1), (3, 1, 0, 2), (1, 0, 3, 2)]
    got = []
    with Quadrature(Settings(threads=1)) as quad:
        for p in perms:
            facs = prepare_factors([exprs[i] for i in p])
            got.append(tensor_values(facs, K, np.array([[tup[i] for i in p]]), None, "fast", quad)[0])
        facs = prepare_factors(exprs)
        ref = tensor_values(facs, K, np.array([tup]), 96, "fast", quad)[0]
    s = scale(facs, K[np.ix_(tup, tup)][None])[0]
    assert np.max(np.abs(np.array(got) - ref)) <= TOL * s, (got, ref)


def test_pivots_dominate():
    """The condition itself: a level whose own slope is below ρ times an inside slope fails it;
    the greedy pivoted order passes it."""
    L = np.array([[[2.0, 0, 0, 0], [1.0, 0.3, 0, 0], [-1.0, 2.5, 2.8, 0], [-0.5, 3.1, -2.4, 0.0]]])
    one = np.ones((1, 4))
    assert not pivots_dominate(L, one, 3)[0]
    L[0, 1, 1] = 3.1 * FAST_PIVOT_RATIO
    assert pivots_dominate(L, one, 3)[0]
    # the greedy pivoted Cholesky of a random degenerate covariance
    rng = np.random.default_rng(3)
    X = rng.standard_normal((4, 3))
    C = X @ X.T
    order, rest = [], list(range(4))
    S = C.copy()
    for _ in range(4):
        k = max(rest, key=lambda i: S[i, i])
        order.append(k)
        rest.remove(k)
        if S[k, k] > 1e-12:
            S = S - np.outer(S[:, k], S[k, :]) / S[k, k]
    Cp = C[np.ix_(order, order)] + 1e-12 * np.eye(4)
    assert pivots_dominate(np.linalg.cholesky(Cp)[None], one, 3)[0]
