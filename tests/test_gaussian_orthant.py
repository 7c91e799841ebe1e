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
    return np.max(np.abs(a - b) / scale), np.max(np.abs(a - b) / np.abs(b))


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
    assert err_rel < 1e-8


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
    x[3] = -x[2] + 1e-6 * x[1]
    K = x @ x.T / 3
    C = np.array([K[np.ix_(t, t)] for t in ([0, 1, 2, 3], [0, 1, 4, 5], [1, 2, 3, 4])])
    assert not np.any(well_conditioned(C))
    K2 = 0.3 + K  # C_b > 0: full rank, still one nearly collinear pair and one collinear pair
    for facs in ([relu] * 4, [H, H, relu, relu], [leaky, dleaky, leaky, dleaky]):
        for KK in (K, K2):
            N = 6 if facs[0] is relu and KK is K2 else 4
            A = KK[:N, :N]
            a = expectation_tensor(facs, A)
            b = expectation_tensor(facs, A, method="exact")
            scale = np.max(np.diag(A)) ** 2
            assert np.max(np.abs(a - b)) < 1e-10 * scale
