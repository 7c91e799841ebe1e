"""Blob contractions by Gaussian integration by parts (for activations with kinks).

For a single neuron site, a blob contracts its k derivative legs with one insertion F:

    R_{α…} = Σ_{β1…βk ∈ inputs of F} T_{…β…} ⟨∂_{β1}⋯∂_{βk} F⟩_K .

Integration by parts moves every derivative onto the Gaussian weight,

    ⟨∂_{γ1}⋯∂_{γk} F⟩_K = ⟨F(y) h_{γ1…γk}(y)⟩_K ,   h_γ = (−1)^k e^{yᵀPy/2} ∂_γ e^{−yᵀPy/2},  P = K̃⁻¹,

with y the preactivations on the *distinct* inputs that F touches and K̃ their covariance.  No
derivative of σ is needed, so ReLU-like activations (whose σ⁗ is a derivative of a Dirac
delta, and whose Leibniz pieces multiply deltas at one point when inputs coincide) are handled
exactly.  Coinciding inputs are collapsed first: when α1 and α2 are the same input,
Σ_{β∈{α1,α2}^k} T_β ∂_β F = T_{u…u} d^k F̃/dy^k with F̃(y) = F(y, y), by the chain rule; in
general a site's slots on one input are one variable y_v carrying the product F̃_v of their
factors, and a leg differentiates each distinct input once.

The multivariate Hermite polynomials obey h_{c+e_i} = w_i h_c − Σ_j P_ij c_j h_{c−e_j}
(w = Py; c the multi-index of derivative counts per variable), so with the moments

    M_p = ⟨Π_v F̃_v(y_v) y_v^{p_v}⟩_K ,          X_c(p) = ⟨F̃ y^p h_c(y)⟩_K ,

    X_0(p) = M_p ,   X_{c+e_i}(p) = Σ_j P_ij [X_c(p + e_j) − c_j X_{c−e_j}(p)] ,

and ⟨∂^c F̃⟩ = X_c(0): a numeric recursion over the multi-indices, vectorised over the index
tuples, with no symbolic polynomial (an earlier version built Q = Σ_γ t_γ h_γ with sympy: its
cost grows like r^k and was prohibitive at k = 8).  The moments M_p (|p| ≤ k, |p| ≡ k mod 2)
are expectation tensors of the factors F̃_v z^{p_v} (:mod:`ntkdiagrams.numerics.gaussian`):
for the ReLU family closed-form orthant moments.  :func:`contract_blob` does this for any blob
sum: several sites, tensors with fixed labels (the H leg of D and F); a product of blob tensors
(two V blobs on one site, order 1/n²) is one tensor, their outer product, with the args
concatenated.

Limits: a site's slots on one index tuple may touch at most 4 distinct inputs (the Gaussian
integration's limit, :data:`ntkdiagrams.numerics.gaussian.tensor.MAX_VARIABLES`); their
covariance K̃ must be non-singular (smallest eigenvalue of the correlation matrix above
:data:`SINGULAR_CORRELATION`), else InputError (two anti-parallel inputs, four inputs in three
dimensions at C_b = 0); any derivative order k (k ≤ 8 tested).  Cost: Σ over the coincidence
patterns of a site of the number of moments (r = 2 labels, k = 8: 30 tensors; r = 4, k = 6:
~550) and r^k terms of the final contraction.

:func:`q_polynomial` (used by :mod:`ntkdiagrams.generation` to print the contraction of one- and
two-label sites) builds the same polynomial symbolically.
"""
from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import sympy as sp

from .activations import z as zsym
from ..errors import InputError, UnsupportedError
from .gaussian.tensor import MAX_VARIABLES

__all__ = ["CONTRACTION_ELEMENTS", "SINGULAR_CORRELATION", "contract_blob", "derivative_moments",
           "multi_indices", "q_polynomial"]

#: Distinct inputs of a site whose correlation matrix has a smallest eigenvalue at or below this
#: are refused (for two inputs: |ρ| ≥ 1 − 1e-10, the bound of the earlier pair version).
SINGULAR_CORRELATION = 1e-10
#: (index tuple × leg assignment) elements per chunk of the final contraction
CONTRACTION_ELEMENTS = 1 << 20


@lru_cache(maxsize=None)
def q_polynomial(k: int, r: int):
    """Q(y) = Σ_γ t_γ h_γ(y) for r variables as sympy data: (monomial exponents, coefficient
    expressions, γ tuples, P symbols P{i}{j} in upper-triangular order, t symbols in product order);
    used by :mod:`ntkdiagrams.generation` to print the polynomial.  Built by the recurrence
    h_{γ i} = w_i h_γ − ∂_i h_γ (w = Py), each h_γ once per prefix."""
    ys = sp.symbols(f"y0:{r}")
    P = sp.Matrix(r, r, lambda i, j: sp.Symbol(f"P{min(i, j)}{max(i, j)}"))
    pvars = [P[i, j] for i in range(r) for j in range(i, r)]
    dom = sp.ZZ[tuple(pvars)] if pvars else sp.ZZ
    w = [sp.Poly(sum(P[i, j] * ys[j] for j in range(r)), *ys, domain=dom) for i in range(r)]
    h = {(): sp.Poly(1, *ys, domain=dom)}
    for level in range(1, k + 1):
        for g in itertools.product(range(r), repeat=level):
            prev = h[g[:-1]]
            i = g[-1]
            h[g] = w[i] * prev - prev.diff(ys[i])
    gammas = list(itertools.product(range(r), repeat=k))
    ts = sp.symbols(f"t0:{len(gammas)}")
    # Q = Σ_γ t_γ h_γ collected per monomial of y (the distinct t_γ never cancel), the
    # coefficients in the form sympy's expand gives them
    terms: dict = {}
    for t, g in zip(ts, gammas):
        for mono, c in h[g].terms():
            terms.setdefault(mono, []).extend(sp.Mul(t, a) for a in sp.Add.make_args(dom.to_sympy(c)))
    monos = sorted(terms, reverse=True)
    return monos, [sp.Add(*terms[mo]) for mo in monos], gammas, pvars, ts


@lru_cache(maxsize=None)
def multi_indices(m: int, top: int) -> tuple:
    """The multi-indices p ∈ ℕ^m with |p| ≤ top, ordered by |p| then lexicographically (so that
    those with |p| ≤ t are a prefix for every t)."""
    out = []
    for total in range(top + 1):
        out += sorted((p for p in itertools.product(range(total + 1), repeat=m) if sum(p) == total),
                      reverse=True)
    return tuple(out)


@lru_cache(maxsize=None)
def _recursion_plan(m: int, k: int):
    """Index data of the recursion X_{c+e_i}(p) = Σ_j P_ij [X_c(p + e_j) − c_j X_{c−e_j}(p)]:
    (multi-indices p, shift[j][p] = position of p + e_j (−1 beyond |p| = k), count[t] = number of
    p with |p| ≤ t, the steps (c, i, c − e_i) of all c with 1 ≤ |c| ≤ k in order of |c|)."""
    ps = multi_indices(m, k)
    pos = {p: n for n, p in enumerate(ps)}
    shift = np.full((m, len(ps)), -1, np.intp)
    for n, p in enumerate(ps):
        for j in range(m):
            q = p[:j] + (p[j] + 1,) + p[j + 1:]
            shift[j, n] = pos.get(q, -1)
    count = [sum(1 for p in ps if sum(p) <= t) for t in range(k + 1)]
    steps = []
    for c in multi_indices(m, k)[1:]:
        i = next(j for j in range(m) if c[j])
        steps.append((c, i, c[:i] + (c[i] - 1,) + c[i + 1:]))
    return ps, shift, count, steps


def derivative_moments(moments: np.ndarray, P: np.ndarray, k: int) -> dict:
    """⟨∂^c F̃⟩ for every multi-index c with |c| = k, from the moments M_p (n, len(ps)) of
    :func:`multi_indices` (m, k) order and the precisions P = K̃⁻¹ (n, m, m) of n index tuples:
    the recursion of the module docstring.  Returns {c: (n,)}."""
    m = P.shape[1]
    ps, shift, count, steps = _recursion_plan(m, k)
    X = {(0,) * m: moments}
    for c, i, prev in steps:
        n_new = count[k - sum(c)]
        Xp = X[prev]
        acc = np.zeros((moments.shape[0], n_new))
        for j in range(m):
            term = Xp[:, shift[j, :n_new]]
            if prev[j]:
                low = prev[:j] + (prev[j] - 1,) + prev[j + 1:]
                term = term - prev[j] * X[low][:, :n_new]
            acc += P[:, i, j, None] * term
        X[c] = acc
    return {c: X[c][:, 0] for c in multi_indices(m, k) if sum(c) == k}


def _same_inputs(K: np.ndarray) -> np.ndarray:
    """Pairs of inputs that are the same Gaussian variable (ρ = 1 and equal variances)."""
    d = np.sqrt(np.diag(K))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = K / np.outer(d, d)
    same = np.isclose(rho, 1.0, rtol=0, atol=1e-12) & np.isclose(d[:, None], d[None, :], rtol=1e-12)
    np.fill_diagonal(same, True)
    return same


def _site_table(funcs: tuple, k: int, K: np.ndarray, expect, same: np.ndarray):
    """⟨∂ F⟩ of one site with r slots (factors ``funcs``) and k legs, on every tuple of its
    inputs: (table (N^r, S), codes {slot counts s (r,), |s| = k: column}), table[t, s] =
    ⟨Π_slots ∂^{s_j}_{(slot j's input)} F⟩ where every slot with s_j > 0 is the first slot of its
    input in the tuple (coinciding slots are one variable), 0 where another slot of the same input
    carries a leg (so that each distinct input is differentiated once)."""
    N, r = K.shape[0], len(funcs)
    slot_counts = [s for s in multi_indices(r, k) if sum(s) == k]
    codes = {s: n for n, s in enumerate(slot_counts)}
    grid = np.indices((N,) * r).reshape(r, -1).T          # (N^r, r) inputs of the slots
    # class of each slot: the first slot with the same input
    cls = np.empty_like(grid)
    for j in range(r):
        cls[:, j] = j
        for i in range(j - 1, -1, -1):
            hit = same[grid[:, i], grid[:, j]]
            cls[hit, j] = cls[hit, i]
    table = np.zeros((grid.shape[0], len(slot_counts)))
    keys, inv = np.unique(cls, axis=0, return_inverse=True)
    patterns = []
    for g in range(keys.shape[0]):   # every pattern is checked before any moment is computed
        key, tid = keys[g], np.nonzero(np.ravel(inv) == g)[0]
        reps = sorted(set(int(c) for c in key))
        ins = grid[tid][:, reps]                               # (n, m) distinct inputs
        if len(reps) > MAX_VARIABLES:
            raise UnsupportedError(
                f"a blob site on {len(reps)} distinct inputs {ins[0].tolist()}; integration by parts "
                f"needs the site's moments, Gaussian expectations over at most {MAX_VARIABLES} distinct "
                "variables")
        Kt = K[ins[:, :, None], ins[:, None, :]]
        if len(reps) > 1:
            d = np.sqrt(np.einsum("nii->ni", Kt))
            with np.errstate(divide="ignore", invalid="ignore"):
                R = Kt / d[:, :, None] / d[:, None, :]
            lam = np.linalg.eigvalsh(np.nan_to_num(R))[:, 0]
            bad = ~(lam > SINGULAR_CORRELATION)
            if np.any(bad):
                raise InputError(
                    f"inputs {sorted(set(ins[np.argmax(bad)].tolist()))} of a blob site have a singular "
                    "kernel (parallel or anti-parallel inputs, or more inputs than dimensions at C_b = 0); "
                    "the integration-by-parts form for activations with kinks needs linearly "
                    "independent directions")
        patterns.append((key, tid, reps, ins, Kt))
    for key, tid, reps, ins, Kt in patterns:
        m = len(reps)
        prods = [sp.Mul(*[funcs[j] for j in range(r) if key[j] == v]) for v in reps]
        ps = multi_indices(m, k)
        M = np.zeros((tid.size, len(ps)))
        for n, p in enumerate(ps):
            if (sum(p) - k) % 2:
                continue   # h_c has the parity of |c|: moments of the other parity do not enter
            T = expect([sp.expand(f * zsym ** q) for f, q in zip(prods, p)], K)
            M[:, n] = T[tuple(ins.T)]
        D = derivative_moments(M, np.linalg.inv(Kt), k)
        for s, col in codes.items():
            on = [j for j in range(r) if s[j]]
            if all(key[j] == j for j in on):
                c = tuple(sum(s[j] for j in range(r) if key[j] == v) for v in reps)
                table[tid, col] = D[c]
    return table, codes


def contract_blob(tensor_arr: np.ndarray, args: tuple, sites: list, K: np.ndarray, expect,
                  axes_labels: tuple) -> np.ndarray:
    """Σ_β T[args] Π_sites ⟨∂_{β∈site} F_site⟩ for every tuple of the target inputs.

    args: per tensor slot ("leg", q) for a summed blob leg or ("label", α) for a fixed label.
    sites: per site (labels, funcs, legs): the site's input labels (any number; on each index
        tuple at most 4 distinct inputs), its univariate factors (one per label), the blob legs
        acting on it.
    expect: (factors, K) → the expectation tensor of the factors over all index tuples.
    axes_labels: the labels of the returned array's axes.
    Coinciding inputs inside a site are collapsed before integrating by parts (see module
    docstring), so activations with kinks need no derivative of σ at all.  A product of blob
    tensors is passed as their outer product with the args concatenated."""
    K = np.asarray(K, float)
    N = K.shape[0]
    naxes = len(axes_labels)
    grid = np.indices((N,) * naxes).reshape(naxes, -1)
    val = {lab: grid[i] for i, lab in enumerate(axes_labels)}
    n_t = grid.shape[1]
    same = _same_inputs(K)
    site_data = []   # (slot inputs (r, n_t), site-tuple values (n_t, S), codes, legs)
    for labels, funcs, legs in sites:
        labels, legs = tuple(labels), tuple(legs)
        if len(funcs) != len(labels) or not labels:
            raise InputError(f"a blob site needs one factor per label; got labels {labels}, factors {funcs}")
        table, codes = _site_table(tuple(funcs), len(legs), K, expect, same)
        slots = np.stack([val[lab] for lab in labels])          # (r, n_t)
        tid = np.ravel_multi_index(tuple(slots), (N,) * len(labels))
        site_data.append((slots, table[tid], codes, legs))
    nlegs = sum(len(s[3]) for s in site_data)
    leg_site = {}
    for si, (_sl, _t, _c, legs) in enumerate(site_data):
        for pos, q in enumerate(legs):
            leg_site[q] = (si, pos)
    if set(leg_site) != set(range(nlegs)):
        raise InputError(f"blob legs must be numbered 0 … {nlegs - 1} across the sites")
    # every assignment γ of each leg to a slot of its site; chunks of assignments
    choices = [range(site_data[leg_site[q][0]][0].shape[0]) for q in range(nlegs)]
    assignments = np.array(list(itertools.product(*choices)), np.intp).reshape(-1, nlegs) if nlegs \
        else np.zeros((1, 0), np.intp)
    weights = []
    for slots, _t, codes, legs in site_data:   # column of each assignment in the site's table
        r = slots.shape[0]
        counts = np.zeros((assignments.shape[0], r), np.intp)
        for q in legs:
            np.add.at(counts, (np.arange(assignments.shape[0]), assignments[:, q]), 1)
        weights.append(np.array([codes[tuple(row)] for row in counts.tolist()], np.intp))
    out = np.zeros(n_t)
    step = max(1, CONTRACTION_ELEMENTS // max(n_t, 1))
    for a in range(0, assignments.shape[0], step):
        sel = slice(a, a + step)
        gam = assignments[sel]                                  # (g, nlegs)
        factor = np.ones((gam.shape[0], n_t))
        for si, (slots, vals, _c, _legs) in enumerate(site_data):
            factor *= vals[:, weights[si][sel]].T
        idx = []
        for kind, x in args:
            if kind == "leg":
                si, _pos = leg_site[x]
                idx.append(site_data[si][0][gam[:, x]])             # (g, n_t) inputs
            else:
                idx.append(np.broadcast_to(val[x], factor.shape))
        out += np.sum(factor * tensor_arr[tuple(idx)], axis=0)
    return out.reshape((N,) * naxes)
