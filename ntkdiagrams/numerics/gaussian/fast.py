"""The fast path for smooth factors: nested split Gauss rules in the Cholesky coordinates.

For blocks of m ≥ 2 distinct variables whose factors are all smooth, C = L Lᵀ, z = L u,

    E[Π_k F_k(z_k)] = ∫ φ(u_0) du_0 … ∫ φ(u_{m−1}) du_{m−1} Π_k F_k(Σ_{j≤k} L_kj u_j),

integrated coordinate by coordinate (the iterated analogue of the orthant splitting of the
cone method, :mod:`.cone`):

* each outer coordinate u_j gets its own rule from the ladders of :mod:`.ladder` (by the slope
  with which the factors vary along it): a split rule — the integral over u_j given
  u_0 … u_{j−1} split at the zero crossing of z_j, each half-line with a Gauss rule of the
  weight φ on [c, ∞) (:mod:`.rules`) — or k-point Gauss–Hermite for small slopes.  Strongly
  correlated inputs (deep networks) leave small slopes on the inner coordinates, so a
  4-variable tuple needs ~1e3 points instead of (2n)³;
* for m ≥ 3 the last variable is one unscaled factor f and its integral G(μ, s) = E[f(μ + s ξ)]
  is read from a table (:mod:`.table`); it is moved last when some block qualifies;
* where several slots carry the same single factor, each tuple takes the order of those slots
  with the fewest points (all orders are tried, ties go to the first order tried);
* tuples with a slope beyond the ladder are integrated by the cone method, unless
  ``force`` (``method="fast"``: the last rung instead);
* ``degree = n`` replaces the ladders by n nodes per side in every coordinate.

Accuracy (default settings; docs/gaussian.md has the measurements): on the kernels of a tanh
network ⟨tanh⁴⟩ typical 1e-8, worst 5e-8 relative (the floor is the table interpolation);
m = 2 pairs ≤ 5e-13 against the cone method at degree 60; random covariances ≤ 1e-6 (m = 3),
3e-6 (m = 4) where two inputs are nearly collinear; effective variances 3.2 … 20 (issue 15: the
wide rungs of :mod:`.ladder`, wide table rows of :mod:`.table`) ≲ 3e-8 of the scale
Π⟨f²⟩^{1/2}, 3e-7 with a nearly collinear pair.

The nested sum runs in numpy (:mod:`.nested`), or in the compiled kernel (:mod:`.compiled`)
when ``quad.jit`` is set, numba is installed, every outer factor has an exponential form
or an elementary form (:mod:`.elementary`) and the call has at least ``quad.compiled_min_points``
quadrature points; the two agree to rounding.  Chunks of tuples
(numpy) or interleaved groups (compiled) run in the threads of ``quad.pool``: they are
independent and write disjoint entries, so the numbers do not depend on the number of threads.
"""
from __future__ import annotations

import itertools

import numpy as np

from .blocks import Block
from .cone import chunks, integrate_exact
from .context import Quadrature
from .factors import EXPO_MAX_EXPONENT
from .ladder import (FAST_LADDER, FAST_LADDER_M2, FAST_LADDER_M34, FAST_SLACK, block_scales, points_per_tuple,
                     rule_codes, slopes)
from .linalg import cholesky_jittered
from .nested import nested_sum
from .rules import SPLIT_C, SPLIT_DC, rule_bank, rule_for_code
from .table import TABLE_H_MU, TABLE_H_S, TABLE_REACH, g_table, table_extent

__all__ = ["FAST_CHUNK_POINTS", "integrate_fast", "integrate_nodes", "nested_compiled"]

#: quadrature points per chunk of the fast path (arrays of ~1 MB: the innermost level makes
#: ~20 passes over them, which is faster from cache than from memory)
FAST_CHUNK_POINTS = 1 << 17


def integrate_fast(blocks: list[Block], C: np.ndarray, degree, quad: Quadrature, slack=None,
                   force: bool = False) -> np.ndarray:
    """Smooth factors, m ≥ 2 distinct variables: nested split Gauss rules in the Cholesky
    coordinates (z = L u); for m ≥ 3 the integral over the last variable is read from a table."""
    n, m = C.shape[0], len(blocks)
    out = np.empty(n)
    # the innermost variable should be a single unscaled factor (tabulated)
    single = [j for j, b in enumerate(blocks) if len(b.members) == 1 and np.all(b.members[0][1] == 1)]
    if m < 3:
        single = []
    order = list(range(m))
    if single:
        last = single[-1]
        order = [j for j in range(m) if j != last] + [last]
    blocks = [blocks[j] for j in order]
    C = C[:, order][:, :, order]
    C, L = cholesky_jittered(C, m)
    quad.count("fast_tuples", n)
    outer = m - 1 if single else m
    if degree is None:
        sl = FAST_SLACK[m] if slack is None else slack
        split_ladder = FAST_LADDER_M2 if m == 2 else FAST_LADDER_M34
        scales = block_scales(blocks)
        nodes = rule_codes(slopes(blocks, L, scales), outer, sl, split_ladder)
        # identical single unscaled factors may be taken in any order: per tuple, the order
        # of those slots with the fewest quadrature points
        same = [j for j, b in enumerate(blocks) if len(b.members) == 1
                and b.members[0][0] is blocks[-1].members[0][0] and np.all(b.members[0][1] == 1)]
        if single and len(same) > 1:
            # all other orders at once: (P·n) stacked covariances, one Cholesky, one ladder
            orders = []
            for perm in itertools.permutations(same):
                if list(perm) != same:
                    order = list(range(m))
                    for a, b in zip(same, perm):
                        order[a] = b
                    orders.append(order)
            P = len(orders)
            Cp = np.concatenate([C[:, o][:, :, o] for o in orders])
            Cp, Lp = cholesky_jittered(Cp, m)
            # the blocks do not move (only identical unscaled slots are exchanged)
            nodes_p = rule_codes(slopes(blocks, Lp, np.tile(scales, (P, 1))), outer, sl,
                                 split_ladder)
            cost_p = points_per_tuple(nodes_p).reshape(P, n)
            # the first order with the fewest points (ties: the order tried first)
            cost = points_per_tuple(nodes)
            best = np.argmin(cost_p, axis=0)
            better = cost_p[best, np.arange(n)] < cost
            if np.any(better):
                k = best[better] * n + np.nonzero(better)[0]
                C[better], L[better], nodes[better] = Cp[k], Lp[k], nodes_p[k]
        beyond = np.any(nodes == 0, axis=1)
        if np.any(beyond):  # slopes too large for the ladder: the exact cone method
            nodes[nodes == 0] = FAST_LADDER[-1][1]
            if not force:
                quad.count("fast_tuples", -int(np.sum(beyond)))
                out[beyond] = integrate_exact([b.take(beyond) for b in blocks], C[beyond], None, quad)
                keep = ~beyond
                if np.any(keep):
                    out[keep] = integrate_nodes([b.take(keep) for b in blocks], L[keep],
                                                nodes[keep], m, single, quad)
                return out
    else:
        nodes = np.full((n, outer), int(degree), np.intp)
    out[:] = integrate_nodes(blocks, L, nodes, m, single, quad)
    return out


def integrate_nodes(blocks: list[Block], L: np.ndarray, nodes: np.ndarray, m: int, single,
                    quad: Quadrature) -> np.ndarray:
    """The nested rule with the given rule codes (T, outer) per tuple: the compiled kernel
    where it applies, else numpy over chunks of tuples that share their codes."""
    out = np.empty(L.shape[0])
    tab, M = None, 0.0
    if single:
        M, S = table_extent(L, m)
        tab = g_table(blocks[-1].members[0][0], M, S)
    jit = nested_compiled(blocks, L, nodes, m, single, tab, M, quad)
    if jit is not None:
        return jit
    keys, inv = np.unique(nodes, axis=0, return_inverse=True)
    inv = np.ravel(inv)
    jobs = []
    for gi, key in enumerate(keys):
        idx = np.nonzero(inv == gi)[0]
        rules = [rule_for_code(int(d)) for d in key]
        per = int(points_per_tuple(key[None])[0])
        for sl in chunks(idx.size, per, FAST_CHUNK_POINTS):
            jobs.append((idx[sl], rules))

    def run(job):
        ii, rules = job
        out[ii] = nested_sum(blocks, L[ii], ii, rules, tab, M, quad)
    pool = quad.pool
    if pool is None or len(jobs) < 2:
        for job in jobs:
            run(job)
    else:
        list(pool.map(run, jobs))  # numpy releases the GIL inside the array operations
    return out


def nested_compiled(blocks: list[Block], L: np.ndarray, nodes: np.ndarray, m: int, single, tab,
                    M: float, quad: Quadrature):
    """The nested rule by the compiled kernel of :mod:`.compiled`, or None where it does not
    apply: ``quad.jit`` off (``Settings.jit``, NTKDIAGRAMS_JIT=0), numba not installed, or an
    outer factor with neither an exponential form R(e^{κz}) nor an elementary form
    (:mod:`.elementary`: GELU, erf, softplus, swish, sin, …), or a call of fewer than
    ``quad.compiled_min_points`` quadrature points (:data:`.context.COMPILED_MIN_POINTS`: the
    numpy path costs less than loading the kernel).  Same rules, same numbers to rounding."""
    if not quad.jit or np.sum(points_per_tuple(nodes)) < quad.compiled_min_points:
        return None
    from . import compiled as gj  # numba is imported only where the kernel is asked for
    if not gj.available():
        return None
    T, outer = L.shape[0], nodes.shape[1]
    factors, coefs = [], []
    nmem = np.zeros(gj.LEVELS, np.intp)
    width = max(len(b.members) for b in blocks)
    fid = np.zeros((gj.LEVELS, width), np.intp)
    alpha = np.zeros((T, gj.LEVELS, width))
    for j in range(outer):  # the tabulated block (j = m − 1 with a table) is not a level
        nmem[j] = len(blocks[j].members)
        for i, (f, a) in enumerate(blocks[j].members):
            if f not in factors:
                data = gj.factor_data(f)  # exponential or elementary form, as data
                if data is None:
                    return None
                factors.append(f)
                coefs.append(data)
            fid[j, i] = factors.index(f)
            alpha[:, j, i] = a
    bank, lut, lo = rule_bank(tuple(int(c) for c in np.unique(nodes)))
    codes = np.full((T, gj.LEVELS), lut[-1 - lo], np.intp)  # levels beyond: the one-point rule
    codes[:, :outer] = lut[nodes - lo]
    Lp = np.zeros((T, gj.LEVELS, gj.LEVELS))
    Lp[:, :m, :m] = L
    tab, tv = (np.zeros((4, 4)), -1) if tab is None else (tab, m - 1)
    expo_max = EXPO_MAX_EXPONENT if quad.addition_theorem else -1.0
    try:
        out = gj.nested(Lp, codes, bank, nmem, fid, alpha, coefs, outer, tab, tv, float(M),
                        TABLE_H_MU, TABLE_H_S, TABLE_REACH, SPLIT_C, SPLIT_DC, expo_max,
                        pool=quad.pool, groups=8 * quad.threads)
    except gj.COMPILER_ERRORS as exc:  # a broken installation, a compiler failure
        raise RuntimeError(f"the compiled quadrature kernel failed ({type(exc).__name__}); "
                           "use Settings(jit=False) (NTKDIAGRAMS_JIT=0) for the numpy path") from exc
    quad.count("compiled_tuples", T)
    return out
