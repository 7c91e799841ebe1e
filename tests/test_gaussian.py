"""Tests of ntkdiagrams.numerics.gaussian: Gaussian expectations of products of univariate factors."""
from __future__ import annotations

import math
import threading
import warnings

import mpmath as mp
import numpy as np
import pytest
import sympy as sp

from ntkdiagrams.numerics.activations import parse_activation, z
from ntkdiagrams.errors import InputError, UnsupportedError
from ntkdiagrams.numerics.gaussian import (DEFAULT_DEGREE, FAST_MAX_VARIANCE, Quadrature, expectation_tensor,
                                           exponential_form, gaussian_expectation)
from ntkdiagrams.numerics.gaussian.compiled import exponential_coefficients
from ntkdiagrams.numerics.gaussian.context import THREAD_NAME_PREFIX
from ntkdiagrams.settings import Settings

relu = sp.Max(0, z)
H = sp.Heaviside(z)
delta = sp.DiracDelta(z)
x, y, w, v = sp.symbols("x y w v", real=True)

SMOOTH = {
    "tanh": (sp.tanh(z), mp.tanh),
    "erf": (sp.erf(z), mp.erf),
    "gelu": (z / 2 * (1 + sp.erf(z / sp.sqrt(2))), lambda t: t / 2 * (1 + mp.erf(t / mp.sqrt(2)))),
    "swish": (z / (1 + sp.exp(-z)), lambda t: t / (1 + mp.exp(-t))),
    "sin": (sp.sin(z), mp.sin),
    "softplus": (sp.log(1 + sp.exp(z)), lambda t: mp.log(1 + mp.exp(t))),
}


def mp_expect2(f, g, K, g_np):
    """E[f(x) g(y)]: outer mpmath.quad over the first Cholesky coordinate, inner conditional
    expectation by scipy's adaptive quad (1-D mpmath.quad when K is singular)."""
    from scipy.integrate import quad

    mp.mp.dps = 15
    a = math.sqrt(K[0][0])
    if abs(K[0][1]) >= math.sqrt(K[0][0] * K[1][1]) * (1 - 1e-15):
        c = K[0][1] / K[0][0]
        val = mp.quad(lambda u: f(a * u) * g(c * a * u) * mp.exp(-u * u / 2), [-mp.inf, 0, mp.inf])
        return float(val / mp.sqrt(2 * mp.pi))
    b = K[0][1] / a
    d = math.sqrt(K[1][1] - b * b)
    g_mp = g

    def gf(t):
        try:
            return g_np(t)
        except OverflowError:
            return float(g_mp(mp.mpf(t)))

    def inner(u):
        mu = b * float(u)
        # split where the argument of g crosses 0 (if inside the Gaussian bulk) and at 0
        cuts = sorted({0.0, min(max(-mu / d, -9.0), 9.0)})
        h = lambda t: gf(mu + d * t) * math.exp(-t * t / 2)  # noqa: E731
        edges = [-np.inf] + cuts + [np.inf]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tot = sum(quad(h, lo, hi, epsabs=1e-15, epsrel=1e-13, limit=200)[0]
                      for lo, hi in zip(edges[:-1], edges[1:]))
        return tot / math.sqrt(2 * math.pi)

    val = mp.quad(lambda u: f(a * u) * inner(u) * mp.exp(-u * u / 2), [-mp.inf, 0, mp.inf])
    return float(val / mp.sqrt(2 * mp.pi))


COVS = [
    [[1.0, 0.5], [0.5, 2.0]],
    [[1.0, 0.99], [0.99, 1.0]],
    [[3.0, -1.0], [-1.0, 0.5]],
    [[0.7, 0.7], [0.7, 0.7]],        # identical inputs
]


@pytest.mark.parametrize("name", list(SMOOTH))
def test_smooth_pairs_against_mpmath(name):
    import scipy.special

    e, f = SMOOTH[name]
    de = sp.diff(e, z)
    fd = sp.lambdify(z, de, "mpmath")
    mods = [{"erf": scipy.special.erf}, "math"]
    for K in COVS:
        T = expectation_tensor([e, de], np.array(K))
        ref = mp_expect2(f, fd, K, sp.lambdify(z, de, mods))
        assert abs(T[0, 1] - ref) <= 1e-8 * max(abs(ref), 1e-3), (name, K, T[0, 1], ref)
    # one large-variance case
    K = [[10.0, 5.0], [5.0, 10.0]]
    T = expectation_tensor([e, e], np.array(K))
    ref = mp_expect2(f, f, K, sp.lambdify(z, e, mods))
    assert abs(T[0, 1] - ref) <= 1e-8 * abs(ref), (name, T[0, 1], ref)


def test_one_point_smooth_large_variance():
    for K in (0.1, 1.0, 10.0):
        T = expectation_tensor([sp.tanh(z) ** 2], np.array([[K]]))
        mp.mp.dps = 20
        ref = mp.quad(lambda u: mp.tanh(math.sqrt(K) * u) ** 2 * mp.exp(-u * u / 2),
                      [-mp.inf, 0, mp.inf]) / mp.sqrt(2 * mp.pi)
        assert abs(T[0] / float(ref) - 1) < 1e-9


def _kernel3():
    return np.array([[1.0, 0.3, 0.99], [0.3, 2.0, 0.4], [0.99, 0.4, 1.0]])


def _rho_theta(K):
    d = np.sqrt(np.diag(K))
    rho = np.clip(K / np.outer(d, d), -1, 1)
    np.fill_diagonal(rho, 1.0)
    return d, rho, np.arccos(rho)


def test_relu_family_closed_forms_k2():
    K = _kernel3()
    d, rho, th = _rho_theta(K)
    T = expectation_tensor([relu, relu], K)
    ref = np.outer(d, d) / (2 * np.pi) * (np.sin(th) + (np.pi - th) * np.cos(th))
    np.testing.assert_allclose(T, ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(expectation_tensor([H, H], K), (np.pi - th) / (2 * np.pi),
                               rtol=1e-10, atol=1e-14)
    # E[relu(x) H(y)] = sqrt(K_xx) (1 + rho) / (2 sqrt(2 pi))
    np.testing.assert_allclose(expectation_tensor([relu, H], K),
                               d[:, None] * (1 + rho) / (2 * math.sqrt(2 * math.pi)),
                               rtol=1e-10, atol=1e-14)
    # E[delta(x) relu(y)] = p_x(0) E[relu(y) | x=0], 0 on the diagonal (delta(x) relu(x) = 0)
    Kc = np.diag(K)[None, :] - K ** 2 / np.diag(K)[:, None]
    ref = np.sqrt(np.maximum(Kc, 0)) / (2 * np.pi * d[:, None])
    np.fill_diagonal(ref, 0.0)
    np.testing.assert_allclose(expectation_tensor([delta, relu], K), ref, rtol=1e-10, atol=1e-14)
    # E[delta(x) H(y)] = p_x(0)/2, H(0) = 1/2 on the diagonal
    np.testing.assert_allclose(expectation_tensor([delta, H], K),
                               np.repeat(1 / (2 * d * math.sqrt(2 * math.pi)), 3).reshape(3, 3),
                               rtol=1e-12)
    # E[delta(x) delta(y)] = 1/(2 pi sqrt(det)) off the diagonal
    with pytest.warns(RuntimeWarning, match="diverges"):
        Tdd = expectation_tensor([delta, delta], K)
    assert np.all(np.isnan(np.diag(Tdd)))
    off = ~np.eye(3, dtype=bool)
    det = np.where(off, np.outer(np.diag(K), np.diag(K)) - K ** 2, 1.0)
    np.testing.assert_allclose(Tdd[off], (1 / (2 * np.pi * np.sqrt(det)))[off], rtol=1e-12)
    # k = 1
    np.testing.assert_allclose(expectation_tensor([relu], K), d / math.sqrt(2 * math.pi), rtol=1e-13)
    np.testing.assert_allclose(expectation_tensor([relu ** 2 * z], K), 0 * d + 2 * d ** 3 / math.sqrt(2 * math.pi), rtol=1e-13)
    np.testing.assert_allclose(expectation_tensor([delta], K), 1 / (d * math.sqrt(2 * math.pi)), rtol=1e-13)


def test_relu_derivatives_from_activation():
    act = parse_activation("relu")
    K = _kernel3()
    # sigma'' sigma contains delta(z) Max(0, z) = 0
    T = expectation_tensor([act.derivative(2) * act.derivative(0)], K)
    np.testing.assert_allclose(T, 0.0, atol=1e-15)
    leaky = parse_activation("leaky_relu:0.1")
    d, rho, th = _rho_theta(K)
    T = expectation_tensor([leaky.expr, leaky.expr], K)
    # leaky = 0.9 relu + 0.1 z: E = .81 E[rr] + .09 (E[r y] + E[x r]) + .01 K, E[x relu(y)] = K/2
    rr = np.outer(d, d) / (2 * np.pi) * (np.sin(th) + (np.pi - th) * np.cos(th))
    np.testing.assert_allclose(T, 0.81 * rr + 0.09 * K + 0.01 * K, rtol=1e-10)


def test_erf_arcsine_kernel():
    K = np.array([[0.5, 0.2, -0.3], [0.2, 2.0, 1.9], [-0.3, 1.9, 3.0]])
    T = expectation_tensor([sp.erf(z), sp.erf(z)], K)
    dg = np.diag(K)
    ref = 2 / np.pi * np.arcsin(2 * K / np.sqrt(np.outer(1 + 2 * dg, 1 + 2 * dg)))
    np.testing.assert_allclose(T, ref, rtol=1e-9, atol=1e-13)


def test_wick_polynomials_k3_k4():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(4, 6))
    K = A @ A.T / 6
    T = expectation_tensor([z, z, z, z], K)
    ref = (np.einsum("ab,cd->abcd", K, K) + np.einsum("ac,bd->abcd", K, K)
           + np.einsum("ad,bc->abcd", K, K))
    np.testing.assert_allclose(T, ref, atol=1e-12 * np.max(np.abs(ref)))
    T3 = expectation_tensor([z ** 2, z, z], K)  # E[x^2 y w] = K_xx K_yw + 2 K_xy K_xw
    ref3 = np.einsum("a,bc->abc", np.diag(K), K) + 2 * np.einsum("ab,ac->abc", K, K)
    np.testing.assert_allclose(T3, ref3, atol=1e-12 * np.max(np.abs(ref3)))


def _exchangeable_ref(inner, rho, k):
    """E[Π_i g(z_i)] for k exchangeable unit normals with correlation rho >= 0:
    z_i = sqrt(rho) g0 + sqrt(1-rho) g_i, so it is ∫ φ(g0) inner(sqrt(rho) g0, sqrt(1-rho))^k."""
    mp.mp.dps = 20
    a, b = mp.sqrt(rho), mp.sqrt(1 - rho)
    val = mp.quad(lambda g: inner(a * g, b) ** k * mp.exp(-g * g / 2), [-mp.inf, 0, mp.inf])
    return float(val / mp.sqrt(2 * mp.pi))


@pytest.mark.parametrize("k", [3, 4])
def test_piecewise_k3_k4_exchangeable(k):
    rho = 0.3
    K = np.full((k, k), rho) + (1 - rho) * np.eye(k)
    idx = tuple(range(k))
    e_relu = lambda m, s: m * mp.ncdf(m / s) + s * mp.npdf(m / s)  # noqa: E731
    e_H = lambda m, s: mp.ncdf(m / s)  # noqa: E731
    T = expectation_tensor([relu] * k, K)[idx]
    assert abs(T / _exchangeable_ref(e_relu, rho, k) - 1) < 1e-8
    T = expectation_tensor([H] * k, K)[idx]
    assert abs(T / _exchangeable_ref(e_H, rho, k) - 1) < 1e-8
    # orthant probability of k equicorrelated normals with rho = 1/2 is 1/(k+1)
    K = np.full((k, k), 0.5) + 0.5 * np.eye(k)
    assert abs(expectation_tensor([H] * k, K)[idx] - 1 / (k + 1)) < 1e-9


def test_sheppard_three_orthant():
    K = _kernel3()
    d, rho, _ = _rho_theta(K)
    T = expectation_tensor([H, H, H], K)
    ref = 1 / 8 + (np.arcsin(rho[0, 1]) + np.arcsin(rho[0, 2]) + np.arcsin(rho[1, 2])) / (4 * np.pi)
    assert abs(T[0, 1, 2] - ref) < 1e-10
    assert abs(T[2, 0, 1] - ref) < 1e-10


def test_stein_identity_k3_mixed():
    """E[x relu(y) relu(w)] = K_xy E[H(y) relu(w)] + K_xw E[relu(y) H(w)] (Stein's lemma)."""
    K = np.array([[1.0, 0.4, -0.2], [0.4, 1.5, 0.6], [-0.2, 0.6, 0.8]])
    T3 = expectation_tensor([z, relu, relu], K)
    T_hr = expectation_tensor([H, relu], K)
    ref = K[:, :, None] * T_hr[None, :, :] + K[:, None, :] * T_hr.T[None, :, :]
    np.testing.assert_allclose(T3, ref, atol=1e-9)


def _gh_brute(fs, C, n=40):
    xg, wg = np.polynomial.hermite_e.hermegauss(n)
    wg = wg / math.sqrt(2 * math.pi)
    m = C.shape[0]
    L = np.linalg.cholesky(C)
    X = np.stack(np.meshgrid(*[xg] * m, indexing="ij"), -1).reshape(-1, m)
    W = np.prod(np.stack(np.meshgrid(*[wg] * m, indexing="ij"), -1).reshape(-1, m), axis=1)
    Z = X @ L.T
    val = W.copy()
    for j, f in enumerate(fs):
        val = val * f(Z[:, j])
    return val.sum()


def test_smooth_k3_k4_against_brute_force():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(4, 4))
    C = A @ A.T / 4 + 0.3 * np.eye(4)
    C = 0.15 * C / np.sqrt(np.outer(np.diag(C), np.diag(C)))  # small variance: GH converges fast
    facs = [sp.tanh(z), 1 - sp.tanh(z) ** 2, sp.sin(z), z * sp.tanh(z)]
    nf = [np.tanh, lambda t: 1 - np.tanh(t) ** 2, np.sin, lambda t: t * np.tanh(t)]
    T3 = expectation_tensor(facs[:3], C[:3, :3])
    ref3 = _gh_brute(nf[:3], C[:3, :3], n=30)
    assert abs(T3[0, 1, 2] / ref3 - 1) < 1e-8
    syms = [x, y, w, v]
    prod = sp.Mul(*[f.subs(z, s_) for f, s_ in zip(facs, syms)])
    t4 = gaussian_expectation(prod, syms, C)
    ref4 = _gh_brute(nf, C, n=16)
    assert abs(t4 / ref4 - 1) < 1e-6, (t4, ref4)  # default degree for m = 4
    t4 = gaussian_expectation(prod, syms, C, degree=16)
    assert abs(t4 - ref4) < 1e-10, (t4, ref4)  # the value is small (cancellation): absolute
    # unit variance: default vs a much higher degree
    C1 = C / 0.15
    lo = gaussian_expectation(prod, syms, C1)
    hi = gaussian_expectation(prod, syms, C1, degree=20)
    assert abs(lo / hi - 1) < 1e-6, (lo, hi)


def test_slot_symmetry_and_transpose():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 5))
    K = A @ A.T / 5
    f, g = sp.tanh(z), sp.Max(0, z) + 0.2 * z
    T = expectation_tensor([f, g], K)
    np.testing.assert_allclose(T, expectation_tensor([g, f], K).T, rtol=1e-12, atol=1e-15)
    T3 = expectation_tensor([f, g, f], K)
    np.testing.assert_allclose(T3, T3.transpose(2, 1, 0), rtol=1e-13)
    T3b = expectation_tensor([g, f, f], K)
    np.testing.assert_allclose(T3, T3b.transpose(1, 0, 2), rtol=1e-9, atol=1e-13)


def test_repeated_and_collinear_inputs():
    K = np.array([[1.3, 1.3, 2.6], [1.3, 1.3, 2.6], [2.6, 2.6, 5.2]])  # x1 = x0, x2 = 2 x0
    e = sp.tanh(z)
    T = expectation_tensor([e, 1 - e ** 2], K)
    one_d = gaussian_expectation(sp.tanh(x) * (1 - sp.tanh(2 * x) ** 2), [x], [[1.3]])
    assert abs(T[0, 2] - one_d) < 1e-12
    same = gaussian_expectation(sp.tanh(x) * (1 - sp.tanh(x) ** 2), [x], [[1.3]])
    assert abs(T[0, 1] - same) < 1e-14 and abs(T[0, 0] - same) < 1e-14
    # relu on collinear inputs: E[relu(x) relu(2x)] = 2 E[relu(x)^2] = K
    Tr = expectation_tensor([relu, relu], K)
    assert abs(Tr[0, 2] - 1.3) < 1e-12
    # anti-collinear: H(x) H(-x) = 0
    Ka = np.array([[1.0, -1.0], [-1.0, 1.0]])
    assert abs(expectation_tensor([H, H], Ka)[0, 1]) < 1e-14
    # near-collinear: closed form still to 1e-10
    for eps in (1e-6, 1e-10):
        Kn = np.array([[1.0, 1 - eps], [1 - eps, 1.0]])
        th = math.acos(1 - eps)
        ref = (math.sin(th) + (math.pi - th) * math.cos(th)) / (2 * math.pi)
        assert abs(expectation_tensor([relu, relu], Kn)[0, 1] - ref) < 1e-10
        assert abs(expectation_tensor([H, H], Kn)[0, 1] - (math.pi - th) / (2 * math.pi)) < 1e-10
    # k = 4 with repeated indices equals the lower-dimensional expectation
    Kc = np.array([[1.0, 0.3], [0.3, 0.8]])
    T4 = expectation_tensor([relu, relu, sp.tanh(z), sp.tanh(z)], Kc)
    T2 = expectation_tensor([relu ** 2, sp.tanh(z) ** 2], Kc)
    np.testing.assert_allclose(T4[0, 0, 1, 1], T2[0, 1], rtol=1e-12)


def test_gaussian_expectation_sums_and_deltas():
    C = [[1.0, 0.5], [0.5, 2.0]]
    assert abs(gaussian_expectation(x ** 2 * y ** 2, [x, y], C) - 2.5) < 1e-12
    val = gaussian_expectation(sp.Max(0, x) * sp.DiracDelta(y) + x * y + 2, [x, y], C)
    ref = math.sqrt(1 - 0.25 / 2) / (2 * math.pi * math.sqrt(2)) + 0.5 + 2
    assert abs(val - ref) < 1e-12
    assert abs(gaussian_expectation((x + y) ** 2, [x, y], C) - 4.0) < 1e-12
    assert DEFAULT_DEGREE >= 16


def test_zero_variance_input():
    K = np.array([[0.0, 0.0], [0.0, 1.0]])
    T = expectation_tensor([H, relu], K)
    assert abs(T[0, 1] - 0.5 / math.sqrt(2 * math.pi)) < 1e-14  # H(0) = 1/2 convention
    assert abs(expectation_tensor([sp.cos(z)], K)[0] - 1.0) < 1e-14


@pytest.mark.parametrize("K,msg", [
    (np.ones((2, 3)), "square"),
    (np.array([[1.0, 0.5], [0.4, 1.0]]), "symmetric"),
    (np.array([[1.0, 2.0], [2.0, 1.0]]), "semi-definite"),
    (np.array([[1.0, np.nan], [np.nan, 1.0]]), "NaN"),
])
def test_bad_kernels(K, msg):
    with pytest.raises(InputError, match=msg):
        expectation_tensor([z], K)


def test_bad_factors():
    K = np.eye(2)
    with pytest.raises(InputError, match="1 to 8"):
        expectation_tensor([z] * 9, K)
    with pytest.raises(InputError, match="1 to 8"):
        expectation_tensor([], K)
    with pytest.raises(InputError, match="other than z"):
        expectation_tensor([z * sp.Symbol("a")], K)
    with pytest.raises(UnsupportedError, match="DiracDelta"):
        expectation_tensor([sp.DiracDelta(z, 1)], K)
    with pytest.raises(UnsupportedError):
        expectation_tensor([sp.DiracDelta(z) ** 2], K)
    with pytest.raises(UnsupportedError, match="kink"):
        expectation_tensor([sp.Max(0, z - 1)], K)
    with pytest.raises(InputError):
        expectation_tensor(z, K)
    with pytest.raises(UnsupportedError):
        gaussian_expectation(sp.tanh(x + y), [x, y], [[1, 0], [0, 1]])
    with pytest.raises(InputError):
        gaussian_expectation(x * w, [x, y], [[1, 0], [0, 1]])


def test_vectorised_size_runs():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(16, 8))
    K = A @ A.T / 8
    T = expectation_tensor([sp.tanh(z), sp.tanh(z)], K)
    assert T.shape == (16, 16) and np.allclose(T, T.T)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        T = expectation_tensor([relu, relu, relu], K[:6, :6])
    assert T.shape == (6, 6, 6) and np.all(np.isfinite(T))


# ----------------------------------------------------------------------------------------
# fast path for smooth factors (nested split Gauss rules), method="auto" | "exact" | "fast"
# ----------------------------------------------------------------------------------------

def _near_collinear_kernel(N, var=1.0, seed=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 5))
    X[-1] = X[0] * 1.1 + 1e-3 * rng.normal(size=5)  # nearly collinear with input 0
    K = X @ X.T / 5
    d = np.sqrt(np.diag(K))
    return var * K / np.outer(d, d) * np.outer(np.linspace(0.6, 1, N), np.linspace(0.6, 1, N))


def _rel(a, b, floor):
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), floor))


def _fast_tuples(facs, K, **kw):
    """Tuples integrated by the fast path (the counters of a Quadrature)."""
    with Quadrature(Settings(jit=False)) as quad:
        expectation_tensor(facs, K, quadrature=quad, **kw)
    return quad.stats["fast_tuples"]


def test_fast_path_selected_only_for_smooth():
    K = _near_collinear_kernel(3)
    assert _fast_tuples([sp.tanh(z)] * 3, K) > 0
    for facs, kw in (([relu] * 3, {}), ([sp.tanh(z)] * 3, {"method": "exact"}),
                     ([z, z ** 2, z], {}), ([sp.tanh(z), H, sp.tanh(z)], {})):
        assert _fast_tuples(facs, K, **kw) == 0, facs
    big = 1.5 * FAST_MAX_VARIANCE / np.min(np.diag(K))
    assert _fast_tuples([sp.tanh(z)] * 3, big * K) == 0  # variance above FAST_MAX_VARIANCE: exact
    with pytest.raises(InputError, match="method"):
        expectation_tensor([z], K, method="quick")


@pytest.mark.parametrize("var", [0.3, 1.0, 2.5])
def test_fast_vs_exact_k3_mixed(var):
    K = _near_collinear_kernel(3, var)
    gelu = SMOOTH["gelu"][0]
    facs = [sp.tanh(z), 1 - sp.tanh(z) ** 2, gelu]
    fast = expectation_tensor(facs, K)
    exact = expectation_tensor(facs, K, method="exact", degree=24)
    # ≤ 1e-7 for generic inputs; ~5e-7 measured where two inputs have ρ ≈ 1 - 1e-6
    assert _rel(fast, exact, 1e-3 * np.max(np.abs(exact))) < 1e-6
    fast = expectation_tensor([sp.tanh(z)] * 3, K[:2, :2])  # only repeated indices
    exact = expectation_tensor([sp.tanh(z)] * 3, K[:2, :2], method="exact")
    assert _rel(fast, exact, 1e-3) < 1e-8


def test_fast_vs_exact_k4():
    K = _near_collinear_kernel(4, 1.0)
    th, dth = sp.tanh(z), 1 - sp.tanh(z) ** 2
    fast = expectation_tensor([th] * 4, K)  # equal factors, repeated and collinear indices
    exact = expectation_tensor([th] * 4, K, method="exact", degree=12)
    # ≤ 1e-6 generic; ~2e-6 measured on tuples with two nearly collinear inputs
    assert _rel(fast, exact, 1e-3 * np.max(np.abs(exact))) < 3e-6
    syms = [x, y, w, v]
    for var in (0.5, 2.5):
        C = _near_collinear_kernel(4, var, seed=9)
        for prod in (sp.tanh(x) * sp.tanh(y) * (1 - sp.tanh(w) ** 2) * (1 - sp.tanh(v) ** 2),
                     (1 - sp.tanh(x) ** 2) * (1 - sp.tanh(y) ** 2) * (1 - sp.tanh(w) ** 2)
                     * (1 - sp.tanh(v) ** 2)):
            a = gaussian_expectation(prod, syms, C)
            b = gaussian_expectation(prod, syms, C, method="exact", degree=14)
            # nearly collinear inputs: measured 4e-6 at variance 2.5 (see module docstring)
            assert abs(a / b - 1) < (1e-6 if var < 1 else 1e-5), (var, prod, a, b)


def _exchangeable_gh(f, rho, var, k):
    """E[Π_i f(z_i)], k exchangeable N(0, var) with correlation rho: a 2-D Gauss–Hermite sum
    (z_i = sqrt(rho) g0 + sqrt(1-rho) g_i), 200 × 200 points (converged for var ≤ 1)."""
    xg, wg = np.polynomial.hermite_e.hermegauss(200)
    wg = wg / math.sqrt(2 * math.pi)
    s = math.sqrt(var)
    inner = f(math.sqrt(rho) * s * xg[:, None] + math.sqrt(1 - rho) * s * xg[None, :]) @ wg
    return float(np.sum(wg * inner ** k))


@pytest.mark.parametrize("rho", [0.3, 0.9, 0.995])
def test_fast_k4_strongly_correlated(rho):
    """Deep tanh networks drive the correlations of all inputs towards 1 (ρ ≈ 0.93 … 0.998 at
    depth 20, variance 0.52): the per-coordinate node counts keep such tuples ≲ 1e-7."""
    var = 0.52
    C = var * (np.full((4, 4), rho) + (1 - rho) * np.eye(4))
    sech2 = (1 - sp.tanh(z) ** 2, lambda t: 1 / np.cosh(t) ** 2)
    for k, (e, f) in ((4, (sp.tanh(z), np.tanh)), (3, sech2), (4, sech2)):
        val = expectation_tensor([e] * k, C[:k, :k])[tuple(range(k))]
        ref = _exchangeable_gh(f, rho, var, k)
        assert abs(val / ref - 1) < 1e-7, (rho, k, val, ref)


def test_fast_pairs_smooth_derivatives():
    """m = 2 smooth pairs (fast path) against the exact cone method at degree 60."""
    rng = np.random.default_rng(5)
    A = rng.normal(size=(5, 3))
    K = 0.2 + A @ A.T / 3
    K = 2.5 * K / np.max(np.diag(K))
    th = sp.tanh(z)
    d1, d2 = sp.diff(th, z), sp.diff(th, z, 2)
    for facs in ([th, th], [d1, d1], [d2, th], [d2, d2]):
        fast = expectation_tensor(facs, K)
        exact = expectation_tensor(facs, K, method="exact", degree=60)
        assert _rel(fast, exact, 1e-3 * np.max(np.abs(exact))) < 1e-9, facs


@pytest.mark.parametrize("expr, kappa", [
    (sp.tanh(z), 2.0), (1 - sp.tanh(z) ** 2, 2.0), (sp.diff(sp.tanh(z), z, 3), 2.0),
    (1 / (1 + sp.exp(-z)), -1.0), (sp.tanh(2 * z) / 2, 4.0), (sp.exp(z) * sp.tanh(z), 1.0)])
def test_exponential_form(expr, kappa):
    """f(z) = R(e^{κz}) with R rational: the addition theorem used by the fast path."""
    e = exponential_form(expr)
    k, R, d = e.kappa, e.R, e.degree
    assert k == kappa and d >= 1
    x = np.linspace(-40, 40, 161)
    f = sp.lambdify(z, expr, "numpy")
    scale = max(1.0, np.max(np.abs(f(x))))
    assert np.max(np.abs(R(np.exp(k * x)) - f(x))) < 1e-14 * scale
    # the coefficient form of the compiled kernel: P(E)/Q(E) with E = e^{-|κx|} ≤ 1
    c = exponential_coefficients(e.num, e.den, d)
    E = np.exp(-np.abs(k * x))
    r = np.where(k * x <= 0, 0, 2)
    P, Q = (sum(c[r + q, i] * E ** i for i in range(d + 1)) for q in (0, 1))
    assert np.max(np.abs(P / Q - f(x))) < 1e-13 * scale


@pytest.mark.parametrize("expr", [sp.erf(z), sp.log(1 + sp.exp(z)), z * sp.tanh(z), sp.sin(z),
                                  z ** 3, sp.tanh(z) + sp.erf(z)])
def test_exponential_form_absent(expr):
    assert exponential_form(expr) is None


def test_addition_theorem_path_equals_direct():
    """The fast path evaluates tanh-type factors through R(e^{κμ} e^{κ s u}) on Gauss–Hermite
    and on split levels; with that switched off (Quadrature(addition_theorem=False): every
    factor is evaluated directly) the tensor agrees to rounding, for tanh⁴ and
    tanh·tanh·sech²·sech² on a kernel with moderate and strong correlations.  (The numpy path;
    the compiled kernel has its own tests in test_gaussian_jit.py.)"""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((6, 3))
    X[1:3] = X[0] + 0.15 * rng.standard_normal((2, 3))  # three strongly correlated inputs
    K = 0.1 + 0.9 * X @ X.T / 3
    K *= 0.8 / np.max(np.diag(K))  # variances ≤ 0.8: the fast path
    sech2 = 1 - sp.tanh(z) ** 2
    cases = ([sp.tanh(z)] * 4, [sp.tanh(z), sp.tanh(z), sech2, sech2])
    with Quadrature(Settings(jit=False)) as quad:
        new = [expectation_tensor(f, K, quadrature=quad) for f in cases]
    assert quad.stats["addition_split"] > 0 and quad.stats["addition_nodes"] > 0, quad.stats
    with Quadrature(Settings(jit=False), addition_theorem=False) as quad:
        old = [expectation_tensor(f, K, quadrature=quad) for f in cases]
    assert quad.stats["addition_split"] == quad.stats["addition_nodes"] == 0
    for a, b in zip(new, old):
        assert np.max(np.abs(a - b)) < 1e-13 * np.max(np.abs(b))


def _pool_threads():
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME_PREFIX)]


def test_thread_counts_give_identical_numbers_and_pools_close():
    """Settings(threads=n) changes who computes, not what: expectation tensors (numpy path,
    several chunks in the pool) and whole evaluations are bit-identical for 1 and 3 threads;
    the pool's threads end with the Quadrature (and with each call that made its own)."""
    import ntkdiagrams as nd

    K = _near_collinear_kernel(6, 0.8)
    facs = [sp.tanh(z)] * 4
    assert not _pool_threads()
    one = expectation_tensor(facs, K, settings=Settings(jit=False, threads=1))
    three = expectation_tensor(facs, K, settings=Settings(jit=False, threads=3))
    assert np.array_equal(one, three)
    assert not _pool_threads()  # the call's own Quadrature was closed
    quad = Quadrature(Settings(jit=False, threads=3))
    with quad:
        assert np.array_equal(expectation_tensor(facs, K, quadrature=quad), one)
        assert 1 <= len(_pool_threads()) <= 3  # the pool was used
    assert quad.closed and not _pool_threads()
    with pytest.raises(InputError, match="closed"):
        expectation_tensor(facs, K, quadrature=quad)
    x = np.random.default_rng(0).standard_normal((4, 3)) / np.sqrt(3)
    a = nd.evaluate("tanh", 3, x, cb=0.1, cw=1.5, stats=["K", "V"], settings=Settings(threads=1))
    b = nd.evaluate("tanh", 3, x, cb=0.1, cw=1.5, stats=["K", "V"], settings=Settings(threads=3))
    for la, lb in zip(a, b):
        assert all(np.array_equal(la[k], lb[k]) for k in ("K", "V"))
    assert not _pool_threads()


def test_settings_from_the_environment(monkeypatch):
    """settings=None resolves the NTKDIAGRAMS_* variables at the entry point: NTKDIAGRAMS_JIT=0
    keeps the numpy path, NTKDIAGRAMS_THREADS sets the pool; both or neither of settings and
    quadrature."""
    monkeypatch.setenv("NTKDIAGRAMS_JIT", "0")
    monkeypatch.setenv("NTKDIAGRAMS_THREADS", "2")
    with Quadrature() as quad:
        assert quad.jit is False and quad.threads == 2
        assert quad.settings.keep_heap is False  # the allocator is left alone unless asked
    K = _near_collinear_kernel(4, 0.8)
    facs = [sp.tanh(z)] * 4
    ref = expectation_tensor(facs, K, settings=Settings(jit=False))
    assert np.array_equal(expectation_tensor(facs, K), ref)
    with pytest.raises(InputError, match="not both"):
        with Quadrature(Settings()) as quad:
            expectation_tensor(facs, K, settings=Settings(), quadrature=quad)
    with pytest.raises(InputError, match="Settings"):
        expectation_tensor(facs, K, settings={"jit": False})
