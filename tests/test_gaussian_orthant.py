"""Closed-form orthant moments of piecewise-polynomial factors (numerics/gaussian/orthant.py)
against the exact cone method, closed forms and high-precision references."""
import mpmath as mp
import numpy as np
import pytest
import sympy as sp

from ntkdiagrams.numerics.activations import z
from ntkdiagrams.numerics.gaussian import Quadrature, expectation_tensor
from ntkdiagrams.numerics.gaussian.blocks import Block
from ntkdiagrams.numerics.gaussian.cone import integrate_exact
from ntkdiagrams.numerics.gaussian.factors import prepare_factor
from ntkdiagrams.numerics.gaussian.orthant import (integrate_orthant, orthant_moment,
                                                   orthant_probability, well_conditioned)

relu = sp.Max(0, z)
H = sp.Heaviside(z)
leaky = sp.Max(0, z) + sp.Rational(1, 10) * sp.Min(0, z)
dleaky = sp.Rational(9, 10) * sp.Heaviside(z) + sp.Rational(1, 10)


def _covariances(n, m, seed, collinear=0.0):
    """Random covariances, variances 0.1 … 5; ``collinear``: the first two variables get
    correlation ≈ ±(1 − collinear²/2)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, m, m + 2))
    if collinear:
        sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)[:, None]
        X[:, 1] = sign * X[:, 0] + collinear * X[:, 1]
    C = X @ X.transpose(0, 2, 1) / (m + 2)
    d = np.sqrt(np.einsum("nii->ni", C)) / np.sqrt(rng.uniform(0.1, 5.0, (n, m)))
    return C / d[:, :, None] / d[:, None, :]


def _against_cone(facs, C):
    good = well_conditioned(C)
    assert np.sum(good) >= max(2, C.shape[0] // 3)
    C = C[good]
    n = C.shape[0]
    fs = [prepare_factor(f) for f in facs]
    blocks = [Block([(f, np.ones(n))]) for f in fs]
    a = integrate_orthant(blocks, C)
    with Quadrature(None) as q:
        b = integrate_exact(blocks, C, 16 if len(facs) == 4 else None, q)
    deg = [f.degree for f in fs]
    scale = np.prod(np.sqrt(np.einsum("nii->ni", C)) ** np.array(deg), axis=1)
    # relative accuracy where the entry is not tiny against its scale (cancellation in the
    # recursion costs ~1e-15 of the scale: 6e-15 absolute on an entry 1e-7 of its scale)
    big = np.abs(b) >= 1e-5 * scale
    return np.max(np.abs(a - b) / scale), np.max(np.abs(a - b)[big] / np.abs(b[big]))


@pytest.mark.parametrize("facs,n", [
    ([relu, relu], 50), ([H, relu], 50), ([leaky, dleaky], 50),
    ([relu, relu, relu], 30), ([H, relu, leaky], 20), ([dleaky, leaky, leaky], 10),
    ([relu, relu, relu, relu], 12), ([H, H, relu, relu], 12), ([relu, H, leaky, dleaky], 4),
    ([leaky, leaky, leaky, leaky], 3)])
@pytest.mark.parametrize("collinear", [0.0, 0.1])
def test_orthant_against_cone(facs, n, collinear):
    C = _covariances(n, len(facs), seed=len(facs) + n, collinear=collinear)
    err_scale, err_rel = _against_cone(facs, C)
    assert err_scale < 1e-10
    assert err_rel < 1e-9


@pytest.mark.parametrize("rho", [0.5, -0.2, 0.9, 0.999])
def test_p4_exchangeable(rho):
    """Equicorrelated orthant probability: 1/5 at ρ = 1/2; otherwise a 1-D mpmath integral
    P = ∫ φ(x) Φ(√ρ x/√(1−ρ))⁴ dx (ρ ≥ 0) / the cone method (ρ < 0)."""
    C = np.full((1, 4, 4), rho) + (1 - rho) * np.eye(4)
    P = orthant_probability(C)[0]
    if rho >= 0:
        mp.mp.dps = 30
        a = mp.sqrt(rho / (1 - rho))
        ref = mp.quad(lambda x: mp.npdf(x) * mp.ncdf(a * x) ** 4, [-mp.inf, 0, mp.inf])
        assert abs(P - float(ref)) < 1e-13
    else:
        T = expectation_tensor([H] * 4, C[0], method="exact", degree=24)
        assert abs(P - T[0, 1, 2, 3]) < 1e-11
    if rho == 0.5:
        assert abs(P - 0.2) < 1e-14


def test_arc_cosine_moments():
    """M⁺_{(1,1)} and M⁺_{(1,0)} against the arc-cosine kernel, also at ρ near ±1."""
    for rho in (-0.999999, -0.5, 0.0, 0.3, 0.999999):
        C = np.array([[[2.0, rho * np.sqrt(6.0)], [rho * np.sqrt(6.0), 3.0]]])
        th = np.arccos(rho)
        ref = np.sqrt(6.0) * (np.sin(th) + (np.pi - th) * np.cos(th)) / (2 * np.pi)
        assert abs(orthant_moment(C, (1, 1))[0] - ref) < 1e-14 * np.sqrt(6.0)
        assert abs(orthant_moment(C, (1, 0))[0] - np.sqrt(2.0) * (1 + rho) / (2 * np.sqrt(2 * np.pi))) < 1e-14


def test_tensors_coincident_and_ill_conditioned():
    """Whole tensors with repeated, collinear, nearly collinear and singular (4 inputs in
    n0 = 3) kernels: auto (orthant / cone for ill-conditioned tuples) equals the cone method."""
    x = np.random.default_rng(3).standard_normal((6, 3))
    x[5] = 2.0 * x[4]
    x[3] = -x[2] + 3e-5 * x[1]  # 1 + ρ ~ 1e-10 (nearer, entries ~√λ are fixed by rounding)
    K = x @ x.T / 3
    C = np.array([K[np.ix_(t, t)] for t in ([0, 1, 2, 4], [1, 2, 3, 4])])
    assert list(well_conditioned(C)) == [True, True]  # singular: reduced exactly
    assert not well_conditioned(K[np.ix_([0, 2, 3], [0, 2, 3])][None])[0]  # λ ~ 6e-13: cone
    K2 = 0.3 + K  # C_b > 0: full rank, still one nearly collinear pair and one collinear pair
    for facs in ([relu] * 4, [H, H, relu, relu], [leaky, dleaky, leaky, dleaky]):
        for KK in (K, K2):
            N = 6 if facs[0] is relu and KK is K2 else 4
            A = KK[:N, :N]
            a = expectation_tensor(facs, A)
            b = expectation_tensor(facs, A, method="exact")
            scale = np.max(np.diag(A)) ** 2
            # the cone method's jitter (1e-12 · max K_aa on singular tuples) biases it ~1e-10
            assert np.max(np.abs(a - b)) < 1e-9 * scale


def _polygon_probability(X):
    """P(X u > 0) for u ~ N(0, I₃), X (4, 3): the area of the spherical polygon / 4π
    (vertices from cross products, fan of triangles by Van Oosterom–Strackee)."""
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    verts = []
    for a in range(4):
        for b in range(a + 1, 4):
            v = np.cross(Xn[a], Xn[b])
            v /= np.linalg.norm(v)
            for s in (1, -1):
                if np.all(Xn @ (s * v) >= -1e-12):
                    verts.append(s * v)
    if len(verts) < 3:
        return 0.0
    V = np.array(verts)
    c = V.mean(0) / np.linalg.norm(V.mean(0))
    e1 = np.cross(c, [1.0, 0.3, 0.2])
    e1 /= np.linalg.norm(e1)
    V = V[np.argsort(np.arctan2(V @ np.cross(c, e1), V @ e1))]
    area = 0.0
    for i in range(len(V)):
        a, b = V[i], V[(i + 1) % len(V)]
        area += 2 * np.arctan2(abs(c @ np.cross(a, b)), 1 + c @ a + a @ b + b @ c)
    return area / (4 * np.pi)


def test_rank_deficient_orthants():
    """Four inputs in three dimensions (singular K, C_b = 0): the exact reduction to three
    variables against the spherical-polygon area (H⁴) and the cone method (ReLU products)."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((60, 4, 3))
    C = X @ X.transpose(0, 2, 1) / 3
    good = well_conditioned(C)
    assert np.mean(good) > 0.5
    Hf = prepare_factor(H)
    P = integrate_orthant([Block([(Hf, np.ones(60))]) for _ in range(4)], C)
    ref = np.array([_polygon_probability(x) for x in X])
    assert np.max(np.abs(P - ref)[good]) < 1e-14
    for facs in ([relu, H, relu, H], [leaky] * 4):
        Cg = C[good][:8]
        fs = [prepare_factor(f) for f in facs]
        bl = [Block([(f, np.ones(8))]) for f in fs]
        a = integrate_orthant(bl, Cg)
        with Quadrature(None) as q:
            b = integrate_exact(bl, Cg, None, q)
        assert np.max(np.abs(a - b)) < 1e-9 * np.max(Cg) ** 2


@pytest.mark.parametrize("name,var", [("tanh", 3.1), ("gelu", 2.5)])
def test_smooth_four_point_large_variance(name, var):
    """⟨σ⁴⟩ at effective variances 1.5 … 3.1 (the fast path's extended ladders) against the cone
    method at degree 24 (itself within 1e-10 of degree 32), relative to each entry's scale
    Π_s ⟨σ(z_s)²⟩^{1/2} (Cauchy–Schwarz).  Until 2026-12-01 this was 3e-7 relative to each entry;
    GELU's sharpness (fewer nodes, numerics/gaussian/sharpness.py) leaves 5.3e-7 on an entry 1.5e-4
    of the largest: 1.2e-10 of the largest entry with and without it (tanh: 9e-9 of the scale)."""
    from ntkdiagrams.numerics.activations import parse_activation
    f = parse_activation(name).expr
    X = np.random.default_rng(0).standard_normal((4, 5))
    K = X @ X.T / 5
    d = np.sqrt(np.diag(K))
    K = K / np.outer(d, d) * var
    a = expectation_tensor([f] * 4, K)
    b = expectation_tensor([f] * 4, K, method="exact", degree=24)
    rms = np.sqrt(expectation_tensor([f * f], K))
    scale = np.einsum("i,j,k,l->ijkl", rms, rms, rms, rms)
    assert np.max(np.abs(a - b) / scale) < 3e-8  # measured: tanh 9.1e-9, gelu 8.1e-10
