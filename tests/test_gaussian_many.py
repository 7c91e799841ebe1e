"""Expectation tensors of five to eight factors (the six- and eight-point expectations of order
1/n²) against independent references: Wick's theorem for polynomial factors, and nested
Gauss–Legendre quadrature in the Cholesky coordinates, split at every kink, for tanh, GELU, ReLU
and their derivatives on N = 1, 2, 3 inputs; a Dirac delta by conditioning by hand."""
from __future__ import annotations

import itertools
import math
from functools import lru_cache

import numpy as np
import pytest
import sympy as sp

from ntkdiagrams.errors import InputError, UnsupportedError
from ntkdiagrams.numerics.activations import lambdify_z, parse_activation, z
from ntkdiagrams.numerics.gaussian import Quadrature, expectation_tensor
from ntkdiagrams.numerics.gaussian.tensor import prepare_factors, tensor_values
from ntkdiagrams.settings import Settings

SET = Settings(jit=False, threads=1)
TANH = parse_activation("tanh")
GELU = parse_activation("gelu")
RELU = parse_activation("relu")
t0, t1, t2 = (TANH.derivative(j) for j in range(3))
g0, g1, g2 = (GELU.derivative(j) for j in range(3))
r0, r1, r2 = (RELU.derivative(j) for j in range(3))     # Max(0, z), Heaviside(z), DiracDelta(z)


def kernel(N, seed, var=1.0):
    """A random positive definite (N, N) kernel with diagonal var × (0.8 … 1.2)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(N, N + 2))
    K = A @ A.T / (N + 2) + 0.3 * np.eye(N)
    d = np.sqrt(np.diag(K) / (var * rng.uniform(0.8, 1.2, N)))
    return K / np.outer(d, d)


# ---- references ----

def wick(C: np.ndarray, counts: tuple) -> float:
    """E[Π_v y_v^{c_v}], y ~ N(0, C), by Wick's theorem (recursion on the first power)."""
    @lru_cache(maxsize=None)
    def rec(c):
        if not any(c):
            return 1.0
        v = next(i for i, p in enumerate(c) if p)
        q = list(c)
        q[v] -= 1
        total = 0.0
        for w, p in enumerate(q):
            if p:
                r = list(q)
                r[w] -= 1
                total += C[v, w] * p * rec(tuple(r))
        return total
    return rec(tuple(counts))


def _gl(a, b, n):
    x, w = np.polynomial.legendre.leggauss(n)
    mid, half = (a + b) / 2, (b - a) / 2
    return mid[..., None] + half[..., None] * x, half[..., None] * w


def nested_gl(funcs, C, n=60, R=10.0):
    """E[Π_j F_j(y_j)], y ~ N(0, C) (C non-singular, m ≤ 3 variables): z = L u, Gauss–Legendre
    in u_0, u_1, … in turn, each on [−R, R] split where z_j crosses 0 (kinks of the ReLU family)."""
    m = len(funcs)
    L = np.linalg.cholesky(C)
    us, ws = [], []
    for j in range(m):
        shape = (2 * n,) * j
        part = np.zeros(shape)
        for i in range(j):
            part = part + L[j, i] * us[i].reshape(us[i].shape + (1,) * (j - 1 - i))
        c = np.clip(-part / L[j, j], -R, R)
        ua, wa = _gl(np.full(shape, -R), c, n)
        ub, wb = _gl(c, np.full(shape, R), n)
        u = np.concatenate([ua, ub], axis=-1)
        w = np.concatenate([wa, wb], axis=-1) * np.exp(-u ** 2 / 2) / math.sqrt(2 * math.pi)
        us.append(u)
        ws.append(w)
    total = np.ones((2 * n,) * m)
    for j in range(m):
        zj = sum(L[j, i] * us[i].reshape(us[i].shape + (1,) * (m - 1 - i)) for i in range(j + 1))
        total = total * np.broadcast_to(funcs[j](zj), total.shape)
        total = total * ws[j].reshape(ws[j].shape + (1,) * (m - 1 - j))
    return float(np.sum(total))


def reference(factors, K, tup, n=60):
    """E[Π_s f_s(z_{a_s})] for one index tuple: the slots on one input are one product."""
    inputs = sorted(set(tup))
    prods = [sp.Mul(*[f for f, a in zip(factors, tup) if a == b]) for b in inputs]
    fns = [lambdify_z(p) for p in prods]
    return nested_gl(fns, K[np.ix_(inputs, inputs)], n)


def some_tuples(N, k, count, seed):
    """``count`` index tuples: random ones and, first, one on every input and one on input 0."""
    rng = np.random.default_rng(seed)
    out = [tuple(int(i) % N for i in range(k)), (0,) * k]
    while len(out) < count:
        out.append(tuple(int(a) for a in rng.integers(0, N, k)))
    return out


def scale(factors, K, tup):
    """Cauchy–Schwarz-like size of an entry: Π_s ⟨f_s²⟩^{1/2} on the slot's input (1-D)."""
    s = 1.0
    for f, a in zip(factors, tup):
        s *= math.sqrt(nested_gl([lambdify_z(f ** 2)], K[[a]][:, [a]], 40))
    return s


# ---- polynomial factors: Wick ----

@pytest.mark.parametrize("powers", [(1, 1, 2, 1, 3, 1), (1,) * 8, (2, 1, 1, 1, 1, 2, 1, 1)])
def test_polynomial_factors_wick(powers):
    K = kernel(3, 1)
    T = expectation_tensor([z ** p for p in powers], K, settings=SET)
    assert T.shape == (3,) * len(powers)
    for tup in itertools.product(range(3), repeat=len(powers)):
        counts = [0, 0, 0]
        for p, a in zip(powers, tup):
            counts[a] += p
        ref = wick(K, tuple(counts))
        size = math.prod(math.sqrt(K[a, a]) ** p for p, a in zip(powers, tup))
        assert abs(T[tup] - ref) <= 1e-10 * size, (tup, T[tup], ref)


def test_polynomial_eight_factors_four_inputs():
    """N = 4: tuples on four distinct inputs (m = 4 after merging), z·z³·… against Wick."""
    K = kernel(4, 2)
    powers = (1, 3, 1, 1, 2, 1, 1, 2)
    T = expectation_tensor([z ** p for p in powers], K, settings=SET)
    for tup in some_tuples(4, 8, 40, 3):
        counts = [0] * 4
        for p, a in zip(powers, tup):
            counts[a] += p
        size = math.prod(math.sqrt(K[a, a]) ** p for p, a in zip(powers, tup))
        assert abs(T[tup] - wick(K, tuple(counts))) <= 1e-10 * size


# ---- smooth and ReLU-family factors: nested Gauss–Legendre ----

CASES = {
    "tanh6": [t0] * 6,
    "tanh_derivs6": [t0, t1, t2, t0, t1, t0],
    "tanh8": [t0] * 8,
    "tanh_derivs8": [t1, t0, t1, t0, t2, t0, t1, t1],
    "gelu6": [g0] * 6,
    "gelu_derivs6": [g0, g1, g0, g2, g1, g0],
    "relu6": [r0] * 6,
    "relu_H6": [r0, r1, r0, r0, r1, r0],
    "relu8": [r0] * 8,
    "relu_H8": [r1, r0, r0, r1, r0, r0, r1, r0],
}
TOL = {"tanh": 2e-7, "gelu": 2e-7, "relu": 1e-9}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("N", [1, 2, 3])
def test_against_nested_quadrature(name, N):
    factors = CASES[name]
    k = len(factors)
    if N == 3 and k == 8 and "derivs" in name:
        pytest.skip("covered by k = 6 and N = 2 (keeps the suite cheap)")
    K = kernel(N, 10 + N, var=1.4)
    T = expectation_tensor(factors, K, settings=SET)
    assert T.shape == (N,) * k
    tol = TOL[name[:4]]
    count = {1: 1, 2: 8, 3: 5}[N]
    for tup in some_tuples(N, k, count, 7 * N):
        ref = reference(factors, K, tup, n=60 if N < 3 else 36)
        assert abs(T[tup] - ref) <= tol * scale(factors, K, tup), (tup, T[tup], ref)


def test_relu_six_four_inputs_against_cone():
    """N = 4 (four distinct inputs per tuple): closed-form orthant moments against the cone
    method at high degree, relu and Heaviside products."""
    K = kernel(4, 5)
    for factors in ([r0] * 6, [r0, r1, r0, r1, r0, r0]):
        T = expectation_tensor(factors, K, settings=SET)
        tups = [t for t in some_tuples(4, 6, 30, 11) if len(set(t)) == 4][:6]
        sub = np.array(tups)
        with Quadrature(SET) as quad:
            ref = tensor_values(prepare_factors(factors), K, sub, 20, "exact", quad)
        got = np.array([T[t] for t in tups])
        assert np.allclose(got, ref, rtol=1e-8, atol=1e-10)


def test_delta_factor():
    """ReLU σ'' = δ(z) in a six-factor product, N = 2: E[δ(z_a) G] = p_a(0) E[G | z_a = 0], the
    other factors on input a taken at 0 (relu(0) = 0, H(0) = ½); δ² on one input: NaN."""
    K = kernel(2, 21, var=1.2)
    factors = [r2, r0, r1, t0, t0, r0]
    with pytest.warns(RuntimeWarning):
        T = expectation_tensor(factors + [r2], K, settings=SET)  # a second δ: NaN entries
    assert np.isnan(T[(0,) * 7]) and np.isfinite(T[0, 1, 1, 1, 1, 1, 1])
    T = expectation_tensor(factors, K, settings=SET)
    for tup in itertools.product(range(2), repeat=6):
        a = tup[0]
        b = 1 - a
        at0 = [f.subs(z, 0) for f, c in zip(factors[1:], tup[1:]) if c == a]
        const = float(sp.Mul(*[sp.Rational(1, 2) if v == sp.Heaviside(0) else v for v in at0]))
        rest = sp.Mul(*[f for f, c in zip(factors[1:], tup[1:]) if c == b])
        var = K[b, b] - K[a, b] ** 2 / K[a, a]
        inner = nested_gl([lambdify_z(rest)], np.array([[var]]), 60)
        ref = const * inner / math.sqrt(2 * math.pi * K[a, a])
        assert abs(T[tup] - ref) <= 2e-7 * max(1.0, abs(ref)), (tup, T[tup], ref)


# ---- bookkeeping: symmetric slots, coinciding inputs, limits ----

def test_slot_order_and_symmetry():
    """Permuting the factors permutes the tensor's axes (the identical slots are computed once)."""
    K = kernel(2, 31)
    a = [t0, t0, t0, t0, t1, t1]
    b = [t1, t0, t0, t1, t0, t0]       # slots of a in the order perm
    perm = [4, 0, 1, 5, 2, 3]
    Ta = expectation_tensor(a, K, settings=SET)
    Tb = expectation_tensor(b, K, settings=SET)
    assert np.allclose(Tb, np.transpose(Ta, perm), rtol=1e-8, atol=1e-10)
    for p in itertools.permutations(range(4)):
        assert np.array_equal(Ta, np.transpose(Ta, list(p) + [4, 5]))


def test_coinciding_inputs():
    """Two identical inputs: the N = 3 tensor equals the N = 2 tensor on the merged labels."""
    K2 = kernel(2, 41)
    K3 = K2[np.ix_([0, 1, 0], [0, 1, 0])]
    for factors in ([t0, t1, t0, t0, t1, t0], [r0, r1, r0, r0, r0, r1]):
        T3 = expectation_tensor(factors, K3, settings=SET)
        T2 = expectation_tensor(factors, K2, settings=SET)
        merge = np.array([0, 1, 0])
        for tup in itertools.product(range(3), repeat=6):
            assert abs(T3[tup] - T2[tuple(merge[list(tup)])]) <= 1e-8 * max(1.0, abs(T2[tuple(merge[list(tup)])]))


def test_limits():
    K = np.eye(5)
    with pytest.raises(InputError, match="1 to 8"):
        expectation_tensor([z] * 9, np.eye(2))
    with pytest.raises(UnsupportedError, match="at most 4 distinct"):
        expectation_tensor([sp.tanh(z)] * 5, K)
    # four factors over five inputs are fine (every tuple has ≤ 4 distinct inputs)
    assert expectation_tensor([z] * 4, K, settings=SET).shape == (5,) * 4


@pytest.mark.parametrize("method", ["exact", "fast"])
def test_methods_agree(method):
    """method="exact" (cone) and "fast" on a six-factor tensor over N = 2 give the auto numbers."""
    K = kernel(2, 51)
    factors = [t0, t1, t0, t0, t1, g0]
    auto = expectation_tensor(factors, K, settings=SET)
    other = expectation_tensor(factors, K, method=method, settings=SET)
    assert np.max(np.abs(other - auto)) <= 1e-8 * np.max(np.abs(auto))
