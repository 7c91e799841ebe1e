"""Two-point tensors by the Hermite series (ntkdiagrams.numerics.gaussian.series)."""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from ntkdiagrams.errors import InputError
from ntkdiagrams.numerics.activations import z
from ntkdiagrams.numerics.gaussian import Quadrature, expectation_tensor
from ntkdiagrams.numerics.gaussian.series import SERIES_NODES, hermite_basis, series_tensor
from ntkdiagrams.numerics.gaussian.tensor import check_correlations, check_kernel, prepare_factors
from ntkdiagrams.numerics.gaussian.erffamily import erf_factors
from ntkdiagrams.settings import Settings

TH = sp.tanh(z)
D1 = sp.diff(TH, z)
D2 = sp.diff(TH, z, 2)
GELU = z / 2 * (1 + sp.erf(z / sp.sqrt(2)))
PAIRS = {
    "tanh": [TH, TH], "sech2": [D1, D1], "tanh-tanh''": [TH, D2], "tanh''": [D2, D2],
    "erf": [sp.erf(z), sp.erf(z)], "gelu-gelu'": [GELU, sp.diff(GELU, z)],
    "softplus": [sp.log(1 + sp.exp(z))] * 2, "swish": [z / (1 + sp.exp(-z))] * 2,
    "sin": [sp.sin(z)] * 2,
}
NUMPY = Settings(jit=False, threads=1)


def _kernel(var, n=7, seed=1):
    """Inputs in 3 dimensions, mean variance ``var`` (a spread of 10×), with a collinear pair,
    an anti-collinear pair and a pair at ρ ≈ 1 − 1e-9."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    X[1] = 1.3 * X[0]
    X[3] = -0.5 * X[2]
    if n > 5:
        X[5] = X[4] + 1e-4 * rng.standard_normal(3)
    K = X @ X.T / 3
    return K * var / np.mean(np.diag(K))


def _scale(facs, K):
    """The Cauchy–Schwarz scale √(E f(z_a)² E g(z_b)²) of every entry."""
    n = [np.sqrt(np.abs(np.diag(expectation_tensor([f, f], K, method="exact", degree=80,
                                                     settings=NUMPY)))) for f in facs]
    return np.outer(n[0], n[1])


@pytest.mark.parametrize("var", [0.5, 3.0])
@pytest.mark.parametrize("name", list(PAIRS))
def test_series_against_exact(name, var):
    """Every entry within 1e-9 of its scale of the exact cone method at degree 80 (itself good
    to ~1e-11), through method="auto" (the series for every input it resolves; sin and the erf
    family take their closed forms there, and the series is checked directly)."""
    facs = PAIRS[name]
    K = _kernel(var)
    with Quadrature(NUMPY) as quad:
        T = expectation_tensor(facs, K, quadrature=quad)
    ref = expectation_tensor(facs, K, method="exact", degree=80, settings=NUMPY)
    if name == "sin" or erf_factors(prepare_factors(facs)):  # closed forms: the series directly
        assert quad.stats["trigonometric_tuples" if name == "sin" else "erf_family_tuples"] > 0
        assert np.max(np.abs(T - ref) / _scale(facs, K)) < 1e-9
        T, missing = series_tensor(prepare_factors(facs), check_kernel(K))
        i, j = missing[:, 0], missing[:, 1]  # the pairs the series leaves, in both orders
        T[i, j], T[j, i] = ref[i, j], ref[j, i]
    else:
        assert quad.stats["series_tuples"] > 0
    err = np.max(np.abs(T - ref) / _scale(facs, K))
    assert err < 1e-9, (name, var, err)


def test_unresolved_inputs_take_the_general_path():
    """An input of variance 60 is beyond the largest rule for tanh'' (its Hermite coefficients
    decay too slowly): its row and column take the general path (since 2026-12-01 the fast path,
    whose bound is 60; before, the cone method at its default degree, 7e-9 off here), the rest
    comes from the series; every entry within 1e-9 of its scale of the cone method at degree 128
    (at degree 80 the one-input entry (0, 0) itself is 3e-8 off)."""
    K = _kernel(1.0, n=5)
    s = np.sqrt(60 / K[0, 0])
    K[0, :] *= s
    K[:, 0] *= s
    facs = [D2, D2]
    with Quadrature(NUMPY) as quad:
        T = expectation_tensor(facs, K, quadrature=quad)
    assert quad.stats["series_tuples"] == 14  # the 4 other inputs but their anti-collinear pair (2, 3)
    assert quad.stats["fast_tuples"] > 0  # pairs (0, b) of the row
    ref = expectation_tensor(facs, K, method="exact", degree=128, settings=NUMPY)
    assert np.max(np.abs(T - ref) / _scale(facs, K)) < 1e-9


def test_non_smooth_and_degree_keep_the_old_paths():
    """relu (kinks), an explicit degree and method="fast" do not use the series."""
    K = _kernel(1.0, n=4)
    for facs, kw in (([sp.Max(0, z)] * 2, {}), ([TH, TH], {"degree": 12}), ([TH, TH], {"method": "fast"}),
                     ([TH, TH, TH], {})):
        with Quadrature(NUMPY) as quad:
            expectation_tensor(facs, K, quadrature=quad, **kw)
        assert quad.stats["series_tuples"] == 0, (facs, kw)


@pytest.mark.parametrize("Q", [SERIES_NODES[0], SERIES_NODES[-1]])
def test_hermite_basis_orthonormal(Q):
    """ψ = √w h_n on the Q-point rule: orthonormal columns, also where w_q underflows (Q = 2048),
    and the weights sum to 1."""
    x, w, psi = hermite_basis(Q)
    assert psi.shape == (Q, Q // 2 + 1)
    assert np.max(np.abs(psi.T @ psi - np.eye(Q // 2 + 1))) < 1e-12
    assert abs(np.sum(w) - 1) < 1e-12
    # E[x²] and E[x⁴] exactly
    assert abs(np.sum(w * x ** 2) - 1) < 1e-12 and abs(np.sum(w * x ** 4) - 3) < 1e-11


def test_check_correlations():
    K = _kernel(1.0, n=4)
    assert np.array_equal(check_correlations(K), check_kernel(K))
    bad = K.copy()
    bad[0, 2] = bad[2, 0] = 1.01 * np.sqrt(K[0, 0] * K[2, 2])
    with pytest.raises(InputError, match="positive semi-definite"):
        check_correlations(bad)
    with pytest.raises(InputError, match="symmetric"):
        check_correlations(K + np.triu(np.ones_like(K), 1))


def test_kernel_checked_once_per_quadrature():
    """Quadrature.remember: equal arrays in a row reuse the result; a changed array is checked."""
    K = _kernel(1.0, n=4)
    calls = []
    with Quadrature(NUMPY) as quad:
        for A in (K, K.copy(), 2 * K):
            quad.remember("kernel", A, lambda a: calls.append(1) or a)
    assert len(calls) == 2


@pytest.mark.parametrize("name, var", [("softplus", 25.0), ("softplus", 0.5), ("tanh", 3.0),
                                       ("tanh-tanh''", 3.0), ("sech2", 0.5)])
def test_compiled_pair_sums_equal_numpy(name, var):
    """The pair sums by the compiled Horner loop (compiled.pair_horner, used once numba is
    loaded) are numpy's bit for bit: series of both parities (tanh: odd, sech²: even), mixed
    parity, and orders up to ~10³ (softplus at variance 25)."""
    gj = pytest.importorskip("ntkdiagrams.numerics.gaussian.compiled")
    if not gj.available():
        pytest.skip("numba is not installed")
    facs = prepare_factors(PAIRS[name])
    K = _kernel(var, n=9, seed=4)
    numpy_T, numpy_missing = series_tensor(facs, K)
    jit_T, jit_missing = series_tensor(facs, K, horner=gj.pair_horner)
    assert np.array_equal(numpy_missing, jit_missing)
    assert np.array_equal(np.isnan(numpy_T), np.isnan(jit_T))
    assert np.array_equal(numpy_T[~np.isnan(numpy_T)], jit_T[~np.isnan(jit_T)])
    assert np.sum(~np.isnan(numpy_T)) > K.shape[0]  # pairs were summed, not only the diagonal
