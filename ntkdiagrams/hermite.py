"""Blob contractions by Gaussian integration by parts (for activations with kinks).

For a single neuron site, a blob contracts its k derivative legs with one insertion F:

    R_{α…} = Σ_{β1…βk ∈ inputs of F} T_{…β…} ⟨∂_{β1}⋯∂_{βk} F⟩_K .

Integration by parts moves every derivative onto the Gaussian weight,

    ⟨∂_{γ1}⋯∂_{γk} F⟩_K = ⟨F(y) h_{γ1…γk}(y)⟩_K ,   h_γ = (−1)^k e^{yᵀPy/2} ∂_γ e^{−yᵀPy/2},  P = K̃⁻¹,

with y the preactivations on the *distinct* inputs that F touches and K̃ their covariance.  No
derivative of σ is needed, so ReLU-like activations (whose σ⁗ is a derivative of a Dirac
delta, and whose Leibniz pieces multiply deltas at one point when inputs coincide) are handled
exactly.  Coinciding inputs are collapsed first: when α1 and α2 are the same input,
Σ_{β∈{α1,α2}^k} T_β ∂_β F = T_{u…u} d^k F̃/dy^k with F̃(y) = F(y, y), by the chain rule.

The polynomial Q(y) = Σ_γ T_γ h_γ(y) is built once with sympy for each (k, number of distinct
inputs) and lambdified; the expectations ⟨F̃ yᵖ⟩ come from :mod:`ntkdiagrams.gaussian`.
Supported: insertions on at most two input labels (all of K, G1, V); two distinct inputs that
are exactly parallel (identical) are collapsed, other singular pairs raise InputError.
"""
from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import sympy as sp

from .activations import z as zsym
from .errors import InputError, UnsupportedError


@lru_cache(maxsize=None)
def _q_polynomial(k: int, r: int):
    """Q(y) = Σ_γ t_γ h_γ(y) for r variables: returns (monomial exponents, lambdified coefficients).

    Coefficient functions take (P entries in upper-triangular order, t_γ in product order)."""
    ys = sp.symbols(f"y0:{r}")
    P = sp.Matrix(r, r, lambda i, j: sp.Symbol(f"P{min(i, j)}{max(i, j)}"))
    quad = sum(P[i, j] * ys[i] * ys[j] for i in range(r) for j in range(r))
    phi = sp.exp(-quad / 2)
    gammas = list(itertools.product(range(r), repeat=k))
    ts = sp.symbols(f"t0:{len(gammas)}")
    Q = sp.Integer(0)
    for t, g in zip(ts, gammas):
        d = phi
        for idx in g:
            d = sp.diff(d, ys[idx])
        Q += t * sp.simplify((-1) ** k * d / phi)
    poly = sp.Poly(sp.expand(Q), *ys)
    pvars = [P[i, j] for i in range(r) for j in range(i, r)]
    monos = poly.monoms()
    coeffs = [sp.lambdify(pvars + list(ts), c, modules="numpy") for c in poly.coeffs()]
    return monos, coeffs, gammas


def contract(funcs: tuple, slot_legs: tuple, k: int, T: np.ndarray, K: np.ndarray, expect) -> np.ndarray:
    """R[a1(, a2)] = Σ_β T[β in slot order] ⟨∂_β Π_j f_j(z_{a_j})⟩ for all input tuples.

    funcs: univariate sympy functions of ``activations.z``, one per label of F (1 or 2).
    slot_legs: for each slot of T, the blob leg (0..k-1) whose label fills it.
    expect(factors, K) -> tensor of ⟨Π f(z)⟩ over input tuples (gaussian.expectation_tensor).
    """
    m = len(funcs)
    N = K.shape[0]
    if m == 1:
        return _one_input(funcs[0], slot_legs, k, T, K, expect, np.arange(N))
    if m != 2:
        raise UnsupportedError("blob contractions on insertions with more than two inputs are not supported")
    out = np.zeros((N, N))
    d = np.sqrt(np.diag(K))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = K / np.outer(d, d)
    same = np.isclose(rho, 1.0, rtol=0, atol=1e-12) & np.isclose(d[:, None], d[None, :], rtol=1e-12)
    singular = (np.abs(rho) > 1 - 1e-10) & ~same
    if singular.any():
        a, b = map(int, np.argwhere(singular)[0])
        raise InputError(f"inputs {a} and {b} are (anti-)parallel: their 2x2 kernel is singular; the "
                         "integration-by-parts form for activations with kinks needs distinct directions")
    # coinciding inputs: F̃(y) = f1(y) f2(y)
    prod = sp.expand(funcs[0] * funcs[1])
    idx = np.argwhere(same)
    diag_vals = _one_input(prod, slot_legs, k, T, K, expect, np.arange(N), pairs=idx)
    out[same] = diag_vals
    # distinct inputs: two variables
    monos, coeffs, gammas = _q_polynomial(k, 2)
    U = np.indices((N, N))
    P_det = K[U[0], U[0]] * K[U[1], U[1]] - K[U[0], U[1]] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        P00 = K[U[1], U[1]] / P_det
        P01 = -K[U[0], U[1]] / P_det
        P11 = K[U[0], U[0]] / P_det
        tvals = []
        for g in gammas:
            tvals.append(T[tuple(U[g[leg]] for leg in slot_legs)])
        total = np.zeros((N, N))
        for (p, q), cf in zip(monos, coeffs):
            c = cf(P00, P01, P11, *tvals)
            e = expect([sp.expand(funcs[0] * zsym ** p), sp.expand(funcs[1] * zsym ** q)], K)
            total = total + c * e
    out[~same] = total[~same]
    return out


def _one_input(f, slot_legs, k, T, K, expect, us, pairs=None):
    """One distinct input u: T[u…u] ⟨f^{(k)}⟩ = T[u…u] ⟨f(y) h_k(y)⟩ with h_k the Hermite poly of K_uu."""
    monos, coeffs, _ = _q_polynomial(k, 1)
    kd = np.diag(K)
    if pairs is None:
        u = us
    else:
        u = pairs[:, 0]
    P00 = 1.0 / kd[u]
    t = T[tuple([u] * T.ndim)]
    total = np.zeros(len(u))
    for (p,), cf in zip(monos, coeffs):
        c = cf(P00, t)
        e = expect([sp.expand(f * zsym ** p)], K)  # shape (N,)
        total = total + c * e[u]
    return total
