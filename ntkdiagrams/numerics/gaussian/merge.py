"""Coinciding inputs and Dirac deltas: reduction of a tuple to distinct variables.

1. **Merging.**  For an index tuple the k slots carry the k×k covariance C_st = K[a_s, a_t].
   Slots whose variables coincide up to a factor, 1 − |ρ_st| < :data:`MERGE_TOL` (a_s = a_t, or
   collinear inputs), are merged: z_t = β z_s with β = C_st/C_ss, and the product of their
   factors becomes one block of z_s (members f(β z_s), :mod:`.blocks`).  A variable of zero
   variance is the constant 0 (its factors are taken at 0, Heaviside(0) = 1/2).  What remains is
   m ≤ k distinct variables; a covariance that is still singular (z₃ = z₁ + z₂) gets a jitter of
   1e-12 · max C_ss on its diagonal (:func:`.linalg.cholesky_jittered`).

2. **Dirac deltas** are never smoothed.  A factor is f = g + c δ(z) (:mod:`.factors`); on a
   merged variable f(βz) contributes (c/|β|) δ(z), and the delta weight of a merged block is
   Σ_t w_t Π_{u≠t} g_u(0).  For every set D of delta-carrying variables,

       E[δ(z_D) Π_{b∉D} g_b(z_b)] = p_D(0) · E[Π_{b∉D} g_b(z_b) | z_D = 0],
       p_D(0) = (2π)^{-|D|/2} det(C_DD)^{-1/2},

   and the conditional law is N(0, C_RR − C_RD C_DD⁻¹ C_DR) (Schur complement), which is
   reduced again as in 1.  Two deltas on the same variable (⟨σ''_α σ''_α⟩ for ReLU) diverge:
   such entries are NaN and a RuntimeWarning is issued.
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np

from .blocks import Block
from .context import Quadrature
from .paths import integrate

__all__ = ["MERGE_TOL", "delta_expand", "expect", "group_patterns"]

#: Two slot variables with 1 − |ρ| below this are treated as proportional (merged).
MERGE_TOL = 1e-14


def group_patterns(C: np.ndarray):
    """Per tuple: zero-variance flags and proportional pairs; yields (sel, groups, zeros) for
    each pattern: the tuples ``sel`` that share it, the groups of proportional slots (each
    sorted, its first slot the representative) and the slots of zero variance."""
    n, m, _ = C.shape
    d = np.einsum("nii->ni", C)
    scale = np.max(d, axis=1, keepdims=True)
    zero = d <= 1e-15 * np.maximum(scale, 1e-300)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    key = np.zeros(n, np.int64)
    bit = 0
    for i in range(m):
        key |= zero[:, i].astype(np.int64) << bit
        bit += 1
    for i, j in pairs:
        denom = np.sqrt(np.maximum(d[:, i] * d[:, j], 1e-300))
        prop = (1 - np.abs(C[:, i, j]) / denom < MERGE_TOL) & ~zero[:, i] & ~zero[:, j]
        key |= prop.astype(np.int64) << bit
        bit += 1
    for k in np.unique(key):
        sel = np.nonzero(key == k)[0]
        zeros = [i for i in range(m) if (k >> i) & 1]
        parent = list(range(m))

        def find(x):
            while parent[x] != x:
                x = parent[x]
            return x
        b = m
        for i, j in pairs:
            if (k >> b) & 1:
                ri, rj = find(i), find(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
            b += 1
        groups: dict[int, list[int]] = {}
        for i in range(m):
            if i not in zeros:
                groups.setdefault(find(i), []).append(i)
        yield sel, sorted(groups.values()), zeros


def expect(blocks: list[Block], C: np.ndarray, deltas: list[np.ndarray] | None,
           degree, method: str, quad: Quadrature) -> np.ndarray:
    """E[Π_b (g_b(z_b) + w_b δ(z_b))] for z ~ N(0, C), C (n, m, m), vectorised over n.

    ``deltas`` are the per-block delta weights w_b (None: no deltas)."""
    n, m = C.shape[0], len(blocks)
    if m == 0:
        return np.ones(n)
    out = np.empty(n)
    for sel, groups, zeros in group_patterns(C):
        Cs = C[sel]
        const = np.ones(sel.size)
        divergent = np.zeros(sel.size, bool)
        for i in zeros:  # deterministic z = 0
            const *= blocks[i].take(sel).value_at0()
            if deltas is not None:
                divergent |= deltas[i][sel] != 0
        new_blocks, new_w, reps = [], [], []
        for g in groups:
            rep = g[0]
            members, w_single, w_double = [], np.zeros(sel.size), np.zeros(sel.size)
            parts = []
            for t in g:
                beta = Cs[:, rep, t] / Cs[:, rep, rep]
                bt = blocks[t].take(sel)
                for f, a in bt.members:
                    members.append((f, a * beta))
                wt = deltas[t][sel] / np.abs(beta) if deltas is not None else np.zeros(sel.size)
                parts.append((wt, bt.value_at0()))
            # delta weight of the merged block: Σ_t w_t Π_{u≠t} g_u(0); δ² terms diverge
            for ti, (wt, _) in enumerate(parts):
                prod = wt.copy()
                for ui, (_, g0) in enumerate(parts):
                    if ui != ti:
                        prod *= g0
                w_single += prod
                for ui in range(ti + 1, len(parts)):
                    w_double += wt * parts[ui][0]
            divergent |= w_double != 0
            new_blocks.append(Block(members))
            new_w.append(w_single)
            reps.append(rep)
        Cr = Cs[:, reps][:, :, reps]
        if deltas is None or not any(np.any(w != 0) for w in new_w):
            val = integrate(new_blocks, Cr, degree, method, quad)
        else:
            val = delta_expand(new_blocks, new_w, Cr, degree, method, quad)
        res = const * val
        if np.any(divergent):
            warnings.warn("Gaussian expectation with two Dirac deltas on the same variable "
                          "diverges; those entries are NaN", RuntimeWarning, stacklevel=3)
            res[divergent] = np.nan
        out[sel] = res
    return out


def delta_expand(blocks: list[Block], weights: list[np.ndarray], C: np.ndarray, degree,
                 method: str, quad: Quadrature) -> np.ndarray:
    """Σ_D Π_{b∈D} w_b · p_D(0) · E[Π_{b∉D} g_b | z_D = 0] over the sets D of blocks with a
    delta weight (module docstring, 2.)."""
    n, m = C.shape[0], len(blocks)
    total = np.zeros(n)
    candidates = [b for b in range(m) if np.any(weights[b] != 0)]
    for r in range(len(candidates) + 1):
        for D in itertools.combinations(candidates, r):
            R = [b for b in range(m) if b not in D]
            w = np.ones(n)
            for b in D:
                w = w * weights[b]
            live = w != 0
            if not np.any(live):
                continue
            idx = np.nonzero(live)[0]
            Cl = C[idx]
            if D:
                Dl = list(D)
                CDD = Cl[:, Dl][:, :, Dl]
                det = np.linalg.det(CDD)
                with np.errstate(divide="ignore", invalid="ignore"):
                    dens = (2 * np.pi) ** (-len(D) / 2) / np.sqrt(det)
                if R:
                    CRD = Cl[:, R][:, :, Dl]
                    CRR = Cl[:, R][:, :, R]
                    good = det > 0
                    Ccond = CRR.copy()
                    if np.any(good):
                        sol = np.linalg.solve(CDD[good], np.swapaxes(CRD[good], 1, 2))
                        Ccond[good] = CRR[good] - CRD[good] @ sol
                    Ccond = 0.5 * (Ccond + np.swapaxes(Ccond, 1, 2))
                    # clip tiny negative diagonal from rounding
                    di = np.einsum("nii->ni", Ccond)
                    di[...] = np.maximum(di, 0.0)
                    sub = [blocks[b].take(idx) for b in R]
                    inner = expect(sub, Ccond, None, degree, method, quad)
                else:
                    inner = np.ones(idx.size)
                val = dens * inner
            else:
                val = integrate([blocks[b].take(idx) for b in range(m)], Cl, degree, method, quad)
            total[idx] += w[idx] * val
    return total
