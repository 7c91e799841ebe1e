"""Exact expectations of trigonometric factors (numerics/gaussian/trigonometric.py): Fourier
forms, against the exact cone method, closed forms and mpmath, merged slots, singular kernels,
the dispatch, and one evaluate() against the quadrature paths."""
import mpmath as mp
import numpy as np
import pytest
import sympy as sp

from ntkdiagrams.numerics.activations import z
from ntkdiagrams.numerics.evaluate import evaluate
from ntkdiagrams.numerics.gaussian import Quadrature, expectation_tensor, gaussian_expectation, paths, tensor
from ntkdiagrams.numerics.gaussian.blocks import Block
from ntkdiagrams.numerics.gaussian.factors import prepare_factor
from ntkdiagrams.numerics.gaussian.trigonometric import (TRIG_MAX_TERMS, fourier_form,
                                                         integrate_trigonometric, trigonometric)
from ntkdiagrams.settings import Settings

s, c = sp.sin(z), sp.cos(z)
xs = sp.symbols("x1:5")


def _kernel(N, var, seed, dims=None, negative=False):
    """Random (N, N) kernel of mean variance ``var`` (rank ``dims``; ``negative``: the inputs
    of odd index flipped, so that half the correlations are negative)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, dims or N + 2))
    if negative:
        X[1::2] *= -1
    K = X @ X.T / X.shape[1]
    return K * var / np.mean(np.diag(K))


def _quad_stats(facs, K, **kw):
    with Quadrature(Settings(jit=False, threads=1)) as q:
        T = expectation_tensor(facs, K, quadrature=q, **kw)
        return T, dict(q.stats)


def _scale(facs, K):
    """Π_s max_a ⟨f_s(z_a)²⟩^{1/2}: the Cauchy–Schwarz bound of every entry."""
    return np.prod([np.sqrt(np.max(expectation_tensor([f ** 2], K, method="exact", degree=80)))
                    for f in facs])


def test_fourier_forms():
    assert fourier_form(s) == ((0.5j, -1.0), (-0.5j, 1.0))
    assert fourier_form(c ** 2) == ((0.25, -2.0), (0.5, 0.0), (0.25, 2.0))
    form = fourier_form(-s * c ** 3)  # −(2 sin 2z + sin 4z)/8
    assert [w for _, w in form] == [-4.0, -2.0, 2.0, 4.0]
    assert np.allclose([cc for cc, _ in form], [-1j / 16, -1j / 8, 1j / 8, 1j / 16], atol=1e-16)
    assert fourier_form(sp.sin(z / 3) ** 2) == ((-0.25, -2 / 3), (0.5, 0.0), (-0.25, 2 / 3))
    assert fourier_form(sp.Integer(3)) == ((3.0, 0.0),)
    for g in (sp.tanh(z), z * s, s + z, sp.exp(z), sp.sinh(z), sp.erf(z) * s, sp.Max(0, z) * s,
              s * sp.DiracDelta(z), sp.exp(sp.I * z), 2 ** z, sp.sin(z ** 2)):
        assert fourier_form(g) is None, g


def test_trigonometric_cap():
    one = np.ones(1)
    big = prepare_factor(s ** 8)  # 9 terms: 9⁴ > TRIG_MAX_TERMS combinations
    assert len(fourier_form(big.expr)) ** 4 > TRIG_MAX_TERMS
    assert not trigonometric([Block([(big, one)]) for _ in range(4)])
    assert trigonometric([Block([(big, one)]) for _ in range(3)])
    assert not trigonometric([Block([(prepare_factor(s), one), (prepare_factor(sp.tanh(z)), one)])])
    relu = prepare_factor(sp.Max(0, z) + 0 * s)
    assert not trigonometric([Block([(relu, one)])])


@pytest.mark.parametrize("facs", [[s, s], [s, c], [s ** 2, c ** 2], [s, c, -s], [s * c, c ** 2, s],
                                  [s ** 2, c, c]])
@pytest.mark.parametrize("var,negative", [(1.0, False), (3.0, True)])
def test_against_cone_small_m(facs, var, negative):
    """m ≤ 3 distinct inputs (N = 3, every tuple, merged slots included): the cone method at
    degree 40 (exact at these variances to ~1e-13)."""
    K = _kernel(3, var, seed=len(facs), negative=negative)
    T, st = _quad_stats(facs, K)
    R = expectation_tensor(facs, K, method="exact", degree=40)
    assert np.max(np.abs(T - R)) <= 1e-10 * _scale(facs, K)
    if len(facs) > 2:  # pairs go to the Hermite series first
        assert st["trigonometric_tuples"] > 0 and st["fast_tuples"] == 0


@pytest.mark.parametrize("negative", [False, True])
def test_against_cone_four_inputs(negative):
    """Four distinct inputs, one tuple, against the cone method at degree 16."""
    K = _kernel(4, 1.0, seed=7, negative=negative)
    e = sp.sin(xs[0]) * sp.cos(xs[1]) ** 2 * sp.sin(xs[2]) * sp.cos(xs[3])
    with Quadrature(Settings(jit=False, threads=1)) as q:
        a = gaussian_expectation(e, xs, K, quadrature=q)
        assert q.stats["trigonometric_tuples"] == 1
    b = gaussian_expectation(e, xs, K, method="exact", degree=16)
    assert abs(a - b) <= 1e-10


def _closed_form(C):
    """E[sin z₁ sin z₂ cos z₃ cos z₄] = ⅛ Σ_{σ,τ,ρ=±1} σ exp(−½ aᵀCa), a = (1, −σ, ρ, ρτ), from
    sin z₁ sin z₂ = ½ Σ_σ σ cos(z₁ − σ z₂), cos z₃ cos z₄ = ½ Σ_τ cos(z₃ + τ z₄) and
    cos u cos w = ½ Σ_ρ cos(u + ρ w), E cos(aᵀz) = exp(−½ aᵀCa) (any C ⪰ 0)."""
    tot = 0.0
    for sg in (1, -1):
        for tau in (1, -1):
            for rho in (1, -1):
                a = np.array([1.0, -sg, rho, rho * tau])
                tot += sg * np.exp(-0.5 * a @ C @ a)
    return tot / 8


@pytest.mark.parametrize("var,dims", [(15.0, None), (15.0, 3), (1.0, 3), (40.0, 2)])
def test_closed_form_large_variance_and_singular(var, dims):
    """Variance 15 and 40, and kernels of rank 3 and 2 (4 inputs in fewer dimensions, as the
    layer-1 kernel of the benchmark): every tuple of the tensor on 4 inputs."""
    K = _kernel(4, var, seed=3, dims=dims, negative=True)
    T, st = _quad_stats([s, s, c, c], K)
    assert st["trigonometric_tuples"] > 0 and st["tuples"] == 0 and st["fast_tuples"] == 0
    ref = np.empty_like(T)
    for t in np.ndindex(T.shape):
        ref[t] = _closed_form(K[np.ix_(t, t)])
    assert np.max(np.abs(T - ref)) <= 1e-12
    if dims == 3 and var == 1.0:  # and the cone method (jittered) on the singular kernel
        e = sp.sin(xs[0]) * sp.sin(xs[1]) * sp.cos(xs[2]) * sp.cos(xs[3])
        assert abs(gaussian_expectation(e, xs, K, method="exact", degree=16) - T[0, 1, 2, 3]) <= 1e-8


@mp.workdps(20)
def _mp_expectation(g, var):
    """E[g(x)], x ~ N(0, var), by mpmath on panels of width 1 up to 12 standard deviations."""
    sd = mp.sqrt(var)
    f = sp.lambdify(z, g, "mpmath")
    pts = mp.linspace(-12 * sd, 12 * sd, int(24 * float(sd)) + 2)
    return float(mp.quad(lambda x: f(x) * mp.exp(-x * x / (2 * var)), pts) / mp.sqrt(2 * mp.pi * var))


def test_merged_collinear_slots_against_mpmath():
    """Collinear inputs x₂ = −0.7 x₁, x₃ = 1.3 x₁ (slots merged into one variable with scales
    α = −0.7, 1.3) at variance 15: against mpmath."""
    var = 15.0
    K = var * np.outer([1.0, -0.7, 1.3], [1.0, -0.7, 1.3])
    facs = [s, c ** 2, s * c]
    T, st = _quad_stats(facs, K)
    assert st["trigonometric_tuples"] > 0 and st["tuples"] == 0
    for t in [(0, 1, 2), (1, 1, 0), (2, 0, 1), (1, 2, 2)]:
        a = [1.0, -0.7, 1.3]
        g = facs[0].subs(z, a[t[0]] * z) * facs[1].subs(z, a[t[1]] * z) * facs[2].subs(z, a[t[2]] * z)
        assert abs(T[t] - _mp_expectation(g, var)) <= 1e-12, t


def test_dispatch_and_small_variances():
    """Only method="auto" without degree takes the closed form; tiny variances (cancellation)
    go back to the quadrature, with equal results."""
    K = _kernel(3, 2.0, seed=1)
    facs = [s, c, s * c]
    T, st = _quad_stats(facs, K)
    assert st["trigonometric_tuples"] > 0 and st["fast_tuples"] == st["tuples"] == 0
    scale = _scale(facs, K)
    # the quadrature's own errors: the cone method at degree 40 ~1e-15, the fast path ~1e-8
    for kw, tol in (({"method": "exact", "degree": 40}, 1e-12), ({"method": "fast"}, 3e-8),
                    ({"degree": 24}, 3e-8)):
        T2, st2 = _quad_stats(facs, K[:2, :2], **kw)
        assert st2["trigonometric_tuples"] == 0, kw
        assert np.max(np.abs(T[:2, :2, :2] - T2)) <= tol * scale, kw
    Ks = K * 1e-4  # sin z ≈ z: the terms cancel to ~1e-6 of their size
    T, st = _quad_stats([s, s, s, c], Ks)
    assert st["trigonometric_tuples"] == 0 and st["fast_tuples"] > 0
    n = 5
    C = K[:2, :2] * np.logspace(-6, 0, n)[:, None, None]
    blocks = [Block([(prepare_factor(s), np.ones(n))]), Block([(prepare_factor(s), np.ones(n))])]
    val, ok = integrate_trigonometric(blocks, C)
    assert not ok[0] and ok[-1]  # variances ~2e-6: rounding ~1e-9 of the scale; ~2: fine
    exact = np.exp(-0.5 * (C[:, 0, 0] + C[:, 1, 1])) * np.sinh(C[:, 0, 1])
    assert np.all(np.abs(val - exact)[ok] <= 1e-11 * np.sqrt(C[ok, 0, 0] * C[ok, 1, 1]))


def test_evaluate_against_quadrature(monkeypatch):
    """sin at C_W = 2, three layers: the closed form against the quadrature paths (the
    closed form switched off), K, G1 and V, to 2e-8 relative (the fast path's own error is
    ~1e-8 of the scale here; measured: V 7e-9, K and G1 ≤ 1e-13)."""
    x = np.random.default_rng(0).standard_normal((3, 3))
    stats = ["K", "G1", "V"]
    new = evaluate("sin", 3, x, cw=2.0, stats=stats, settings=Settings(jit=False, threads=1))
    monkeypatch.setattr(paths, "trigonometric", lambda blocks: False)
    monkeypatch.setattr(tensor, "trigonometric", lambda blocks: False)  # pairs: the series
    old = evaluate("sin", 3, x, cw=2.0, stats=stats, settings=Settings(jit=False, threads=1))
    for name in stats:
        for layer in (1, 2, 3):
            a, b = np.asarray(new[layer - 1][name]), np.asarray(old[layer - 1][name])
            assert np.max(np.abs(a - b)) <= 2e-8 * max(np.max(np.abs(b)), 1e-300), (name, layer)


def test_pairs_all_variances():
    """k = 2: the exact form where accurate, the Hermite series elsewhere (one tiny input);
    variance 500, where the series' rules alias sin's coefficients (it returned values off by
    ~1 of the scale), takes the exact form throughout.  Reference ⟨sin z_a sin z_b⟩ =
    e^{−(K_aa + K_bb)/2} sinh K_ab (and its difference form at 500, where sinh overflows)."""
    X = np.random.default_rng(0).standard_normal((6, 8))
    X[3] *= 1e-3
    for var in (0.3, 3.0, 500.0):
        K = X @ X.T / 8 * var
        T, st = _quad_stats([s, s], K)
        d = np.diag(K)
        tot = d[:, None] + d[None, :]
        if var < 100:
            ref = np.exp(-0.5 * tot) * np.sinh(K)
        else:
            ref = 0.5 * (np.exp(-0.5 * (tot - 2 * K)) - np.exp(-0.5 * (tot + 2 * K)))
        scale = np.sqrt(np.outer(-np.expm1(-2 * d), -np.expm1(-2 * d))) / 2
        assert np.max(np.abs(T - ref) / scale) <= 1e-12, var
        assert st["trigonometric_tuples"] >= (36 if var == 500 else 25), (var, st)
        assert st["series_tuples"] == (0 if var == 500 else 36), (var, st)
