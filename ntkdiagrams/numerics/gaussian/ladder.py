"""Rule choice of the fast path: which rule integrates each Cholesky coordinate of a tuple.

The fast path (:mod:`.fast`) integrates E[Π_k F_k(z_k)], z = L u, as an iterated integral over
u_0, u_1, … .  Along coordinate u_j the factor k = j it *owns* varies with the slope a_j L_jj
(a_k = max|α| over block k's members, its scales); the factors k > j vary with a_k L_kj, but
the levels inside integrate them over u_{j+1}, …, which smooths them: the integrand of level j
is F_j(z_j) times g(u_j) = ∫ Π_{k>j} F_k(a_k w_k) N(w; μ + u_j ℓ, Σ) dw with ℓ_k = L_kj and
Σ = L_in L_inᵀ (L_in: the block of L inside, rows and columns > j).  In the variables a_k w_k,
a Gaussian of covariance Σ' = D Σ D (D = diag(a)) damps the frequency ω of g in u_j by
exp(−ω²/2 ℓ'ᵀΣ'⁻¹ℓ') (ℓ' = D ℓ); with the factors' own scale (unit slope) added as a unit
variance, the slope of g is

    ŝ_j = √(ℓ'ᵀ (I + Σ')⁻¹ ℓ')            (one factor: a L_kj / √(1 + a² Σ_{i>j} L_ki²)),

and the slope of coordinate j (issue 15, 2026-11-30; before: max_{k ≥ j} a_k |L_kj|)

    s_j = max( a_j L_jj ,  min( max_{k>j} a_k |L_kj| , ŝ_j ) )   (below: with the slack).

The scales a_k are those of the tanh family; a smoother factor's scale is κ a_k with its
sharpness κ ≤ 1 (:mod:`.sharpness`), applied in :func:`rule_codes` beyond SHARPNESS_FROM.

A nearly singular Σ (inner factors that move together) leaves ŝ_j large along its null
directions, where the inner levels do not smooth (two steps whose crossings move past each
other make a kink in g).  The rule of u_j is the first rung of a ladder (bound, rule) with
max(a_j L_jj, slack × ŝ'_j) ≤ bound × slack, ŝ'_j = min(max_{k>j} a_k |L_kj|, ŝ_j): the slack
(:data:`FAST_SLACK`, 1.5 for m = 3, 4) relaxes the bound for the owned factor only, whose
transition sits at the split point, where the rules converge fastest; a factor inside is
anywhere along u_j and gets the ladder's bound itself.

* :data:`FAST_LADDER` — split rules (n nodes per side, split at the zero crossing of z_j);
  u_0 always uses them (split at z_0 = 0);
* :data:`FAST_LADDER_GH` — k-point Gauss–Hermite, for j ≥ 1 with s_j ≤ :data:`FAST_GH_MAX` ×
  slack (k points do there what the split rule does with 2k);
* :data:`FAST_LADDER_M2` — further split rungs for m = 2 (no table, both coordinates summed);
* :data:`FAST_LADDER_M34` — the same rungs for m = 3, 4; both end with
  :data:`FAST_LADDER_WIDE` (issue 15): node counts growing linearly with the slope (∝ √v), up
  to 146 nodes per side, so that effective variances up to :data:`FAST_MAX_VARIANCE` = 60 stay on
  the fast path (20 and 84 nodes before 2026-12-01's second change).

Small tuples (effective variance ≤ :data:`SMALL_VARIANCE`, issue 15, 2026-12-02) take every rung
with its bound shrunk (:func:`small_ladder`) and no slack for the owned factor: there the factors
are nearly polynomial and small, there is no step at the split point, and the error counts against
their small scale (constants and measurements at :data:`SMALL_VARIANCE`).

Bounds of the ladders: 1-D worst case over products of up to four factors tanh, sech²,
tanh·sech² with random offsets and slopes ≤ s_j, relative error ≤ 1e-7; the m = 2 rungs:
≤ 3e-10 against the cone method at degree 80.  A tuple with a slope beyond its ladder goes to
the exact cone method (rule code 0 here).  The slack (:data:`FAST_SLACK`) by m trades the
per-coordinate bound against the accumulated error of m − 1 levels.
"""
from __future__ import annotations

import math

import numpy as np

from .blocks import Block
from .rules import HALF_CODE
from .sharpness import SHARPNESS_FROM, sharpness

__all__ = ["FAST_DEGREES", "FAST_GH_MAX", "FAST_LADDER", "FAST_LADDER_GH", "FAST_LADDER_M2",
           "FAST_LADDER_M34", "FAST_LADDER_WIDE",
           "FAST_MAX_VARIANCE", "FAST_SLACK", "SHARPNESS_RUNGS", "SMALL_MIN_NODES", "SMALL_TIGHTENING",
           "SMALL_VARIANCE", "SHARPNESS_TO", "block_scales", "block_sharpness", "effective_variance", "inverse_form",
           "points_per_tuple", "rule_codes", "slopes", "small_ladder", "small_tuples"]

#: Tuples whose largest effective variance (C_jj · α², after merging) exceeds this bound are
#: integrated by the exact cone method even when every factor is smooth (method="auto").
#: 3.2 before issue 15; 20 covers the benchmark grid's layer-1 variances (≈ 6–12 at C_W = 2,
#: |x|²/n0 = 3) with room.  Measured up to 20 against the cone method at high degree: ≲ 3e-8 of
#: the scale Π⟨f²⟩^{1/2} (tanh, gelu, erf, swish, softplus, sin and their first two derivatives,
#: m = 2, 3, 4); up to 3e-7 with a nearly collinear pair (ρ ≈ 1 − 5e-7), the table's floor, which
#: at variance ≤ 3.2 (unchanged) reaches 2e-6 (tests/test_gaussian_bigvar.py, docs/gaussian.md).
#: Since 2026-12-01 the bound applies to the variance times κ² (the factors' sharpness,
#: :mod:`.sharpness`): softplus tuples at variance 25 (the grid's deep layers at |x|²/n0 = 3,
#: C_W = 2) and 48 that it moves to the fast path are within 4e-10 of the cone method at degree
#: 32 (docs/gaussian.md); those still beyond keep the cone method at its default degrees (1.3e-7
#: there on σ''σ'σσ, with or without the sharpness).  20 → 60 on 2026-12-01 (the rungs beyond
#: slope 4.6 of FAST_LADDER_WIDE, table rows with 96 nodes beyond s = 4.5): at variances 30 … 60
#: ≤ 1.5e-10 of the scale for m = 2 and 4 and ≤ 8.1e-9 for m = 3 against uniform rules of 150–180
#: nodes per side (2.1e-7 with a nearly collinear pair), where the cone method at its default degree
#: was off by up to 2e-3 (docs/gaussian.md, tests/test_gaussian_widevar.py); beyond, that method
#: remains and warns (:class:`.cone.AccuracyWarning`).  Slopes stay below the ladders' last bound
#: (8 × slack) for every tuple within this bound: √60 = 7.75.
FAST_MAX_VARIANCE = 60.0
#: Nodes per side of the split half-line rules of the fast path, by the number m of distinct
#: variables and the largest effective variance v of a tuple: the first (bound, n) with
#: v ≤ bound (measured: relative error ≤ 1e-7 for m = 3, ≤ 1e-6 for m = 4).  (The uniform
#: rule of an earlier version; kept as reference, the per-coordinate ladders replace it.)
FAST_DEGREES = {3: ((0.35, 8), (1.1, 12), (2.2, 14), (FAST_MAX_VARIANCE, 16), (math.inf, 20)),
                4: ((0.35, 8), (1.1, 10), (2.2, 12), (FAST_MAX_VARIANCE, 14), (math.inf, 20))}
#: Rules for one outer Cholesky coordinate u_j along which the factors vary with slope
#: s_j = max_k |L_kj α_k|: (bound, rule) with rule = n > 0 for the split rule with n nodes per
#: side, rule = -k for k-point Gauss–Hermite; the first rule with s_j ≤ bound × slack is used.
#: Bounds: 1-D worst case over products of up to four factors tanh, sech², tanh·sech² with
#: random offsets and slopes ≤ s_j, relative error ≤ 1e-7 (Gauss–Hermite with k points is as
#: good as the split rule with 2k there; the split rule is much better where all factors cross
#: zero at the split point, as for the outermost coordinate of strongly correlated tuples).
FAST_LADDER_GH = ((0.027, -3), (0.05, -4), (0.086, -5), (0.124, -6), (0.162, -7), (0.194, -8),
                  (0.254, -10), (0.277, -11), (0.303, -13), (0.332, -15), (0.363, -17))
FAST_LADDER = ((0.027, 3), (0.05, 4), (0.086, 5), (0.124, 6), (0.162, 7), (0.212, 8), (0.254, 9),
               (0.303, 10), (0.332, 11), (0.363, 12), (0.435, 14), (0.52, 16), (0.622, 18),
               (0.681, 20), (0.815, 24))
#: Rungs beyond slope 1.79 (issue 15: effective variances up to FAST_MAX_VARIANCE; the four beyond
#: 4.6 since 2026-12-01, n ≈ 18 b as below, measured in docs/gaussian.md), shared by
#: FAST_LADDER_M2 (slack 1) and FAST_LADDER_M34 (slack 1.5): n ≈ 20 b nodes per side, as the
#: rungs below.  Cheaper rungs for m = 3, 4 (n ≈ 16 b: 40 … 64) were tried and lost up to 1.3e-6
#: of the scale on ⟨erf' erf' erf'⟩ with a nearly collinear pair at variance 14 (these rungs:
#: 1.3e-7, the table's floor there); docs/gaussian.md.
FAST_LADDER_WIDE = ((2.2, 44), (2.6, 52), (3.0, 60), (3.5, 68), (4.0, 76), (4.6, 84), (5.3, 98),
                    (6.1, 112), (7.0, 128), (8.0, 146))
#: Further rungs for m = 2 (both coordinates integrated, no table), where tuples beyond
#: FAST_LADDER went to the exact cone method: measured against that method at degree 80 on
#: ⟨f g⟩ for f, g among tanh and its first three derivatives, tanh², (tanh')², with the
#: variance = bound² and both coordinates at n nodes: ≤ 3e-10 at every bound (n = 24 gives
#: 2e-10 at s = 1).
FAST_LADDER_M2 = FAST_LADDER + ((1.0, 24), (1.225, 28), (1.483, 32), (1.79, 36)) + FAST_LADDER_WIDE
#: Rungs for m = 3, 4 (issue 15): those of FAST_LADDER_M2 beyond FAST_LADDER, so that tuples of
#: effective variance 1.5 … FAST_MAX_VARIANCE stay on the fast path instead of the cone method
#: at its default degree.  Measured (⟨σ⁴⟩ over 6 inputs, all index tuples, variance 1.5, 2.5,
#: 3.1, against the cone method at degree 24): tanh ≤ 3e-8, gelu ≤ 1.3e-7, where the cone method
#: at its default gave up to 2e-5 (tanh) and 2e-4 (gelu); 10–100× faster.  More nodes (48 at
#: the last rung) do not lower that floor (the table of the innermost integral).
FAST_LADDER_M34 = FAST_LADDER + ((1.0, 24), (1.225, 28), (1.483, 32), (1.79, 36)) + FAST_LADDER_WIDE
#: default slack of the ladders by the number m of distinct variables
FAST_SLACK = {2: 1.0, 3: 1.5, 4: 1.5}
#: outer coordinates j ≥ 1 with slope ≤ FAST_GH_MAX × slack use Gauss–Hermite
FAST_GH_MAX = 0.2
#: Small tuples (issue 15, 2026-12-02): effective variance (C_jj · max|α|², the largest over the
#: blocks) ≤ SMALL_VARIANCE.  Their factors are nearly polynomial on the scale of the Gaussian and
#: small (tanh(z) ≈ z), while the ladders' bounds hold each rule's error to ~1e-7 of values O(1):
#: against the scale Π⟨f²⟩^{1/2} the ladders were off by up to 8e-6 there (tanh, mixed derivative
#: tuples σ'σ'σ''σ, variances 0.02–0.3; docs/gaussian.md).  These tuples take every rung with its
#: bound times SMALL_TIGHTENING^(−1/(2q)) (q: the rung's nodes per side, or Gauss–Hermite points;
#: the error of a q-node rule is ∝ s^(2q)), no rung under SMALL_MIN_NODES (rules of 3 nodes left
#: 1.2e-7 on swish⁴ at variance 1e-6), no slack for the factor a coordinate owns (:func:`rule_codes`;
#: with that slack 1e-6 was left), and not the two-factor form (its four table reads left 2e-8;
#: :mod:`.fast`): ≤ 1.1e-8 of the scale measured (the table's floor on ⟨gelu' gelu' gelu'' gelu⟩),
#: at 2–4× the points of these tuples (the grid's cells whose deep layers are small: +0.3 … 2.7 s,
#: erf at |x|²/n0 = 3, C_W = 1 over the 5 s target; README).  Dropping the slack for every tuple would also fix the 2–4e-8 left at variances
#: 0.5 … 1.5, at ~2× the points of the grid's costly cells (measured; not done).
SMALL_VARIANCE = 0.5
SMALL_TIGHTENING = 1000.0
SMALL_MIN_NODES = 4


def block_scales(blocks: list[Block]) -> np.ndarray:
    """A[t, k] = max |α| over the members of block k."""
    return np.stack([np.max(np.stack([np.abs(a) for _, a in b.members]), axis=0) for b in blocks],
                    axis=1)


#: the last rung of the sharpness calibration (:mod:`.sharpness`): the rungs up to slope 4.6
#: (variance 21), those of the ladders before 2026-12-01; the rungs beyond (variances up to
#: FAST_MAX_VARIANCE = 60) take the same κ (measured: docs/gaussian.md)
SHARPNESS_TO = 4.6
#: the rungs a slope mapped by a factor's sharpness can reach (:mod:`.sharpness`): those of the
#: split ladders beyond SHARPNESS_FROM, up to SHARPNESS_TO (the calibration's rungs)
SHARPNESS_RUNGS = tuple((b, n) for b, n in FAST_LADDER_M2 if SHARPNESS_FROM < b <= SHARPNESS_TO)


def block_sharpness(blocks: list[Block], folder=None) -> np.ndarray:
    """κ per block (m,): the largest sharpness (:func:`.sharpness.sharpness`) of its members."""
    return np.array([max(sharpness(f, SHARPNESS_RUNGS, folder) for f, _ in b.members)
                     for b in blocks])


def effective_variance(blocks: list[Block], C: np.ndarray, kappa=None) -> np.ndarray:
    """Per tuple: v = max_j C_jj · max |α|² over the members of block j (the scale on which
    the factors vary, in units of their argument), times κ_j² with the blocks' sharpness
    ``kappa`` (m,) where given (:func:`block_sharpness`: the variance at which the tanh family
    varies as these factors do)."""
    a = block_scales(blocks) if kappa is None else block_scales(blocks) * kappa
    return np.max(np.einsum("nii->ni", C) * a ** 2, axis=1)


def slopes(blocks: list[Block], L: np.ndarray, outer: int, scales=None, *more) -> tuple:
    """(own, inside), each (T, outer): the slope a_j |L_jj| of the factor that coordinate u_j owns,
    and that of the factors inside, min(max_{k>j} a_k |L_kj|, ŝ_j) with ŝ_j their slope smoothed
    by the coordinates they are integrated over (module docstring).  ``more``: further scale
    arrays (T, m) (the sharpened scales of :func:`rule_codes`), whose (own, inside) follow, sharing
    the products L_in L_inᵀ."""
    sets = [block_scales(blocks) if scales is None else scales, *more]
    T, m = sets[0].shape
    out = [(np.empty((T, outer)), np.zeros((T, outer))) for _ in sets]
    for j in range(outer):
        ell = L[:, j + 1:, j]                                    # ℓ
        P = L[:, j + 1:, j + 1:] @ np.swapaxes(L[:, j + 1:, j + 1:], 1, 2) if j + 1 < m else None
        for a, (own, inside) in zip(sets, out):
            own[:, j] = a[:, j] * np.abs(L[:, j, j])
            if P is None:
                continue
            ai = a[:, j + 1:]
            ella = ai * ell                                       # ℓ' = D ℓ
            A = P * (ai[:, :, None] * ai[:, None, :])             # Σ' = D L_in L_inᵀ D
            A[:, np.arange(m - j - 1), np.arange(m - j - 1)] += 1.0  # I + Σ'
            inside[:, j] = np.minimum(_row_max(np.abs(ella)), np.sqrt(inverse_form(A, ella)))
    return out[0] if not more else tuple(x for pair in out for x in pair)


def _row_max(x: np.ndarray) -> np.ndarray:
    """max over the columns of x (T, r), r small, column by column: numpy's reduction over an
    axis of a few elements costs a call per row (the same numbers, NaN propagated alike)."""
    out = x[:, 0].copy()
    for c in range(1, x.shape[1]):
        np.maximum(out, x[:, c], out=out)
    return out


def inverse_form(A: np.ndarray, x: np.ndarray) -> np.ndarray:
    """xᵀ A⁻¹ x for symmetric positive definite A (T, r, r), x (T, r): by the adjugate for
    r ≤ 3 (batched LAPACK solves of tiny systems cost more than the arithmetic), else solve."""
    r = A.shape[1]
    if r == 1:
        return x[:, 0] ** 2 / A[:, 0, 0]
    if r == 2:
        a, b, d = A[:, 0, 0], A[:, 0, 1], A[:, 1, 1]
        return (d * x[:, 0] ** 2 - 2 * b * x[:, 0] * x[:, 1] + a * x[:, 1] ** 2) / (a * d - b * b)
    if r == 3:
        a, b, c = A[:, 0, 0], A[:, 0, 1], A[:, 0, 2]
        d, e, f = A[:, 1, 1], A[:, 1, 2], A[:, 2, 2]
        c00, c01, c02 = d * f - e * e, c * e - b * f, b * e - c * d
        c11, c12, c22 = a * f - c * c, b * c - a * e, a * d - b * b
        det = a * c00 + b * c01 + c * c02
        x0, x1, x2 = x[:, 0], x[:, 1], x[:, 2]
        return (c00 * x0 * x0 + c11 * x1 * x1 + c22 * x2 * x2
                + 2 * (c01 * x0 * x1 + c02 * x0 * x2 + c12 * x1 * x2)) / det
    return np.einsum("ti,ti->t", x, np.linalg.solve(A, x[..., None])[..., 0])


def small_ladder(lad: tuple) -> tuple:
    """The rungs of a ladder for small tuples (:data:`SMALL_VARIANCE`): bounds times
    SMALL_TIGHTENING^(−1/(2q)), no rung with q < SMALL_MIN_NODES (q = |code|; the bounds stay
    increasing: q grows along a ladder)."""
    return tuple((b * SMALL_TIGHTENING ** (-0.5 / abs(c)), c) for b, c in lad
                 if abs(c) >= SMALL_MIN_NODES)


def small_tuples(blocks: list[Block], C: np.ndarray) -> np.ndarray:
    """Mask (T,) of the small tuples: effective variance (without sharpness) ≤ SMALL_VARIANCE."""
    return effective_variance(blocks, C) <= SMALL_VARIANCE


def rule_codes(own: np.ndarray, inside: np.ndarray, slack: float, split_ladder=FAST_LADDER,
               sharp=None, small=None) -> np.ndarray:
    """Rule codes (n > 0: split rule, −k: Gauss–Hermite, 0: beyond the ladder) for the outer
    coordinates u_j from the slopes of :func:`slopes`: the first rung with
    max(own_j, slack · inside_j) ≤ bound × slack, i.e. the slack applies to the owned factor
    only; u_0 always uses the split rule (split at z_0 = 0).

    ``sharp``: (own, inside) of :func:`slopes` with each block's scale times its sharpness κ
    (:func:`block_sharpness`).  A slope beyond SHARPNESS_FROM × slack then enters the ladder as
    max(its sharpened slope, just above SHARPNESS_FROM × slack): the rungs up to SHARPNESS_FROM
    keep the slopes they had; smoother factors reach the rungs beyond with κ times their slope
    (:mod:`.sharpness`).

    ``small``: mask (T,) of small tuples (:func:`small_tuples`), or None: those take the ladders of
    :func:`small_ladder`, with the owned slope times the slack (no slack)."""
    T, outer = own.shape
    out = np.empty((T, outer), np.intp)
    rows = [(slice(None), 1.0, split_ladder, FAST_LADDER_GH)]
    if small is not None and np.any(small):
        rows = [(~small, 1.0, split_ladder, FAST_LADDER_GH),
                (small, slack, small_ladder(split_ladder), small_ladder(FAST_LADDER_GH))]
    for sel, own_slack, split_lad, gh_lad in rows:
        s = np.maximum(own_slack * own[sel], slack * inside[sel])
        if sharp is not None:
            edge = SHARPNESS_FROM * slack
            sk = np.maximum(own_slack * sharp[0][sel], slack * sharp[1][sel])
            s = np.where(s <= edge, s, np.maximum(sk, np.nextafter(edge, np.inf)))
        codes = np.empty(s.shape, np.intp)
        for j in range(outer):
            sj = s[:, j]
            codes[:, j] = _ladder_codes(split_lad, sj, slack)
            if j:
                gh = sj <= min(FAST_GH_MAX, gh_lad[-1][0]) * slack
                codes[gh, j] = _ladder_codes(gh_lad, sj[gh], slack)
        out[sel] = codes
    return out


def _ladder_codes(lad: tuple, s: np.ndarray, slack: float) -> np.ndarray:
    """The code of the first rung with s ≤ bound × slack; 0 beyond the ladder."""
    bounds = np.array([b for b, _ in lad]) * slack
    codes = np.array([c for _, c in lad] + [0])
    return codes[np.searchsorted(bounds, s)]


def points_per_tuple(codes: np.ndarray) -> np.ndarray:
    """Quadrature points per tuple of rule codes: Π_j (2n_j, k_j, or n_j for a half rule);
    beyond the ladder: ∞."""
    size = np.where(codes > HALF_CODE, codes - HALF_CODE, np.where(codes > 0, 2 * codes, -codes))
    # column by column (a few columns; integers, so the products are exact in any order)
    pts = size[:, 0].astype(float)
    beyond = codes[:, 0] == 0
    for j in range(1, codes.shape[1]):
        pts *= size[:, j]
        beyond |= codes[:, j] == 0
    return np.where(beyond, np.inf, pts)
