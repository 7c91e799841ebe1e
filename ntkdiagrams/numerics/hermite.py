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
inputs) and lambdified; the expectations ⟨F̃ yᵖ⟩ come from :mod:`ntkdiagrams.numerics.gaussian`.
:func:`contract_blob` does this for any blob sum: several sites (each on one or two input
labels), tensors with fixed labels (the H leg of D and F).  Two distinct inputs that are
identical are collapsed; other singular (anti-parallel) pairs raise InputError.
"""
from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import sympy as sp

from .activations import z as zsym
from ..errors import InputError, UnsupportedError


@lru_cache(maxsize=None)
def _q_polynomial(k: int, r: int):
    """Q(y) = Σ_γ t_γ h_γ(y) for r variables: returns (monomial exponents, lambdified coefficients).

    Coefficient functions take (P entries in upper-triangular order, t_γ in product order)."""
    monos, coeffs, gammas, pvars, ts = q_polynomial(k, r)
    return monos, [sp.lambdify(pvars + list(ts), c, modules="numpy") for c in coeffs], gammas


@lru_cache(maxsize=None)
def q_polynomial(k: int, r: int):
    """Q(y) = Σ_γ t_γ h_γ(y) for r variables as sympy data: (monomial exponents, coefficient
    expressions, γ tuples, P symbols P{i}{j} in upper-triangular order, t symbols in product order);
    also used by :mod:`ntkdiagrams.generation` to print the same polynomial."""
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
    return poly.monoms(), poly.coeffs(), gammas, pvars, ts


# ---- general blob sums: several sites, tensors with concrete labels ----

def _site_moments(funcs, k, K, expect):
    """Derivative moments of one site F = f_1(z_{l1}) [f_2(z_{l2})] with k blob legs on it.

    Returns (distinct, equal):
    distinct[γ] (N, N): ⟨∂_{γ_1}…∂_{γ_k} F̃⟩ for two distinct inputs (γ_q ∈ {0, 1} picks the
        variable), by ⟨F̃ h_γ(y; K̃)⟩;  None for a one-label site;
    equal (N,): ⟨d^k F̃/dy^k⟩ with F̃(y) = Π f(y), for coinciding inputs (or a one-label site).
    """
    N = K.shape[0]
    kd = np.diag(K)
    prod = sp.expand(sp.Mul(*funcs))
    monos1, coeffs1, _ = _q_polynomial(k, 1)
    equal = np.zeros(N)
    for (p,), cf in zip(monos1, coeffs1):
        equal = equal + cf(1.0 / kd, np.ones(N)) * expect([sp.expand(prod * zsym ** p)], K)
    if len(funcs) == 1:
        return None, equal
    monos, coeffs, gammas = _q_polynomial(k, 2)
    U = np.indices((N, N))
    det = K[U[0], U[0]] * K[U[1], U[1]] - K[U[0], U[1]] ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        P00, P01, P11 = K[U[1], U[1]] / det, -K[U[0], U[1]] / det, K[U[0], U[0]] / det
    E = {}
    for (p, q) in monos:
        E[(p, q)] = expect([sp.expand(funcs[0] * zsym ** p), sp.expand(funcs[1] * zsym ** q)], K)
    distinct = {}
    for gi, g in enumerate(gammas):
        unit = [0.0] * len(gammas)
        unit[gi] = 1.0
        total = np.zeros((N, N))
        with np.errstate(divide="ignore", invalid="ignore"):
            for (p, q), cf in zip(monos, coeffs):
                total = total + cf(P00, P01, P11, *unit) * E[(p, q)]
        distinct[g] = total
    return distinct, equal


def contract_blob(tensor_arr: np.ndarray, args: tuple, sites: list, K: np.ndarray, expect,
                  axes_labels: tuple) -> np.ndarray:
    """Σ_β T[args] Π_sites ⟨∂_{β∈site} F_site⟩ for every tuple of the target inputs.

    args: per tensor slot ("leg", q) for a summed blob leg or ("label", α) for a fixed label.
    sites: per site (labels, funcs, legs): the site's input labels (1 or 2), its univariate
        factors, the blob legs acting on it.
    axes_labels: the labels of the returned array's axes.
    Coinciding inputs inside a site are collapsed before integrating by parts (see module
    docstring), so activations with kinks need no derivative of σ at all."""
    N = K.shape[0]
    naxes = len(axes_labels)
    grid = np.indices((N,) * naxes).reshape(naxes, -1)
    val = {lab: grid[i] for i, lab in enumerate(axes_labels)}
    d = np.sqrt(np.diag(K))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = K / np.outer(d, d)
    same_input = np.isclose(rho, 1.0, rtol=0, atol=1e-12) & np.isclose(d[:, None], d[None, :], rtol=1e-12)
    moments = []
    for labels, funcs, legs in sites:
        dist, eq = _site_moments(tuple(funcs), len(legs), K, expect)
        if len(labels) == 2:
            a, b = val[labels[0]], val[labels[1]]
            coinc = same_input[a, b]
            if (np.abs(rho[a, b]) > 1 - 1e-10)[~coinc].any():
                raise InputError("two inputs are (anti-)parallel: their 2x2 kernel is singular; the "
                                 "integration-by-parts form for activations with kinks needs distinct directions")
        else:
            a, b, coinc = val[labels[0]], None, np.ones(grid.shape[1], dtype=bool)
        moments.append((labels, legs, dist, eq, a, b, coinc))
    out = np.zeros(grid.shape[1])
    nlegs = sum(len(m[1]) for m in moments)
    # γ: for each leg, which variable (0/1) of its site it differentiates
    for gam in itertools.product((0, 1), repeat=nlegs):
        pos = 0
        leg_choice = {}
        ok_all = np.ones(grid.shape[1], dtype=bool)
        factor = np.ones(grid.shape[1])
        for labels, legs, dist, eq, a, b, coinc in moments:
            g = tuple(gam[pos:pos + len(legs)])
            pos += len(legs)
            # coinciding (or one-label) sites: one collapsed variable, only the all-zero γ counts
            site_val = np.where(coinc, 0.0 if any(g) else eq[a], 0.0)
            if dist is not None:
                site_val = site_val + np.where(coinc, 0.0, dist[g][a, b if b is not None else a])
            factor = factor * site_val
            for q, gq in zip(legs, g):
                leg_choice[q] = np.where(coinc, a, b if (gq and b is not None) else a)
        idx = []
        for kind, x in args:
            idx.append(leg_choice[x] if kind == "leg" else val[x])
        out += factor * tensor_arr[tuple(idx)]
    return out.reshape((N,) * naxes)
