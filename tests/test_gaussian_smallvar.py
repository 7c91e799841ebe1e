"""The fast path at small effective variances (issue 15): four- and three-variable expectations of
products of an activation and its first two derivatives, variances 1e-5 … 0.45, against an
independent reference.

At small variances the factors are nearly polynomial and small (tanh(z) ≈ z), and the ladders'
rules, whose bounds hold errors to ~1e-7 of values O(1), were off by up to 8e-6 of the scale
Π_s ⟨f_s(z_s)²⟩^{1/2} on mixed derivative tuples (σ' σ' σ'' σ); tuples with effective variance
≤ :data:`SMALL_VARIANCE` now take tightened rungs (:func:`ladder.small_ladder`).  Bound: 2e-8 of
the scale (measured ≤ 1.1e-8 on the grid's kernels, docs/gaussian.md; the old rules fail it by
up to 400×).

Reference: the tensor Gauss–Hermite rule in Cholesky coordinates (z = L u), no table, 30 nodes per
coordinate for four variables (variances ≤ 0.2), 80 for three (≤ 0.45); checked in the test against
4 nodes fewer: ≤ 2e-9 of the scale (10× under the bound; the rule converges geometrically).
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from ntkdiagrams.numerics.activations import parse_activation, z
from ntkdiagrams.numerics.gaussian import Quadrature, gaussian_expectation
from ntkdiagrams.numerics.gaussian.ladder import SMALL_VARIANCE
from ntkdiagrams.numerics.gaussian.tensor import prepare_factors
from ntkdiagrams.settings import Settings

from gaussian_support import scale

ACTIVATIONS = ("tanh", "erf", "gelu", "swish", "softplus", "sin")
#: activations whose ``method="auto"`` is a closed form (exact sums for sin, orthant moments for the
#: erf family, tests/test_gaussian_trig.py and tests/test_gaussian_erffamily.py): the fast path,
#: which still serves them under ``method="fast"``, is tested with that method
CLOSED_FORMS = ("sin", "erf", "gelu")
ORDERS_4 = ((0, 0, 0, 0), (1, 1, 0, 0), (2, 0, 1, 1), (1, 1, 2, 0))
ORDERS_3 = ((0, 0, 0), (2, 1, 0), (1, 1, 2))
TOL = 2e-8
#: nodes per coordinate of the reference, by the number of variables
REFERENCE_NODES = {3: 80, 4: 30}


def kernel(seed: int, m: int, variances) -> np.ndarray:
    """A covariance with strong correlations of both signs (as deep layers have): rows of a
    common direction with random signs plus noise, scaled to the given variances."""
    rng = np.random.default_rng(seed)
    X = rng.choice([-1.0, 1.0], size=(m, 1)) * rng.standard_normal(m + 2) + 0.5 * rng.standard_normal((m, m + 2))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    v = np.asarray(variances, dtype=float)
    return X @ X.T * np.sqrt(np.outer(v, v))


#: variances by kernel; four variables stay ≤ 0.2, where the reference's 30 nodes per coordinate
#: converge (tanh's poles at z = ±iπ/2 limit Gauss–Hermite to ~e^(−d√(2n)), d = π/(2σ))
KERNELS = {"0.02-0.06": (1, (0.02, 0.06)), "0.06-0.15": (2, (0.15, 0.06)), "0.05-0.2": (3, (0.05, 0.2)),
           "1e-5": (4, (1e-5, 1e-5)), "0.15-0.45": (5, (0.15, 0.45))}


def kernel_named(name: str, m: int) -> np.ndarray:
    seed, (a, b) = KERNELS[name]
    return kernel(seed, m, np.linspace(a, b, m))


def gh_reference(funcs, K, nodes: int) -> float:
    """E[Π_k f_k(z_k)] by the tensor Gauss–Hermite rule in Cholesky coordinates."""
    m = K.shape[0]
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    U = np.stack([g.ravel() for g in np.meshgrid(*([x] * m), indexing="ij")])
    W = np.ones(U.shape[1])
    for g in np.meshgrid(*([w] * m), indexing="ij"):
        W = W * g.ravel()
    Z = np.linalg.cholesky(K) @ U
    for k, f in enumerate(funcs):
        W = W * f(Z[k])
    return float(np.sum(W))


def check(name: str, orders, K) -> None:
    act = parse_activation(name)
    exprs = [act.derivative(d) for d in orders]
    facs = prepare_factors(exprs)
    funcs = [(lambda f: (lambda x: np.broadcast_to(f.plus(x), np.shape(x))))(f)
             for f in facs]  # the factors' numpy functions (smooth: one branch)
    xs = sp.symbols(f"x0:{len(orders)}")
    expr = sp.Mul(*[e.subs(z, x) for e, x in zip(exprs, xs)])
    with Quadrature(Settings(threads=1)) as quad:
        got = gaussian_expectation(expr, list(xs), K, quadrature=quad,
                                   method="fast" if name in CLOSED_FORMS else "auto")
    assert quad.stats["fast_tuples"] + quad.stats["two_factor_tuples"] >= 1  # the path under test
    sc = float(scale(facs, K[None])[0])
    nodes = REFERENCE_NODES[K.shape[0]]
    ref = gh_reference(funcs, K, nodes)
    assert abs(ref - gh_reference(funcs, K, nodes - 4)) <= 2e-9 * sc  # the reference has converged
    err = abs(got - ref) / sc
    assert err <= TOL, (name, orders, err)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("kern", sorted(set(KERNELS) - {"0.15-0.45"}))
def test_four_inputs_small_variance(name, kern):
    K = kernel_named(kern, 4)
    assert np.max(np.diag(K)) <= SMALL_VARIANCE
    for orders in ORDERS_4:
        check(name, orders, K)


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("kern", sorted(KERNELS))
def test_three_inputs_small_variance(name, kern):
    K = kernel_named(kern, 3)
    for orders in ORDERS_3:
        check(name, orders, K)
