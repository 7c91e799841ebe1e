"""The exact cone method: integration over the orthant cones of the Cholesky coordinates.

For blocks F_b of m distinct variables with non-degenerate covariance C = L Lᵀ, z = L u,
u ~ N(0, I_m), the space of u is cut along the m hyperplanes z_j = 0 into the 2^m orthant
cones; on each cone every factor is one analytic branch (:mod:`.factors`), so kinks at z = 0
(ReLU family) are integrated exactly, and saturating functions whose transition sits at z = 0
(tanh, erf at large variance) converge much faster than Gauss–Hermite across the transition.
In polar form u = r ω,

    E = (2π)^{-m/2} Σ_cones ∫_{cone ∩ S^{m-1}} dω ∫_0^∞ r^{m-1} e^{-r²/2} Π_b F_b^{±}(r L_b·ω) dr.

* radial: the n_r-point Gauss rule of the weight r^{m-1} e^{-r²/2} (:func:`.rules.radial_rule`).
  When every branch is a polynomial of total degree P the rule with ⌊P/2⌋ + 1 points is used
  and the radial integral is exact.
* m = 1: the two half-lines; nothing angular.
* m = 2: the circle is cut at the four kink rays; Gauss–Legendre in the angle on each arc.
* m = 3, 4: each orthant cone is the simplicial cone spanned by the columns of ±L⁻¹; its
  spherical simplex is bisected along its longest edge until every edge is ≤
  :data:`MAX_EDGE_ANGLE`, then integrated with the collapsed Gauss–Jacobi rule
  (:func:`.rules.simplex_rule`) through the central projection
  ∫_cone h du = |det V| ∫_Δ |Vt|^{-m} ∫_0^∞ r^{m-1} h(r Vt/|Vt|) dr dt.

Nodes: :data:`DEFAULT_DEGREE_BY_DIM` (radial, angular) by m, or ``degree = n`` for both.
Accuracy (measured; docs/gaussian.md has the record): ReLU-family products exact to rounding
for m ≤ 2 (≤ 1e-14 against the arc-cosine kernels), radial part exact and angular part
≤ 1e-10 for m = 3, 4; smooth factors ≤ 1e-8 (m = 2), ~1e-10 (m = 3 at unit variance),
~5e-8 (m = 4 at unit variance, ≲ 1e-8 with degree=16).  All work is vectorised over tuples,
in chunks of :data:`CHUNK_POINTS` (tuple × point) evaluations.
"""
from __future__ import annotations

import itertools
import math
import warnings

import numpy as np

from .blocks import Block
from .context import Quadrature
from .linalg import cholesky_jittered
from .rules import HALF_CODE, gauss_legendre, radial_rule, rule_for_code, simplex_rule

__all__ = ["AccuracyWarning", "CHUNK_POINTS", "DEFAULT_DEGREE", "DEFAULT_DEGREE_BY_DIM", "MAX_EDGE_ANGLE",
           "SMOOTH_1D_NODES_PER_SLOPE", "chunks", "degrees", "integrate_1d_split", "integrate_exact",
           "smooth_1d_nodes", "warn_default_degree"]

#: Default number of quadrature nodes per dimension (radial and angular) for two-variable
#: integrals; ``degree=n`` sets both the radial and the angular degree to n for every m.
DEFAULT_DEGREE = 40
#: Default (radial, angular) nodes by the number m of distinct variables (after merging):
#: m = 1: half-line rule; m = 2: radial × Gauss–Legendre per arc; m = 3, 4: radial ×
#: per-direction degree of the collapsed simplex rule.
DEFAULT_DEGREE_BY_DIM = {1: (64, 0), 2: (DEFAULT_DEGREE, DEFAULT_DEGREE), 3: (16, 12), 4: (12, 8)}
#: One smooth variable (m = 1, no explicit degree): the half-line rule takes at least this many
#: nodes per unit of its slope √C · max|α| (2026-12-01), i.e. 16 ⌈slope⌉ when that exceeds the
#: default 64 (variance > 16).  At 64 nodes E[f²] of tanh, erf, gelu and their first two derivatives
#: was off by up to 2e-9 at variance 20, 1e-7 at 40, 3e-6 at 60 (erf''), 4e-5 at 100 (mpmath
#: references); with 16 ⌈slope⌉ nodes: ≤ 5e-13 at 60, ≤ 7e-14 at 100 (the rule of
#: :func:`integrate_1d_split`).
SMOOTH_1D_NODES_PER_SLOPE = 16
#: Maximal edge angle of a spherical simplex before it is bisected (m = 3, 4).
MAX_EDGE_ANGLE = math.radians(80.0)
#: Number of (tuple × quadrature point) evaluations per vectorised chunk.
CHUNK_POINTS = 1 << 21


class AccuracyWarning(UserWarning):
    """Gaussian expectations computed where their accuracy is below the README's (≤ 1e-8 of the
    scale Π⟨f²⟩^{1/2}): smooth factors beyond the fast path's variance bound or its ladders,
    integrated by this method at its default degree (2e-6 … 1e-3 of the scale measured at
    variance 45 for four variables; docs/gaussian.md)."""


def warn_default_degree(which: str, stacklevel: int = 2) -> None:
    """:class:`AccuracyWarning` for smooth tuples that the caller hands to this method at its
    default degree; ``which`` says which tuples.  One text per caller (no counts), so that the
    default filter shows it once, not once per layer."""
    warnings.warn(f"Gaussian expectations of smooth functions {which}: the cone method integrates "
                  "them at its default degree, to ~1e-6…1e-3 of their scale instead of 1e-8 (an "
                  "explicit degree raises its accuracy, at a cost; docs/gaussian.md)",
                  AccuracyWarning, stacklevel=stacklevel + 1)


def chunks(n: int, per: int, points: int = CHUNK_POINTS):
    """Slices of range(n) holding about ``points // per`` items each (``per`` points each)."""
    step = max(1, points // max(per, 1))
    for a in range(0, n, step):
        yield slice(a, min(n, a + step))


def degrees(blocks: list[Block], m: int, degree) -> tuple[int, int, int | None]:
    """(n_r, n_a, P): radial and angular nodes, and the total polynomial degree P of the
    branches (None if not polynomial); n_r = min(base, ⌊P/2⌋ + 1) makes the radial rule exact."""
    if degree is None:
        base, n_a = DEFAULT_DEGREE_BY_DIM[m]
    else:
        base = n_a = int(degree)
    P = 0
    for b in blocks:
        d = b.poly_degree()
        if d is None:
            P = None
            break
        P += d
    n_r = base if P is None else min(base, P // 2 + 1)
    return n_r, n_a, P


def integrate_exact(blocks: list[Block], C: np.ndarray, degree, quad: Quadrature) -> np.ndarray:
    """E[Π_b F_b(z_b)], z ~ N(0, C), C (n, m, m) non-degenerate, by the cone method."""
    m = len(blocks)
    if m == 0:
        return np.ones(C.shape[0])
    C, L = cholesky_jittered(C, m)
    n_r, n_a, P = degrees(blocks, m, degree)
    if P is not None and m >= 3 and degree is None:
        n_a = max(n_a, 20 if m == 3 else 12)  # polynomial branches: exact radial rule, cheap
    if m == 1:
        if P is None and degree is None:
            n = smooth_1d_nodes(blocks[0], L[:, 0, 0], n_r)
            if n > n_r:
                return integrate_1d_split(blocks[0], L[:, 0, 0], n, quad)
        return integrate_1d(blocks[0], L[:, 0, 0], n_r)
    if m == 2:
        if P is not None:
            n_a = min(n_a, max(16, P + 8))
        return integrate_2d(blocks, L, n_r, n_a)
    return integrate_simplices(blocks, L, n_r, n_a, quad)


def smooth_1d_nodes(block: Block, s: np.ndarray, base: int) -> int:
    """Nodes of the half-line rule for one smooth variable of standard deviations s (n,): base,
    or SMOOTH_1D_NODES_PER_SLOPE ⌈max s · max|α|⌉ where that is more."""
    if s.size == 0:
        return base
    a = max(float(np.max(np.abs(al))) for _, al in block.members)
    return max(base, SMOOTH_1D_NODES_PER_SLOPE * math.ceil(float(np.max(s)) * a))


def _both_half_lines(block: Block, s: np.ndarray, r: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Σ_i w_i (F⁺(s r_i) + F⁻(−s r_i)) per standard deviation s: a rule (r, w) of [0, ∞) applied
    to both half-lines."""
    zz = s[:, None] * r[None, :]
    return block.evaluate(zz, 1) @ w + block.evaluate(-zz, -1) @ w


def integrate_1d(block: Block, s: np.ndarray, n_r: int) -> np.ndarray:
    """E[F(s ξ)] = (2π)^{-1/2} Σ_± ∫_0^∞ F^±(±s r) e^{-r²/2} dr."""
    r, w = radial_rule(n_r, 0)
    return _both_half_lines(block, s, r, w) / math.sqrt(2 * math.pi)


def integrate_1d_split(block: Block, s: np.ndarray, n: int, quad: Quadrature) -> np.ndarray:
    """E[F(s ξ)] = Σ_± ∫_0^∞ F^±(±s u) φ(u) du by the n-point Gauss rule of φ on [0, ∞) of the
    split rules (:func:`.rules.rule_for_code`, the half rule): the radial rule of
    :func:`integrate_1d` (the same Gauss rule, up to rounding) reaches r ≈ 32 at n = 200, where
    the lambdified factors overflow to NaN (softplus''² at s = 12: e^{2z}/(1 + e^z)⁴); the split
    rules' nodes stay below 9.5, where the weight left out is < 1e-19."""
    u, w = rule_for_code(HALF_CODE + n, quad.tables)  # weights of φ on [0, ∞), doubled
    return _both_half_lines(block, s, u[0], w[0]) / 2


def integrate_2d(blocks: list[Block], L: np.ndarray, n_r: int, n_a: int) -> np.ndarray:
    """m = 2: the circle cut at the four rays where z₀ = 0 or z₁ = 0, n_a-point
    Gauss–Legendre in the angle on each arc, n_r-point radial rule (weight r e^{-r²/2})."""
    n = L.shape[0]
    r, wr = radial_rule(n_r, 1)
    x, wx = gauss_legendre(n_a)
    out = np.empty(n)
    for sl in chunks(n, 4 * n_a * n_r):
        Lc = L[sl]
        nt = Lc.shape[0]
        base = np.arctan2(Lc[:, :, 1], Lc[:, :, 0])  # (nt, 2) normal directions
        rays = np.concatenate([base + np.pi / 2, base - np.pi / 2], axis=1) % (2 * np.pi)
        rays.sort(axis=1)
        ends = np.concatenate([rays[:, 1:], rays[:, :1] + 2 * np.pi], axis=1)  # (nt, 4)
        half = (ends - rays) / 2
        mid = (ends + rays) / 2
        phi = mid[:, :, None] + half[:, :, None] * x[None, None, :]  # (nt, 4, n_a)
        wphi = half[:, :, None] * wx[None, None, :]
        om = np.stack([np.cos(phi), np.sin(phi)], axis=-1)  # (nt, 4, n_a, 2)
        d = np.einsum("tjk,tsqk->tsqj", Lc, om)  # (nt, 4, n_a, 2): L_j·ω
        om_mid = np.stack([np.cos(mid), np.sin(mid)], axis=-1)
        sgn = np.sign(np.einsum("tjk,tsk->tsj", Lc, om_mid))  # (nt, 4, 2)
        prod = np.ones((nt, 4, n_a, n_r))
        for j, b in enumerate(blocks):
            zz = d[:, :, :, j, None] * r[None, None, None, :]
            s = sgn[:, :, j][:, :, None, None]
            prod *= b.evaluate(zz, s)
        out[sl] = np.einsum("tsqr,tsq,r->t", prod, wphi, wr) / (2 * np.pi)
    return out


def integrate_simplices(blocks: list[Block], L: np.ndarray, n_r: int, n_s: int,
                        quad: Quadrature) -> np.ndarray:
    """m = 3, 4: the orthant cones (those where no block vanishes identically) as simplicial
    cones spanned by the columns of ±L⁻¹, bisected to edges ≤ MAX_EDGE_ANGLE, each integrated
    with the collapsed simplex rule (n_s per direction) × the radial rule (n_r)."""
    n, m = L.shape[0], L.shape[1]
    Linv = np.linalg.inv(L)
    r, wr = radial_rule(n_r, m - 1)
    t, wt = simplex_rule(m - 1, n_s)
    zero = {(j, s): blocks[j].is_zero(s) for j in range(m) for s in (1, -1)}
    Vs, tids, eps_list = [], [], []
    for eps in itertools.product((1, -1), repeat=m):
        live = np.ones(n, bool)
        for j, s in enumerate(eps):
            live &= ~zero[(j, s)]
        idx = np.nonzero(live)[0]
        if idx.size == 0:
            continue
        G = Linv[idx] * np.array(eps, float)[None, None, :]
        G = G / np.linalg.norm(G, axis=1, keepdims=True)
        Vs.append(G)
        tids.append(idx)
        eps_list.append(np.broadcast_to(np.array(eps, float), (idx.size, m)))
    if not Vs:
        return np.zeros(n)
    V = np.concatenate(Vs)
    tid = np.concatenate(tids)
    E = np.concatenate(eps_list)
    cos_max = math.cos(MAX_EDGE_ANGLE)
    iu = np.triu_indices(m, 1)
    for _ in range(40):
        G = np.einsum("nki,nkj->nij", V, V)[:, iu[0], iu[1]]  # (ns, npairs) cosines
        worst = np.argmin(G, axis=1)
        split = G[np.arange(G.shape[0]), worst] < cos_max
        if not np.any(split):
            break
        si = np.nonzero(split)[0]
        a, b = iu[0][worst[si]], iu[1][worst[si]]
        va = V[si, :, a]
        vb = V[si, :, b]
        mid = va + vb
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        A = V[si].copy()
        B = V[si].copy()
        A[np.arange(si.size), :, b] = mid
        B[np.arange(si.size), :, a] = mid
        keep = ~split
        V = np.concatenate([V[keep], A, B])
        tid = np.concatenate([tid[keep], tid[si], tid[si]])
        E = np.concatenate([E[keep], E[si], E[si]])
    quad.count("simplices", V.shape[0])
    quad.count("tuples", n)
    detV = np.abs(np.linalg.det(V))
    total = np.zeros(n)
    Q = t.shape[0]
    for sl in chunks(V.shape[0], Q * n_r):
        Vc = V[sl]
        x = np.einsum("nij,qj->nqi", Vc, t)  # (ns, Q, m)
        nx = np.linalg.norm(x, axis=2)
        om = x / nx[:, :, None]
        jac = detV[sl, None] / nx ** m * wt[None, :]
        Lc = L[tid[sl]]
        d = np.einsum("nij,nqj->nqi", Lc, om)  # z-directions
        prod = None
        for j, blk in enumerate(blocks):
            bsub = blk.take(tid[sl])
            zz = d[:, :, j, None] * r[None, None, :]
            s = E[sl, j][:, None, None]
            v = bsub.evaluate(zz, s)
            prod = v if prod is None else prod * v
        val = np.sum((prod @ wr) * jac, axis=1)
        total += np.bincount(tid[sl], weights=val, minlength=n)
    return total / (2 * np.pi) ** (m / 2)
