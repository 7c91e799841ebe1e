"""Quadrature rules: nodes and weights, each computed once and cached.

* :func:`radial_rule` — n-point Gauss rule of the weight r^p e^{−r²/2} on [0, ∞) (exact for
  polynomials h of degree ≤ 2n − 1 in ∫ h(r) r^p e^{−r²/2} dr); the radial part of the cone
  method.  Golub–Welsch: the recurrence coefficients from the moments
  μ_j = 2^{(j+p+1)/2−1} Γ((j+p+1)/2) by the Chebyshev algorithm, in decimal arithmetic at
  40 + 3n digits (the map from moments to coefficients is badly conditioned).
* :func:`gauss_legendre` — Gauss–Legendre on [−1, 1] (the arcs of the m = 2 cone method).
* :func:`simplex_rule` — collapsed (Duffy / Stroud conical) Gauss–Jacobi product rule on the
  standard simplex, n points per direction; exact for polynomials of degree ≤ 2n − 1.
* Split rules — the n-point Gauss rule of the weight φ(u) = e^{−u²/2}/√(2π) on the half-line
  [c, ∞), for c on the grid −:data:`SPLIT_C` … :data:`SPLIT_C` with spacing :data:`SPLIT_DC`
  (:func:`split_rules`); the full line split at c is that rule followed by the mirrored rule
  of (−∞, c] (:func:`split_rules_full`).  A split at the zero crossing of a factor's argument
  puts the kink or the transition of a saturating function (tanh) at the end of both rules,
  where Gauss rules converge fast.  The recurrence coefficients come from the discretised
  Stieltjes procedure on a 400-point Gauss–Legendre discretisation of [c, max(c + 7.5, 9.5)]
  (:func:`split_recurrence`).
* Rule codes (:func:`rule_for_code`) — the fast path names a rule by an integer: n > 0 is the
  split rule with n nodes per side, −k the k-point Gauss–Hermite rule (probabilists', weight φ),
  :data:`HALF_CODE` + n the n-node rule of [0, ∞) with doubled weights (∫ φ h for an even h:
  the outermost coordinate of an integrand even under u → −u, split at 0).
"""
from __future__ import annotations

import decimal
import math
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from .stored import stored

__all__ = ["HALF_CODE", "SPLIT_BATCHED_MAX", "SPLIT_C", "SPLIT_DC", "SPLIT_RECURRENCE_TERMS", "gauss_legendre", "radial_rule",
           "rule_bank", "rule_for_code", "simplex_rule", "split_index", "split_nodes",
           "split_recurrence", "split_rules", "split_rules_full"]

#: Split points c of the tabulated rules for ∫_c^∞ φ(u) h(u) du: c ∈ [-SPLIT_C, SPLIT_C]
#: with spacing SPLIT_DC (the split is exact at the rounded point; the factor's zero crossing
#: is then within SPLIT_DC/2 of the end point, which is all the rule needs).
SPLIT_C, SPLIT_DC = 7.0, 0.05
#: rule code HALF_CODE + n: the Gauss rule of φ on [0, ∞) with n nodes, weights doubled (one row)
HALF_CODE = 1000
#: The three-term recurrence of the split weights is computed once up to this many terms
#: (every rule of the ladders and the table); a rule with more nodes computes its own.  The
#: coefficients of index k do not depend on this bound (40 before issue 15, 84 before 2026-12-01,
#: when the ladders reached 146 nodes per side: same rules).
SPLIT_RECURRENCE_TERMS = 146
#: Rules with at most this many nodes per side are computed by one batched dense ``eigh`` of
#: the Jacobi matrices (the rules of the ladders up to 36 and of the table); larger ones by
#: scipy's tridiagonal solver row by row: the batched dense solver of n ≥ 36 took up to 10 s
#: on the loaded 2-core machine (BLAS threads), the tridiagonal one 0.3 s for n = 84.
SPLIT_BATCHED_MAX = 36


@lru_cache(maxsize=64)
def radial_rule(n: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """n-point Gauss rule for ∫_0^∞ h(r) r^p e^{-r²/2} dr (Golub–Welsch).

    The moments μ_j = ∫_0^∞ r^{j+p} e^{-r²/2} dr follow from μ(0) = √(π/2), μ(1) = 1,
    μ(q+2) = (q+1) μ(q); the recurrence coefficients α_k, β_k of the monic orthogonal
    polynomials π_k come from them by the Chebyshev algorithm (Gautschi, *Orthogonal
    Polynomials*, §2.1.7), σ_k(l) = ⟨π_k, r^l⟩:

        σ_k(l) = σ_{k−1}(l+1) − α_{k−1} σ_{k−1}(l) − β_{k−1} σ_{k−2}(l),
        α_k = σ_k(k+1)/σ_k(k) − σ_{k−1}(k)/σ_{k−1}(k−1),   β_k = σ_k(k)/σ_{k−1}(k−1),

    in decimal arithmetic at 40 + 3n digits (O(n²) operations; the Cholesky factor of the Hankel
    matrix of moments in mpmath, used before, gives the same doubles at ~10× the cost:
    tests/test_gaussian_rules.py).  The nodes and weights are the eigen-decomposition of the
    Jacobi matrix, w_q = μ_0 v_{0q}²."""
    import mpmath as mp

    n, p = int(n), int(p)
    digits = 40 + 3 * n
    ctx = decimal.Context(prec=digits)
    with mp.workdps(digits + 5):
        root = ctx.create_decimal(mp.nstr(mp.sqrt(mp.pi / 2), digits + 5, strip_zeros=False))
    mu = [root, ctx.create_decimal(1)]
    for q in range(2, 2 * n + p):
        mu.append(ctx.multiply(q - 1, mu[q - 2]))
    mom = mu[p:p + 2 * n]
    with decimal.localcontext(ctx):
        alpha, beta = [mom[1] / mom[0]], [mom[0]]
        zero = ctx.create_decimal(0)
        prev, cur = [zero] * (2 * n), list(mom)
        for k in range(1, n):
            ak, bk = alpha[k - 1], beta[k - 1]
            nxt = [zero] * (2 * n)
            for col in range(k, 2 * n - k):
                nxt[col] = cur[col + 1] - ak * cur[col] - bk * prev[col]
            alpha.append(nxt[k + 1] / nxt[k] - cur[k] / cur[k - 1])
            beta.append(nxt[k] / cur[k - 1])
            prev, cur = cur, nxt
        a = np.array([float(v) for v in alpha])
        b = np.array([float(v.sqrt()) for v in beta[1:]])
    m0 = float(mom[0])
    J = np.diag(a) + np.diag(b, 1) + np.diag(b, -1)
    x, vec = np.linalg.eigh(J)
    w = m0 * vec[0] ** 2
    return x, w


@lru_cache(maxsize=64)
def gauss_legendre(n: int):
    """n-point Gauss–Legendre nodes and weights on [−1, 1]."""
    return np.polynomial.legendre.leggauss(n)


@lru_cache(maxsize=32)
def simplex_rule(dim: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Collapsed Gauss–Jacobi rule on the standard simplex {t ≥ 0, Σt = 1} of dimension dim.

    Returns barycentric points (Q, dim+1) and weights (Q,) summing to 1/dim!."""
    from scipy.special import roots_jacobi

    rules = []
    for i in range(dim):
        alpha = dim - 1 - i
        x, w = roots_jacobi(n, alpha, 0)
        rules.append(((1 + x) / 2, w / 2 ** (alpha + 1)))
    grids = np.meshgrid(*[r[0] for r in rules], indexing="ij")
    wgrid = np.ones_like(grids[0])
    for i, g in enumerate(np.meshgrid(*[r[1] for r in rules], indexing="ij")):
        wgrid = wgrid * g
    us = [g.ravel() for g in grids]
    t = np.empty((us[0].size, dim + 1))
    rest = np.ones_like(us[0])
    for i in range(dim):
        t[:, i] = rest * us[i]
        rest = rest * (1 - us[i])
    t[:, dim] = rest
    return t, wgrid.ravel()


@lru_cache(maxsize=4)
def split_recurrence(n: int):
    """Recurrence coefficients (α_k, β_k), k < n, of the orthonormal polynomials of the weight
    φ(u) on [c, ∞) for the grid of split points c, and the masses P(ξ > c): the discretised
    Stieltjes procedure on a 400-point Gauss–Legendre discretisation.  The coefficients of
    index k do not depend on n, so every rule with ≤ n nodes shares them.

    Returns (c (G,), α (G, n), β (G, n), mass (G,))."""
    from scipy.special import roots_legendre

    cs = np.arange(-SPLIT_C, SPLIT_C + SPLIT_DC / 2, SPLIT_DC)
    x, w = roots_legendre(400)
    a = cs[:, None]
    b = np.maximum(cs + 7.5, 9.5)[:, None]
    X = (b - a) / 2 * x[None] + (b + a) / 2
    Wd = (b - a) / 2 * w[None] * np.exp(-X ** 2 / 2) / math.sqrt(2 * math.pi)
    G = cs.size
    alpha, beta = np.zeros((G, n)), np.zeros((G, n))
    p_prev, p = np.zeros_like(X), np.ones_like(X)
    norm = np.sum(Wd, axis=1)
    mass, norm_prev = norm.copy(), norm
    for k in range(n):
        alpha[:, k] = np.sum(Wd * X * p * p, axis=1) / norm
        if k:
            beta[:, k] = norm / norm_prev
        p_new = (X - alpha[:, k:k + 1]) * p - (beta[:, k:k + 1] * p_prev if k else 0.0)
        p_prev, p = p, p_new
        norm_prev, norm = norm, np.sum(Wd * p * p, axis=1)
        sc = np.sqrt(norm)
        p, p_prev = p / sc[:, None], p_prev / sc[:, None]
        norm, norm_prev = norm / sc ** 2, norm_prev / sc ** 2
    return cs, alpha, beta, mass


@lru_cache(maxsize=32)
def split_rules(n: int, folder: Path | None = None):
    """Gauss rules of the weight φ(u) = e^{-u²/2}/√(2π) on [c, ∞) for the grid of c.

    Returns (c (G,), nodes (G, n), weights (G, n)); the weights sum to P(ξ > c).  The
    eigenvalues of the n × n Jacobi matrices of :func:`split_recurrence` (Golub–Welsch).
    ``folder``: the tables' folder (:func:`.stored.stored`): the rules are read from disk where
    stored (those with more than SPLIT_BATCHED_MAX nodes take ~0.1 s each to compute, and
    :func:`split_recurrence` imports scipy.special)."""
    if folder is not None:
        return stored(folder, "split_rules", (int(n),), lambda: split_rules(n))
    cs, alpha, beta, mass = split_recurrence(max(n, SPLIT_RECURRENCE_TERMS))
    G = cs.size
    if n > SPLIT_BATCHED_MAX:  # tridiagonal solver row by row (no BLAS threads, O(n²) per row)
        from scipy.linalg import eigh_tridiagonal

        ev, v0 = np.empty((G, n)), np.empty((G, n))
        for g in range(G):
            ev[g], V = eigh_tridiagonal(alpha[g, :n], np.sqrt(beta[g, 1:n]))
            v0[g] = V[0]
        return cs, ev, mass[:, None] * v0 ** 2
    J = np.zeros((G, n, n))
    i = np.arange(n)
    J[:, i, i] = alpha[:, :n]
    J[:, i[1:], i[:-1]] = J[:, i[:-1], i[1:]] = np.sqrt(beta[:, 1:n])
    ev, V = np.linalg.eigh(J)
    return cs, ev, mass[:, None] * V[:, 0, :] ** 2


@lru_cache(maxsize=32)
def split_rules_full(n: int, folder: Path | None = None):
    """(nodes (G, 2n), weights (G, 2n)) of the full line split at c = grid[g]: the rule of
    [c, ∞) followed by the mirrored rule of (-∞, c] (``folder``: as in :func:`split_rules`)."""
    cs, X, W = split_rules(n, folder)
    return (np.ascontiguousarray(np.concatenate([X, -X[::-1]], axis=1)),
            np.ascontiguousarray(np.concatenate([W, W[::-1]], axis=1)))


def split_index(c):
    """Row of the split-rule tables for split points c (clipped to ± SPLIT_C, rounded to the
    grid)."""
    return np.rint((np.clip(c, -SPLIT_C, SPLIT_C) + SPLIT_C) / SPLIT_DC).astype(np.intp)


def split_nodes(rules, c):
    """Nodes/weights (..., 2n) of ∫ φ(u) h(u) du split at c (rounded to the rule grid);
    a rule with one row (Gauss–Hermite) does not depend on c: its (k,) nodes are returned."""
    U, W = rules
    if U.shape[0] == 1:
        return U[0], W[0]
    g = split_index(c)
    return U[g], W[g]


@lru_cache(maxsize=128)
def rule_for_code(code: int, folder: Path | None = None):
    """(U, W) of a rule code: split rules (G, 2n) per split point for code 0 < n < HALF_CODE,
    Gauss–Hermite (1, k) for code −k (weights normalised to φ), or the half rule (1, n) of
    [0, ∞) with doubled weights for code HALF_CODE + n (``folder``: as in :func:`split_rules`)."""
    if code > HALF_CODE:
        cs, X, W = split_rules(code - HALF_CODE, folder)
        g = int(split_index(0.0))
        return X[g][None, :].copy(), 2.0 * W[g][None, :]
    if code > 0:
        return split_rules_full(code, folder)
    if folder is not None:  # numpy.polynomial: ~0.05 s of import
        return stored(folder, "hermite_rule", (int(code),), lambda: rule_for_code(code))
    x, w = np.polynomial.hermite_e.hermegauss(-code)
    return x[None, :], (w / math.sqrt(2 * math.pi))[None, :]


class _RuleBank:
    """The rules of every code asked for so far, flattened for the compiled kernel (grown when a
    call asks for a code it lacks; the rules already in it keep their offsets)."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.index: dict = {}
        self.U = self.W = np.empty(0)
        self.base = self.rows = self.width = np.empty(0, np.intp)
        self.umax = np.empty(0)
        self.lock = threading.Lock()

    def covering(self, codes) -> tuple:
        with self.lock:
            new = [c for c in sorted(set(codes) | {-1}) if c not in self.index]
            if new:
                rules = [rule_for_code(c, self.folder) for c in new]
                pos = self.U.size + np.cumsum([0] + [U.size for U, _ in rules[:-1]])
                self.U = np.concatenate([self.U] + [U.ravel() for U, _ in rules])
                self.W = np.concatenate([self.W] + [W.ravel() for _, W in rules])
                self.base = np.concatenate([self.base, np.asarray(pos, np.intp)])
                self.rows = np.concatenate([self.rows, np.array([U.shape[0] for U, _ in rules], np.intp)])
                self.width = np.concatenate([self.width, np.array([U.shape[1] for U, _ in rules], np.intp)])
                self.umax = np.concatenate([self.umax, [float(np.max(np.abs(U))) for U, _ in rules]])
                for c in new:
                    self.index[c] = len(self.index)
            return self.U, self.W, self.base, self.rows, self.width, self.umax


@lru_cache(maxsize=8)
def _rule_bank_of(folder: Path | None) -> _RuleBank:
    return _RuleBank(folder)


def rule_bank(codes: tuple, folder: Path | None = None):
    """The rules of the given codes (and the one-point rule, code −1) flattened for the
    compiled kernel: (bank, lut, lo) with bank = (U, W, base, rows, width, umax) and
    lut[code − lo] the rule's index in the bank.  One bank per tables' folder holds every code
    asked for so far (concatenating the rules of each call's codes anew cost ~0.09 s of a
    softplus network, |x|²/n0 = 3, C_W = 2); the same rules, at other offsets."""
    bank = _rule_bank_of(folder)
    arrays = bank.covering(codes)
    used = sorted(set(codes) | {-1})
    lo = used[0]
    lut = np.zeros(used[-1] - lo + 1, np.intp)
    for c in used:
        lut[c - lo] = bank.index[c]
    return arrays, lut, lo
