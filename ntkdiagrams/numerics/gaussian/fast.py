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
* each tuple takes the order of its variables with the fewest points among those with a
  tabulated factor last (all orders are tried, ties go to the first order tried); an order that
  puts other factors at other levels must save :data:`FAST_ORDER_SAVING` of the points (before
  2026-11-30 only slots of one identical factor were reordered: the four-point expectations of
  σ'σ'σ''σ kind of the dNTK/ddNTK recursions now take ~12 000 points per tuple instead of ~20 000);
  since 2026-12-02 only among the orders whose every level's own factor varies at least
  FAST_PIVOT_RATIO times as fast as the factors inside it (:func:`pivots_dominate`), where the
  tuple has one: on degenerate tuples (the rank-3 first layer of n0 = 3 inputs) an order with a
  level of a nearly degenerate direction was off by up to 3e-7 of the scale;
* a factor smoother than tanh enters the ladders with its sharpness κ ≤ 1 times its slope
  (:mod:`.sharpness`, 2026-12-01; a 1-D calibration against the tanh family, times a safety
  factor, 1.5 for entire factors and since 2026-12-02 1.25 for the logistic family: softplus 0.39,
  swish 0.48, GELU 0.66, erf 0.88, tanh and sech² 1); the rules of
  slopes up to :data:`.sharpness.SHARPNESS_FROM` are unchanged (``quad.sharpness`` False: κ = 1);
* four single unscaled factors whose covariance has a two-factor form C = A Aᵀ + diag(d), d ≥ 0
  (:mod:`.twofactor`, 2026-12-01), take the two-dimensional integral of the four factors' tables
  over the shared coordinates where it needs at most TWO_FACTOR_SAVING of the points (and every
  variance is ≥ TWO_FACTOR_MIN_VARIANCE): ~10³ points instead of ~10⁴–10⁵ on deep layers' kernels;
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
from .cone import chunks, integrate_exact, warn_default_degree
from .context import Quadrature
from .factors import EXPO_MAX_EXPONENT
from .ladder import (FAST_LADDER, FAST_LADDER_M2, FAST_LADDER_M34, FAST_SLACK, block_scales, block_sharpness, points_per_tuple,
                     rule_codes, slopes, small_tuples)
from .linalg import cholesky_jittered
from .nested import nested_sum
from .pruning import envelope_ratio, prune_thresholds
from .rules import HALF_CODE, SPLIT_C, SPLIT_DC, rule_bank, rule_for_code
from .spacing import per_spacing, spacing_for
from .table import TABLE_REACH, g_table, g_table_columns, table_extent
from .twofactor import TWO_FACTOR_MIN_VARIANCE, TWO_FACTOR_SAVING, integrate_two_factor, two_factor_forms

__all__ = ["FAST_CHUNK_POINTS", "FAST_ORDER_SAVING", "FAST_PIVOT_RATIO", "half", "pivots_dominate", "symmetry", "integrate_fast", "integrate_nodes", "nested_compiled"]

#: quadrature points per chunk of the fast path (arrays of ~1 MB: the innermost level makes
#: ~20 passes over them, which is faster from cache than from memory)
FAST_CHUNK_POINTS = 1 << 17
#: another order of a tuple's variables that puts other factors at other levels is taken when it
#: needs at most this fraction of the points (orders of identical factors: any saving)
FAST_ORDER_SAVING = 0.75
#: ρ of :func:`pivots_dominate`: the orders whose every level's own factor varies at least ρ
#: times as fast as the factors inside it are preferred
FAST_PIVOT_RATIO = 0.5


def integrate_fast(blocks: list[Block], C: np.ndarray, degree, quad: Quadrature, slack=None,
                   force: bool = False) -> np.ndarray:
    """Smooth factors, m ≥ 2 distinct variables: nested split Gauss rules in the Cholesky
    coordinates (z = L u); for m ≥ 3 the integral over the last variable is read from a table.
    With the ladders (``degree`` None) and a table, each tuple takes the order of its variables
    with the fewest quadrature points, among the orders that keep a tabulated block last."""
    n, m = C.shape[0], len(blocks)
    out = np.empty(n)
    sym = symmetry(blocks)
    if sym < 0:  # odd under z → −z: E = 0 exactly
        quad.count("fast_tuples", n)
        out[:] = 0.0
        return out
    # the innermost variable should be a single unscaled factor (tabulated)
    tab = [_tabulated(b) for b in blocks]
    single = [j for j in range(m) if tab[j]] if m >= 3 else []
    # the outer levels with the largest blocks first: the last outer level is summed in the
    # kernel's inner loop, which costs ~2× per point for a block of several members (f(z)² of
    # merged slots) against one factor (stable: ties keep their order)
    order = sorted(range(m), key=lambda j: -len(blocks[j].members))
    if single:
        last = single[-1]
        order = [j for j in order if j != last] + [last]
    blocks = [blocks[j] for j in order]
    tab = [tab[j] for j in order]
    keys = [_block_key(b, j, t) for j, (b, t) in enumerate(zip(blocks, tab))]
    C = C[:, order][:, :, order]
    C, L = cholesky_jittered(C, m)
    quad.count("fast_tuples", n)
    outer = m - 1 if single else m
    if degree is not None:
        nodes = np.full((n, outer), int(degree), np.intp)
        out[:] = integrate_nodes(blocks, L, half(nodes) if sym > 0 else nodes, m, single, quad)
        return out
    sl = FAST_SLACK[m] if slack is None else slack
    split_ladder = FAST_LADDER_M2 if m == 2 else FAST_LADDER_M34
    scales = block_scales(blocks)
    kappa = block_sharpness(blocks, quad.tables) if quad.sharpness else np.ones(m)
    sharp = bool(np.any(kappa < 1))

    small = small_tuples(blocks, C)

    def codes(Ls, sc, kap, sm):
        """Rule codes from the slopes, and from the sharpened slopes where some κ < 1."""
        if not sharp:
            return rule_codes(*slopes(None, Ls, outer, sc), sl, split_ladder, small=sm)
        own, inside, own_k, inside_k = slopes(None, Ls, outer, sc, sc * kap)
        return rule_codes(own, inside, sl, split_ladder, (own_k, inside_k), small=sm)
    nodes = codes(L, scales, kappa, small)
    choice = np.zeros(n, np.intp)
    # four single factors: the two-factor form where it exists and needs at most TWO_FACTOR_SAVING
    # of the points of this order's Cholesky form (those tuples skip the order search: it saves
    # at most ~2×); searched only where every variance is ≥ TWO_FACTOR_MIN_VARIANCE and the tuple
    # is not small (ladder.SMALL_VARIANCE: its table reads' floor)
    cand = np.empty(0, np.intp)
    if m == 4 and all(tab):
        cand = np.nonzero(~small & (np.min(np.einsum("tkk->tk", C), axis=1) >= TWO_FACTOR_MIN_VARIANCE))[0]
    if cand.size:
        forms = two_factor_forms(C[cand], kappa, sl, split_ladder)
        ok = forms.ok & (forms.points <= TWO_FACTOR_SAVING * points_per_tuple(nodes[cand]))
        if np.any(ok):
            sub, two = forms.take(ok), cand[ok]
            out[two] = integrate_two_factor([b.members[0][0] for b in blocks], sub,
                                            half(sub.codes) if sym > 0 else sub.codes, quad)
            choice[two] = -1
    rest = np.nonzero(choice >= 0)[0]
    orders = [tuple(range(m))]
    if single and rest.size:
        # every other order with a tabulated block last (lexicographic; the first order with
        # the fewest points wins, ties go to the order tried first): (P·r) stacked covariances,
        # one Cholesky, one ladder
        orders += [o for o in itertools.permutations(range(m)) if tab[o[-1]] and o != orders[0]]
        P, r = len(orders) - 1, rest.size
        if P:
            Cr, scales_r = C[rest], scales[rest]
            Cp = np.concatenate([Cr[:, o][:, :, o] for o in orders[1:]])
            Cp, Lp = cholesky_jittered(Cp, m)
            scales_p = np.concatenate([scales_r[:, o] for o in orders[1:]])
            kappa_p = np.concatenate([np.broadcast_to(kappa[list(o)], (r, m)) for o in orders[1:]])
            nodes_p = codes(Lp, scales_p, kappa_p, np.tile(small[rest], P))
            # an order with other blocks at other levels must save FAST_ORDER_SAVING of the
            # points: the ladders' bounds allow ~1e-7 per level, and a marginal saving is not
            # worth a different error
            weight = np.array([1.0 if [keys[j] for j in o] == keys else 1.0 / FAST_ORDER_SAVING
                               for o in orders[1:]])
            cost_p = points_per_tuple(nodes_p).reshape(P, r) * weight[:, None]
            cost = points_per_tuple(nodes[rest])
            # an order with a level whose own factor varies much more slowly than one inside it
            # is taken only where no order avoids that (:func:`pivots_dominate`)
            ok_p = pivots_dominate(Lp, scales_p, outer).reshape(P, r)
            ok = pivots_dominate(L[rest], scales_r, outer)
            some = ok | ok_p.any(axis=0)  # the tuple has an order that passes
            cost_p = np.where(ok_p | ~some, cost_p, np.inf)
            cost = np.where(ok | ~some, cost, np.inf)
            best = np.argmin(cost_p, axis=0)
            better = cost_p[best, np.arange(r)] < cost
            if np.any(better):
                k = best[better] * r + np.nonzero(better)[0]
                t = rest[better]
                C[t], L[t], nodes[t] = Cp[k], Lp[k], nodes_p[k]
                choice[t] = best[better] + 1
    # orders that give the same sequence of blocks (identical single unscaled factors) share a
    # call: only the covariances differ
    groups: dict = {}
    for c in np.unique(choice[choice >= 0]):
        key = tuple(keys[j] for j in orders[c])
        groups.setdefault(key, (orders[c], []))[1].append(c)
    for o, cs in groups.values():
        idx = np.nonzero(np.isin(choice, cs))[0]
        whole = idx.size == n
        bl = [blocks[j] if whole else blocks[j].take(idx) for j in o]
        Ls, ns = (L, nodes) if whole else (L[idx], nodes[idx])
        out[idx] = _integrate_ladder(bl, C if whole else C[idx], Ls, ns, m, single, quad, force,
                                     sym > 0)
    return out


def pivots_dominate(L: np.ndarray, scales: np.ndarray, outer: int) -> np.ndarray:
    """Per tuple (T,): whether on every outer level j the factor that u_j owns varies at least
    :data:`FAST_PIVOT_RATIO` times as fast as every factor inside it, a_j L_jj ≥ ρ a_k |L_kj|
    for k > j (``scales`` a, T × m).

    The split rule of level j sits at the own factor's zero crossing; where an inside factor is
    much steeper (a level of a nearly degenerate direction, L_jj small), its transition falls
    between the nodes and the ladders' bounds do not hold: on the rank-3 first-layer kernel of
    issue 15's grid (softplus, |x|²/n0 = 3, C_W = 2, inputs (3, 9, 13, 15), σ'σ'σ''σ) the orders
    with a level of L_jj ≈ 0.2–0.4 against inside slopes ~3 were off by 4e-8 … 8e-7 of the scale,
    every other order by ≤ 6e-14.  The greedy pivoted Cholesky order (largest conditional
    variance first) satisfies the condition with equal scales, so such an order always exists
    when every block may be last."""
    ok = np.ones(L.shape[0], bool)
    for j in range(outer):
        inside = np.max(np.abs(L[:, j + 1:, j]) * scales[:, j + 1:], axis=1, initial=0.0)
        ok &= scales[:, j] * np.abs(L[:, j, j]) >= FAST_PIVOT_RATIO * inside
    return ok


def symmetry(blocks: list[Block]) -> int:
    """+1 when the product of the blocks is even under z → −z, −1 when odd (every member
    factor has a parity, :func:`.factors.parity`), 0 otherwise."""
    p = 1
    for b in blocks:
        for f, _ in b.members:
            p *= f.parity
    return p


def half(nodes: np.ndarray) -> np.ndarray:
    """The codes with the outermost split rule (at z_0 = 0, since μ_0 = 0) replaced by its half
    on [0, ∞) with doubled weights: for an even integrand (:func:`symmetry`) the other half is
    its mirror image, u → −u in every coordinate (the split points and Gauss–Hermite rules
    mirror with it)."""
    out = nodes.copy()
    split = out[:, 0] > 0
    out[split, 0] += HALF_CODE
    return out


def _tabulated(b: Block) -> bool:
    """Whether block b can be the tabulated innermost variable: one factor, unscaled."""
    return len(b.members) == 1 and bool(np.all(b.members[0][1] == 1))


def _block_key(b: Block, j: int, tabulated: bool):
    """Blocks with equal keys are interchangeable: the same single unscaled factor."""
    return ("factor", id(b.members[0][0])) if tabulated else ("block", j)


def _integrate_ladder(blocks, C, L, nodes, m, single, quad, force, even):
    """The nested rule with the ladders' codes (the half rule outermost when ``even``); tuples
    beyond the ladders (code 0) by the exact cone method, unless ``force`` (then the last rung)."""
    beyond = np.any(nodes == 0, axis=1)
    if not np.any(beyond):
        return integrate_nodes(blocks, L, half(nodes) if even else nodes, m, single, quad)
    nodes = nodes.copy()
    nodes[nodes == 0] = FAST_LADDER[-1][1]
    if even:
        nodes = half(nodes)
    if force:
        return integrate_nodes(blocks, L, nodes, m, single, quad)
    out = np.empty(L.shape[0])
    warn_default_degree("with a slope beyond the fast path's ladders", stacklevel=3)
    quad.count("fast_tuples", -int(np.sum(beyond)))
    out[beyond] = integrate_exact([b.take(beyond) for b in blocks], C[beyond], None, quad)
    keep = ~beyond
    if np.any(keep):
        out[keep] = integrate_nodes([b.take(keep) for b in blocks], L[keep], nodes[keep], m,
                                    single, quad)
    return out


def integrate_nodes(blocks: list[Block], L: np.ndarray, nodes: np.ndarray, m: int, single,
                    quad: Quadrature) -> np.ndarray:
    """The nested rule with the given rule codes (T, outer) per tuple: the compiled kernel
    where it applies, else numpy over chunks of tuples that share their codes.  The last
    variable, where tabulated, is read from its factor's table at the factor's spacing
    (:mod:`.spacing`), or at the finest where its variance is below SPACING_MIN_VARIANCE."""
    if not single:
        return _integrate_at(blocks, L, nodes, m, single, quad, 1.0)

    def run(sel, h):
        if sel is None:
            return _integrate_at(blocks, L, nodes, m, single, quad, h)
        return _integrate_at([b.take(sel) for b in blocks], L[sel], nodes[sel], m, single, quad, h)
    return per_spacing(spacing_for([blocks[-1].members[0][0]], quad), np.sum(L[:, m - 1, :] ** 2, axis=1), run)


def _integrate_at(blocks: list[Block], L: np.ndarray, nodes: np.ndarray, m: int, single,
                  quad: Quadrature, h: float) -> np.ndarray:
    """:func:`integrate_nodes` with the last variable's table at spacing h (with ``single``)."""
    out = np.empty(L.shape[0])
    tab, M = None, 0.0
    if single:
        tab, M = g_table(blocks[-1].members[0][0], *table_extent(L, m), quad, h)
    jit = nested_compiled(blocks, L, nodes, m, single, tab, M, h, quad)
    if jit is not None:
        return jit
    keys, inv = np.unique(nodes, axis=0, return_inverse=True)
    inv = np.ravel(inv)
    jobs = []
    for gi, key in enumerate(keys):
        idx = np.nonzero(inv == gi)[0]
        rules = [rule_for_code(int(d), quad.tables) for d in key]
        per = int(points_per_tuple(key[None])[0])
        for sl in chunks(idx.size, per, FAST_CHUNK_POINTS):
            jobs.append((idx[sl], rules))

    def run(job):
        ii, rules = job
        out[ii] = nested_sum(blocks, L[ii], ii, rules, tab, M, h, quad)
    pool = quad.pool
    if pool is None or len(jobs) < 2:
        for job in jobs:
            run(job)
    else:
        list(pool.map(run, jobs))  # numpy releases the GIL inside the array operations
    return out


def _envelope_ratio(blocks: list[Block], L: np.ndarray, umax: np.ndarray, m: int,
                    outer: int) -> np.ndarray:
    """Π_k env_k(R_k)/env_k(2σ_k) of :mod:`.pruning` per tuple: z_k = Σ_j L_kj u_j reaches
    R_k = Σ_{j < outer} |L_kj| u_max,j (``umax`` (T, outer): the largest node of each level's
    rule), the tabulated variable (k ≥ outer) L_kk TABLE_REACH more; σ_k² = Σ_j L_kj²."""
    reach = np.einsum("tkj,tj->tk", np.abs(L[:, :, :outer]), umax)
    if outer < m:
        reach[:, outer:] += TABLE_REACH * np.abs(np.einsum("tkk->tk", L)[:, outer:])
    sd = np.sqrt(np.einsum("tkj,tkj->tk", L, L))
    ratio = np.ones(L.shape[0])
    for k, b in enumerate(blocks):
        for f, a in b.members:
            ratio *= envelope_ratio(f, a, reach[:, k], sd[:, k])
    return ratio


def nested_compiled(blocks: list[Block], L: np.ndarray, nodes: np.ndarray, m: int, single, tab,
                    M: float, h: float, quad: Quadrature):
    """The nested rule by the compiled kernel of :mod:`.compiled`, or None where it does not
    apply: ``quad.jit`` off (``Settings.jit``, NTKDIAGRAMS_JIT=0), numba not installed, or an
    outer factor with neither an exponential form R(e^{κz}) nor an elementary form
    (:mod:`.elementary`: GELU, erf, softplus, swish, sin, …), or a call of fewer than
    ``quad.compiled_min_points`` quadrature points (:data:`.context.COMPILED_MIN_POINTS`: the
    numpy path costs less than loading the kernel) while this Quadrature has not run the kernel
    yet (``quad.kernel_used``).  Same rules, same numbers to rounding."""
    if not quad.wants_kernel(np.sum(points_per_tuple(nodes))):
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
    bank, lut, lo = rule_bank(tuple(int(c) for c in np.unique(nodes)), quad.tables)
    codes = np.full((T, gj.LEVELS), lut[-1 - lo], np.intp)  # levels beyond: the one-point rule
    codes[:, :outer] = lut[nodes - lo]
    Lp = np.zeros((T, gj.LEVELS, gj.LEVELS))
    Lp[:, :m, :m] = L
    # the kernel reads the table in columns (n_s, n_μ)
    tab, tv = (np.zeros((4, 4)), -1) if tab is None else (g_table_columns(blocks[-1].members[0][0], tab, h), m - 1)
    expo_max = EXPO_MAX_EXPONENT if quad.addition_theorem else -1.0
    thr = prune_thresholds(_envelope_ratio(blocks, L, bank[5][codes[:, :outer]], m, outer),
                           points_per_tuple(nodes))
    out = gj.guarded(gj.nested, Lp, codes, bank, nmem, fid, alpha, coefs, outer, tab, tv, float(M),
                     h, h, TABLE_REACH, SPLIT_C, SPLIT_DC, expo_max, thr=thr,
                     pool=quad.pool, groups=8 * quad.threads)
    quad.kernel_ran(T)
    return out
