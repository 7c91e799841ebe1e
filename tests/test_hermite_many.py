"""Blob contractions by integration by parts (ntkdiagrams.numerics.hermite) at derivative orders
6 and 8 and on sites with up to three input labels: against the explicit product rule for smooth
σ (tanh), against closed forms and an independent 2-D quadrature for ReLU."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import sympy as sp

from ntkdiagrams.errors import InputError, UnsupportedError
from ntkdiagrams.numerics.activations import z
from ntkdiagrams.numerics.gaussian import expectation_tensor
from ntkdiagrams.numerics.hermite import contract_blob, q_polynomial
from ntkdiagrams.settings import Settings

SET = Settings(jit=False, threads=1)
relu = sp.Max(0, z)
tanh = sp.tanh(z)


def expect(funcs, K):
    return expectation_tensor(list(funcs), K, settings=SET)


def kernel(N, seed):
    """A random positive definite kernel with variances 0.6 … 1.2."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(N, N + 2))
    K = A @ A.T / (N + 2) + 0.3 * np.eye(N)
    d = np.sqrt(np.diag(K) / rng.uniform(0.6, 1.2, N))
    return K / np.outer(d, d)


def explicit(T, args, sites, K, axes):
    """Σ_β T[args] Π_sites ⟨∂_β F_site⟩ by the product rule: each leg differentiates one slot of
    its site, ⟨Π_j f_j^{(n_j)}(z_{a_j})⟩ (smooth factors only)."""
    N = K.shape[0]
    grid = np.indices((N,) * len(axes)).reshape(len(axes), -1)
    val = {lab: grid[i] for i, lab in enumerate(axes)}
    leg_site = {q: si for si, (_l, _f, legs) in enumerate(sites) for q in legs}
    nlegs = len(leg_site)
    cache = {}
    out = np.zeros(grid.shape[1])
    for gam in itertools.product(*[range(len(sites[leg_site[q]][0])) for q in range(nlegs)]):
        factor = np.ones(grid.shape[1])
        for si, (labels, funcs, legs) in enumerate(sites):
            n = [0] * len(labels)
            for q in legs:
                n[gam[q]] += 1
            key = (si, tuple(n))
            if key not in cache:
                cache[key] = expect([sp.diff(f, z, c) for f, c in zip(funcs, n)], K)
            factor = factor * cache[key][tuple(val[lab] for lab in labels)]
        idx = tuple(val[sites[leg_site[x]][0][gam[x]]] if kind == "leg" else val[x] for kind, x in args)
        out += factor * T[idx]
    return out.reshape((N,) * len(axes))


def legs(*qs):
    return tuple(("leg", q) for q in qs)


CASES = ["one_label_k8", "two_V_blobs_k8", "three_labels_k6_polynomial", "three_labels_k4", "two_sites_label",
         "four_labels_k4_polynomial"]


@pytest.mark.parametrize("case", CASES)
def test_hermite_against_explicit(case):
    """tanh (and, for three labels at k = 6 and four at k = 4, polynomial factors: exact moments,
    so a tight bound) on N = 3 (4) inputs with random kernels and random tensors (not symmetric: the contraction must
    not assume it)."""
    rng = np.random.default_rng(CASES.index(case))
    N = 4 if case.startswith("four") else 3
    K = kernel(N, 5)
    tol = 2e-6
    sech2 = sp.diff(tanh, z)
    if case == "one_label_k8":
        T = rng.normal(size=(N,) * 8)
        args, sites, axes = legs(*range(8)), [(("a",), (sech2,), tuple(range(8)))], ("a",)
    elif case == "two_V_blobs_k8":   # Σ V_{β1..β4} V_{β5..β8} ⟨∂⁸ σ_a σ_b⟩: T = V ⊗ V
        V = rng.normal(size=(N,) * 4)
        V = sum(np.transpose(V, p) for p in itertools.permutations(range(4)))
        T = np.multiply.outer(V, V)
        args, sites, axes = legs(*range(8)), [(("a", "b"), (tanh, tanh), tuple(range(8)))], ("a", "b")
    elif case == "three_labels_k6_polynomial":
        T = rng.normal(size=(N,) * 6)
        args = legs(*range(6))
        sites, axes = [(("a", "b", "c"), (z ** 2, z ** 3 + z, z ** 3), tuple(range(6)))], ("a", "b", "c")
        tol = 1e-11
    elif case == "four_labels_k4_polynomial":
        T = rng.normal(size=(N,) * 4)
        args = legs(*range(4))
        sites, axes = [(("a", "b", "c", "d"), (z, z ** 2, z, z ** 2 + 1), tuple(range(4)))], ("a", "b", "c", "d")
        tol = 1e-11
    elif case == "three_labels_k4":
        T = rng.normal(size=(N,) * 4)
        args = legs(*range(4))
        sites, axes = [(("a", "b", "c"), (tanh, sech2, tanh), tuple(range(4)))], ("a", "b", "c")
    else:  # two sites sharing one tensor, and a fixed label
        T = rng.normal(size=(N,) * 6)
        args = (("leg", 0), ("leg", 1), ("label", "c"), ("leg", 2), ("leg", 3), ("leg", 4))
        sites = [(("a",), (sech2,), (0, 1)), (("b", "c"), (tanh, tanh ** 2), (2, 3, 4))]
        axes = ("a", "b", "c")
    got = contract_blob(T, args, sites, K, expect, axes)
    ref = explicit(T, args, sites, K, axes)
    assert got.shape == ref.shape
    err = np.max(np.abs(got - ref)) / np.max(np.abs(ref))
    assert err < tol, err


def test_relu_three_labels_against_explicit():
    """ReLU site on three distinct inputs, k = 2: the explicit product rule needs σ'' = δ only
    (first order, conditioned exactly by the Gaussian package)."""
    K = kernel(3, 8)
    T = np.random.default_rng(4).normal(size=(3, 3))
    sites = [(("a", "b", "c"), (relu, relu ** 2, z * relu), (0, 1))]
    got = contract_blob(T, legs(0, 1), sites, K, expect, ("a", "b", "c"))
    ref = explicit(T, legs(0, 1), sites, K, ("a", "b", "c"))
    for tup in itertools.permutations(range(3)):
        assert abs(got[tup] - ref[tup]) <= 1e-10 * np.max(np.abs(ref)), (tup, got[tup], ref[tup])


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6, 7, 8])
def test_relu_squared_closed_form(k):
    """F = relu(y)²: F'' = 2 H, F^{(k)} = 2 δ^{(k−3)} (k ≥ 3), and
    ⟨δ^{(j)}(y)⟩ = He_j(0) K^{−j/2} / √(2πK), He_j(0) = (−1)^{j/2} (j − 1)!! for even j, 0 for odd."""
    K = kernel(2, 7)
    T = np.ones((2,) * k)
    got = contract_blob(T, legs(*range(k)), [(("a",), (relu ** 2,), tuple(range(k)))], K, expect, ("a",))
    for a in range(2):
        Ka = K[a, a]
        if k == 2:
            ref = 1.0
        else:
            j = k - 3
            he0 = 0 if j % 2 else (-1) ** (j // 2) * math.prod(range(j - 1, 0, -2))
            ref = 2 * he0 * Ka ** (-j / 2) / math.sqrt(2 * math.pi * Ka)
        assert abs(got[a] - ref) <= 1e-10 * max(1.0, abs(ref)), (a, got[a], ref)
    # the same site on two labels that take the same input: the collapsed variable
    got2 = contract_blob(T, legs(*range(k)), [(("a", "b"), (relu, relu), tuple(range(k)))], K[np.ix_([0, 0], [0, 0])],
                         expect, ("a", "b"))
    assert np.allclose(got2, got[0], rtol=1e-10, atol=1e-12)


def test_relu_two_inputs_against_quadrature():
    """Site relu(y₀) H(y₁) on two distinct inputs, k = 6, random T: ⟨F Q⟩ with Q = Σ_γ T_γ h_γ
    from the symbolic polynomial (q_polynomial) and a 2-D Gauss–Legendre rule split at the kinks."""
    K = kernel(2, 9)
    rng = np.random.default_rng(3)
    k = 6
    T = rng.normal(size=(2,) * k)
    got = contract_blob(T, legs(*range(k)), [(("a", "b"), (relu, sp.Heaviside(z)), tuple(range(k)))], K, expect,
                        ("a", "b"))[0, 1]
    monos, coeffs, gammas, pvars, ts = q_polynomial(k, 2)
    P = np.linalg.inv(K)
    subs = dict(zip(pvars, [P[0, 0], P[0, 1], P[1, 1]]))
    subs.update({t: T[g] for t, g in zip(ts, gammas)})
    cq = [float(c.xreplace(subs)) for c in coeffs]
    L = np.linalg.cholesky(K)
    n, R = 80, 10.0
    x, w = np.polynomial.legendre.leggauss(n)
    u0 = np.concatenate([-R / 2 + R / 2 * x, R / 2 + R / 2 * x])    # split at y₀ = 0
    w0 = np.concatenate([R / 2 * w, R / 2 * w]) * np.exp(-u0 ** 2 / 2) / math.sqrt(2 * math.pi)
    c = np.clip(-L[1, 0] * u0 / L[1, 1], -R, R)                    # y₁ = 0
    ua = ((c - R) / 2)[:, None] + ((c + R) / 2)[:, None] * x
    ub = ((c + R) / 2)[:, None] + ((R - c) / 2)[:, None] * x
    u1 = np.concatenate([ua, ub], axis=1)
    w1 = np.concatenate([((c + R) / 2)[:, None] * w, ((R - c) / 2)[:, None] * w], axis=1)
    w1 = w1 * np.exp(-u1 ** 2 / 2) / math.sqrt(2 * math.pi)
    y0 = L[0, 0] * u0[:, None] * np.ones_like(u1)
    y1 = L[1, 0] * u0[:, None] + L[1, 1] * u1
    Q = sum(cf * y0 ** p * y1 ** q for (p, q), cf in zip(monos, cq))
    ref = float(np.sum(w0[:, None] * w1 * np.maximum(y0, 0) * (y1 > 0) * Q))
    assert abs(got - ref) <= 1e-9 * max(1.0, abs(ref)), (got, ref)


def test_q_polynomial_matches_definition():
    """The recurrence-built polynomial equals (−1)^k e^{Φ} ∂_γ e^{−Φ} (generation prints it)."""
    k, r = 3, 2
    monos, coeffs, gammas, pvars, ts = q_polynomial(k, r)
    ys = sp.symbols(f"y0:{r}")
    P = sp.Matrix(r, r, lambda i, j: sp.Symbol(f"P{min(i, j)}{max(i, j)}"))
    phi = sp.exp(-sum(P[i, j] * ys[i] * ys[j] for i in range(r) for j in range(r)) / 2)
    Q = 0
    for t, g in zip(ts, gammas):
        d = phi
        for i in g:
            d = sp.diff(d, ys[i])
        Q += t * sp.simplify((-1) ** k * d / phi)
    ref = sp.Poly(sp.expand(Q), *ys)
    assert ref.monoms() == monos and ref.coeffs() == coeffs


def test_limits():
    """Singular site kernels are refused; sites on more than 4 distinct inputs reach the
    Gaussian integration's limit."""
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    K = X @ X.T     # three inputs in two dimensions
    site = [(("a", "b", "c"), (relu, relu, relu), (0, 1))]
    with pytest.raises(InputError, match="singular"):
        contract_blob(np.ones((3, 3)), legs(0, 1), site, K, expect, ("a", "b", "c"))
    K5 = kernel(5, 1)
    labs = ("a", "b", "c", "d", "e")
    with pytest.raises(UnsupportedError, match="at most 4"):
        contract_blob(np.ones((5, 5)), legs(0, 1), [(labs, (relu,) * 5, (0, 1))], K5, expect, labs)
