"""The two-factor form of four-variable expectations (numerics/gaussian/twofactor.py, issue 15).

C = A Aᵀ + diag(d) with A (4 × 2) and d ≥ 0 turns E[Π f_k(z_k)] into a two-dimensional integral
of four table lookups.  Checked: the forms reproduce C; covariances without a form are left to
the Cholesky form; expectations that the fast path takes by this form agree with the nested
Cholesky rule at a uniform 96 nodes per side (independent of both ladders and of the form;
measured ≤ 3e-10 of the scale Π⟨f²⟩^{1/2} here, docs/gaussian.md); the compiled kernel and the
numpy path agree to rounding.  The bound 2e-9 catches a 1e-8 error.
"""
from __future__ import annotations

import numpy as np
import pytest

from ntkdiagrams.numerics.activations import parse_activation
from ntkdiagrams.numerics.gaussian import Quadrature
from ntkdiagrams.numerics.gaussian.blocks import Block
from ntkdiagrams.numerics.gaussian.fast import half, integrate_fast
from ntkdiagrams.numerics.gaussian.ladder import FAST_LADDER_M34
from ntkdiagrams.numerics.gaussian.tensor import prepare_factors
from ntkdiagrams.numerics.gaussian.twofactor import integrate_two_factor, two_factor_forms
from ntkdiagrams.settings import Settings

from gaussian_support import scale

TOL = 2e-9


def deep_kernel(var: float, T: int = 6, seed: int = 1) -> np.ndarray:
    """T four-input kernels of two-factor form with private variances 5 … 30 % (as most of a deep
    layer's are: GELU at |x|²/n0 = 3, C_W = 2, 96–98 % of the four-input kernels from layer 5 on),
    diagonals ≈ var · (0.5 … 1)."""
    rng = np.random.default_rng(seed)
    B = rng.normal(1.0, 0.6, (T, 4, 2))
    share = rng.uniform(0.05, 0.3, (T, 4))
    target = var * rng.uniform(0.5, 1.0, (T, 4))
    B *= np.sqrt(target * (1 - share) / np.sum(B * B, axis=2))[..., None]
    return B @ np.swapaxes(B, 1, 2) + np.einsum("tk,kl->tkl", target * share, np.eye(4))


def factors(name: str, orders) -> list:
    act = parse_activation(name)
    return prepare_factors([act.derivative(k) for k in orders])


def test_forms_reproduce_the_covariance():
    C = deep_kernel(12.0, T=200)
    forms = two_factor_forms(C, np.ones(4), 1.5, FAST_LADDER_M34)
    assert np.all(forms.ok)
    ok = forms.ok
    Co = np.stack([C[t][np.ix_(o, o)] for t, o in zip(np.nonzero(ok)[0], forms.order[ok])])
    A, sd = forms.A[ok], forms.sd[ok]
    back = A @ np.swapaxes(A, 1, 2) + np.einsum("tk,kl->tkl", sd ** 2, np.eye(4))
    assert np.max(np.abs(back - Co)) <= 1e-12 * np.max(np.abs(C))
    assert np.all(A[:, 0, 1] == 0) and np.all(A[:, 1, 1] > 0)  # w₀ along the pivot; split of w₁
    assert np.all(np.isfinite(forms.points[ok])) and np.all(np.isinf(forms.points[~ok]))


def test_no_form_for_pairwise_obtuse_inputs():
    """Four directions of a plane cannot be pairwise obtuse: no form for equal correlations −0.3."""
    C = (1.3 * np.eye(4) - 0.3 * np.ones((4, 4)))[None] * 5.0
    forms = two_factor_forms(C, np.ones(4), 1.5, FAST_LADDER_M34)
    assert not forms.ok[0]
    facs = factors("tanh", (0, 0, 1, 1))
    with Quadrature(Settings(threads=1)) as quad:
        integrate_fast([Block([(f, np.ones(1))]) for f in facs], C, None, quad)
        assert quad.stats["two_factor_tuples"] == 0


@pytest.mark.parametrize("name,orders,var", [("tanh", (0, 0, 0, 0), 12.0), ("tanh", (1, 1, 0, 0), 6.0),
                                             ("gelu", (0, 0, 0, 0), 17.0), ("gelu", (2, 0, 1, 1), 6.0),
                                             ("erf", (0, 0, 1, 1), 8.0),
                                             ("softplus", (0, 0, 0, 0), 17.0), ("swish", (1, 0, 0, 0), 12.0)])
def test_against_the_uniform_rule(name, orders, var):
    """The fast path (two-factor form where it saves points) against the Cholesky form at a uniform
    96 nodes per side on every outer level."""
    pytest.importorskip("numba")  # the uniform reference: 7 × 10⁶ points per tuple
    facs = factors(name, orders)
    C = deep_kernel(var)
    blocks = [Block([(f, np.ones(C.shape[0]))]) for f in facs]
    with Quadrature(Settings(threads=2)) as quad:
        got = integrate_fast(blocks, C, None, quad)
        assert quad.stats["two_factor_tuples"] >= C.shape[0] // 2
        ref = integrate_fast(blocks, C, 96, quad)
    assert np.max(np.abs(got - ref) / scale(facs, C)) <= TOL


def test_compiled_and_numpy_agree():
    pytest.importorskip("numba")
    facs = factors("tanh", (2, 0, 1, 1))
    C = deep_kernel(9.0, T=40)
    forms = two_factor_forms(C, np.ones(4), 1.5, FAST_LADDER_M34)
    forms = forms.take(forms.ok)
    values = []
    for jit in (True, False):
        with Quadrature(Settings(jit=jit, threads=2)) as quad:
            quad.kernel_used = jit  # the kernel however few the points
            values.append(integrate_two_factor(facs, forms, forms.codes, quad))
    assert np.max(np.abs(values[0] - values[1])) <= 1e-13 * np.max(np.abs(values[1]))


def test_half_rule_for_even_products():
    """⟨tanh⁴⟩ is even in w: half the outer rule with doubled weights gives the full rule's value."""
    facs = factors("tanh", (0, 0, 0, 0))
    C = deep_kernel(6.0, T=20)
    forms = two_factor_forms(C, np.ones(4), 1.5, FAST_LADDER_M34)
    forms = forms.take(forms.ok)
    with Quadrature(Settings(jit=False, threads=1)) as quad:
        full = integrate_two_factor(facs, forms, forms.codes, quad)
        halved = integrate_two_factor(facs, forms, half(forms.codes), quad)
    assert np.max(np.abs(full - halved)) <= 1e-12 * np.max(np.abs(full))
