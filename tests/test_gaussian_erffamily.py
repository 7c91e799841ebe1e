"""The erf family (erf, GELU and their derivatives) in closed form: orthant moments with one
auxiliary variable per factor Φ (ntkdiagrams.numerics.gaussian.erffamily).

Oracles: the exact cone method at high degree (independent: simplex rules in orthant cones), and
for pairs Williams' formula ⟨erf(z_a) erf(z_b)⟩ = (2/π) asin(2C_ab / √((1 + 2C_aa)(1 + 2C_bb))),
which holds at any variance.  Errors are measured against the scale Π_s ⟨f_s(z_s)²⟩^{1/2}.
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from ntkdiagrams.numerics.activations import parse_activation, z
from ntkdiagrams.numerics.gaussian import Quadrature, expectation_tensor
from ntkdiagrams.numerics.gaussian.erffamily import factor_groups
from ntkdiagrams.numerics.gaussian.factors import prepare_factor
from ntkdiagrams.numerics.gaussian.tensor import prepare_factors, tensor_values
from ntkdiagrams.settings import Settings

from gaussian_support import scale

GELU = parse_activation("gelu")
ERF = parse_activation("erf")


def random_covariances(n, m, rank, var, seed):
    """n covariances (m × m) of the given rank, variances around ``var``."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, m, rank))
    C = X @ np.swapaxes(X, 1, 2)
    d = np.sqrt(np.einsum("nii->ni", C))
    s = np.sqrt(var * rng.uniform(0.5, 1.5, (n, m))) / d
    return C * s[:, :, None] * s[:, None, :]


def test_groups_of_gelu_erf_and_others():
    g = factor_groups(prepare_factor(GELU.derivative(0)))
    assert len(g) == 1 and g[0].poly == (0.0, 1.0) and g[0].gamma == 0.0   # GELU = z Φ(z)
    assert np.allclose(g[0].slopes, [1.0])
    e = factor_groups(prepare_factor(sp.erf(2 * z)))                  # erf(2z) = 2Φ(2√2 z) − 1
    assert sorted((x.poly, x.slopes) for x in e) == [((-1.0,), ()), ((2.0,), (2 * np.sqrt(2),))]
    d2 = factor_groups(prepare_factor(GELU.derivative(2)))             # φ(z)(2 − z²)
    assert len(d2) == 1 and d2[0].gamma == -0.5 and d2[0].slopes == ()
    for other in (sp.tanh(z), sp.erf(z + 1), sp.log(1 + sp.exp(z)), z * sp.exp(z ** 2 / 8), sp.Max(0, z)):
        assert factor_groups(prepare_factor(other)) is None, other


def block_kernel(C):
    """One kernel holding the covariances C (T, m, m) as diagonal blocks, and the index tuples."""
    T, m = C.shape[0], C.shape[1]
    K = np.zeros((T * m, T * m))
    for t in range(T):
        K[m * t:m * t + m, m * t:m * t + m] = C[t]
    return K, np.arange(T * m).reshape(-1, m)


@pytest.mark.parametrize("derivs", [(0, 0, 0, 0), (2, 0, 1, 1), (1, 1, 0, 0), (2, 2, 1, 0)])
@pytest.mark.parametrize("act", [GELU, ERF])
def test_four_variables_against_uniform_rules(act, derivs):
    """Four distinct variables at variances 0.5 … 1.5: the nested rule with 48 and 64 nodes per side
    in every coordinate (which agree to 1e-12 here) as the oracle, its last variable read from the
    finest table (``spacing=False``: GELU's own spacing reads it to ~6e-10 of its scale)."""
    C = random_covariances(6, 4, 4, 1.0, 1)
    facs = prepare_factors([act.derivative(k) for k in derivs])
    K, tuples = block_kernel(C)
    with Quadrature(Settings(threads=1)) as quad:
        got = tensor_values(facs, K, tuples, None, "auto", quad)
        assert quad.stats["erf_family_tuples"] == tuples.shape[0] and quad.stats["fast_tuples"] == 0
    with Quadrature(Settings(threads=1), spacing=False) as quad:
        r48, r64 = (tensor_values(facs, K, tuples, d, "fast", quad) for d in (48, 64))
    s = scale(facs, C)
    assert np.max(np.abs(r48 - r64) / s) <= 1e-12
    assert np.max(np.abs(got - r64) / s) <= 1e-11


@pytest.mark.parametrize("derivs", [(0, 0, 0), (2, 1, 0), (1, 1, 2)])
@pytest.mark.parametrize("act", [GELU, ERF])
def test_three_variables_against_the_cone_method(act, derivs):
    """Full rank and rank 2 (three inputs in a plane), variances around 3."""
    C = np.concatenate([random_covariances(2, 3, 3, 3.0, 1), random_covariances(2, 3, 2, 3.0, 2)])
    facs = prepare_factors([act.derivative(k) for k in derivs])
    K, tuples = block_kernel(C)
    with Quadrature(Settings(threads=1)) as quad:
        got = tensor_values(facs, K, tuples, None, "auto", quad)
        ref = tensor_values(facs, K, tuples, 40, "exact", quad)
    assert np.max(np.abs(got - ref) / scale(facs, C)) <= 1e-11


def test_a_first_layer_and_merged_slots():
    """The rank-3 first-layer kernel of the benchmark grid at |x|²/n0 = 3, C_W = 2 (variances up to
    16).  ⟨erf⁴⟩ at the inputs (3, 9, 13, 15), where the fast path gave 0.0352455449 (off by 3.9e-6):
    the cone method gives 0.03524160029376 at degree 32 and 0.03524160028872 at degree 40 (68 s, too
    slow for a test: the value is kept here).  Merged slots σ(z_a) σ(z_b)² σ(z_c) against the cone
    method at degree 40, which is converged to ~1e-11 of the scale here (⟨erf⁴⟩ at (4, 10, 10, 13)
    moves by 3.5e-10 from degree 32 to 40; this closed form is 8e-12 from degree 40 and 3e-12 from
    the nested rule with 96 nodes per side)."""
    x = np.random.default_rng(0).standard_normal((16, 3))
    x *= np.sqrt(3.0 / np.mean(np.sum(x * x, axis=1) / 3))
    K = 2.0 * x @ x.T / 3
    facs = prepare_factors([ERF.derivative(0)] * 4)
    with Quadrature(Settings(threads=1)) as quad:
        assert abs(tensor_values(facs, K, np.array([[3, 9, 13, 15]]), None, "auto", quad)[0]
                   - 0.03524160028872) < 1e-12
    tuples = np.array([[4, 10, 10, 13], [5, 14, 14, 15], [0, 7, 7, 7], [1, 1, 2, 2]])
    C = K[tuples[:, :, None], tuples[:, None, :]]
    for act in (ERF, GELU):
        for derivs in ((0, 0, 0, 0), (1, 2, 2, 0)):
            facs = prepare_factors([act.derivative(k) for k in derivs])
            with Quadrature(Settings(threads=1)) as quad:
                got = tensor_values(facs, K, tuples, None, "auto", quad)
                ref = tensor_values(facs, K, tuples, 40, "exact", quad)
            assert np.max(np.abs(got - ref) / scale(facs, C)) <= 3e-11, (act.name, derivs)


@pytest.mark.parametrize("var", [0.01, 1.0, 30.0, 1e4])
def test_pairs_against_williams_at_any_variance(var):
    C = random_covariances(1, 6, 6, var, 3)[0]
    with Quadrature(Settings(threads=1)) as quad:
        got = expectation_tensor([sp.erf(z)] * 2, C, quadrature=quad)
        assert quad.stats["erf_family_tuples"] > 0 and quad.stats["series_tuples"] == 0
    d = 1 + 2 * np.diag(C)
    want = 2 / np.pi * np.arcsin(2 * C / np.sqrt(np.outer(d, d)))
    assert np.max(np.abs(got - want)) <= 1e-13


def test_five_factors_phi_keep_the_other_methods():
    """⟨GELU⁵⟩ has five factors Φ: beyond the orthant probabilities P₁ … P₄."""
    K = random_covariances(1, 3, 3, 1.0, 4)[0]
    with Quadrature(Settings(threads=1)) as quad:
        expectation_tensor([GELU.derivative(0)] * 5, K, quadrature=quad)
        assert quad.stats["erf_family_tuples"] == 0 and quad.stats["fast_tuples"] > 0
