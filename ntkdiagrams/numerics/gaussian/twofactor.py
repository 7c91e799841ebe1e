"""Four variables on two shared coordinates: C = A Aᵀ + D, every factor smoothed by its own D.

A covariance C (4 × 4) that splits as

    C = A Aᵀ + diag(d),    A (4 × 2),  d ≥ 0,                                   (two-factor form)

is that of z_k = A_k · w + √d_k ξ_k with w ~ N(0, I₂) and ξ_k ~ N(0, 1) independent, so

    E[Π_k f_k(z_k)] = E_w[ Π_k G_k(A_k · w, √d_k) ],    G_k(μ, s) = E[f_k(μ + s ξ)],

a two-dimensional integral whose integrand reads each factor from its table of G (:mod:`.table`).
The Cholesky form of :mod:`.fast` needs three outer levels (~10⁴–10⁵ points for a four-point tuple
at variances 6–20); this form needs two, and the private variances d_k smooth every factor, so
~10³ points do.

The forms of a C.  Fix the pivot p (row 0 after reordering) and a = |A_p| with a² = x C_pp,
0 < x ≤ 1, and rotate w so that A_p = (a, 0).  Then A_k = (C_pk / a, b_k) for k ≠ p, and the
off-diagonal entries among k, l ≠ p ask b_k b_l = R_kl = C_kl − C_pk C_pl / a²: for the three
others (1, 2, 3) b₁² = R₁₂ R₁₃ / R₂₃, b₂ = R₁₂ / b₁, b₃ = R₁₃ / b₁, which needs R₁₂ R₁₃ R₂₃ > 0;
and d_k = C_kk − |A_k|² ≥ 0.  So the forms of C are a one-parameter family (x), possibly empty:
four variables whose six correlations are all negative, say, have none (four directions of a
plane cannot be pairwise obtuse).  Deep layers' kernels have them for most tuples (GELU at
|x|²/n0 = 3, C_W = 2: 96–98 % from layer 5 on); tuples without keep the Cholesky form.

Rules.  The outer coordinate w₀ owns factor p (split at A_p · w = 0, i.e. w₀ = 0); w₁ owns the
factor row 1 that varies fastest along it (split at its zero crossing); the other two vary along
w₁ as the ladder's "inside" factors, without slack (:mod:`.ladder`).  Factor k enters the ladder
with the scale of its smoothed form, 1/√(1 + d_k) (κ_k/√(1 + κ_k² d_k) with its sharpness κ_k
where :func:`.ladder.rule_codes` applies it): a step of slope 1 smoothed by a Gaussian of
variance d has slope 1/√(1 + π d/2) (erf-shaped steps), so this overstates the slope.  Of the
forms (four pivots × :data:`TWO_FACTOR_X` values of x, then :data:`TWO_FACTOR_REFINE` values
around the best) each tuple takes the one with the fewest points, and this form only where it
needs at most :data:`TWO_FACTOR_SAVING` of the points of the Cholesky form (a point here reads
three tables) and every variance is ≥ :data:`TWO_FACTOR_MIN_VARIANCE`.

Evaluation.  Row k reads the table of its factor (:func:`.table.g_table`) at s = √d_k: the compiled
kernel (:func:`.compiled.two_factor`) interpolates the table in s once per tuple and row, then in μ
per point by the same 6-point Lagrange formulas as :func:`.table.table_lookup`, which the numpy path
calls; the two agree to rounding.  Accuracy (``scripts/validate_twofactor.py``, docs/gaussian.md):
on the grid's kernels ≤ 3.3e-9 of the scale Π⟨f²⟩^{1/2}, where the Cholesky form gives ≤ 3.9e-9 on the
same tuples; both ~4e-7 at variances 0.02 … 0.3 (tanh) relative to the small scale there, from the
ladders' rules at small slopes.  Since 2026-12-02 small tuples (:data:`.ladder.SMALL_VARIANCE`) keep
the Cholesky form with its tightened rules (:mod:`.fast`): ≤ 1.1e-8 there, where this form (four
table reads per point, each with its floor) left 2e-8 even with those rules.
"""
from __future__ import annotations


import numpy as np

from .cone import chunks
from .context import Quadrature
from .ladder import points_per_tuple, rule_codes
from .pruning import envelope_ratio, prune_thresholds
from .rules import SPLIT_C, SPLIT_DC, rule_bank, rule_for_code, split_nodes
from .spacing import per_spacing, spacing_for
from .table import TABLE_REACH, extent_for, g_table, g_table_columns, table_lookup

__all__ = ["TWO_FACTOR_MIN_VARIANCE", "TWO_FACTOR_REFINE", "TWO_FACTOR_SAVING", "TWO_FACTOR_X",
           "TwoFactorForms", "integrate_two_factor", "two_factor_forms"]

#: the values of x = |A_p|² / C_pp tried per pivot p
TWO_FACTOR_X = tuple(np.linspace(0.1, 1.0, 10))
#: the values of x around the best x₀ of TWO_FACTOR_X tried next: x₀ ± one spacing of TWO_FACTOR_X, in
#: steps of a tenth of it (x₀ itself is the middle one)
TWO_FACTOR_REFINE = 21
#: a tuple takes the two-factor form where it needs at most this fraction of the points of the
#: Cholesky form
TWO_FACTOR_SAVING = 0.5
#: tuples with a variance below this keep the Cholesky form: on a deep GELU layer's kernels
#: (|x|²/n0 = 3, C_W = 2, layer 18) tuples with variances ~1e-4 were off by up to 9.5e-7 of the
#: scale Π⟨f²⟩^{1/2} in this form and 4.6e-7 in the Cholesky form; from variance 0.01 on ≤ 5.7e-10
#: and 8.7e-10
TWO_FACTOR_MIN_VARIANCE = 0.01
#: quadrature points per chunk of the numpy path (as :data:`.fast.FAST_CHUNK_POINTS`)
TWO_FACTOR_CHUNK_POINTS = 1 << 17


class TwoFactorForms:
    """Per tuple: ``ok`` (T,) whether a form was found; ``order`` (T, 4) the variables as rows
    (pivot first, the factor owned by w₁ second); ``A`` (T, 4, 2) the loadings of the rows;
    ``sd`` (T, 4) their private standard deviations √d; ``codes`` (T, 2) the rule codes of w₀, w₁;
    ``points`` (T,) the points of the rule (∞ where not ok)."""

    def __init__(self, ok, order, A, sd, codes, points):
        self.ok, self.order, self.A, self.sd, self.codes, self.points = ok, order, A, sd, codes, points

    def take(self, sel) -> "TwoFactorForms":
        """The forms of the tuples ``sel``."""
        return TwoFactorForms(self.ok[sel], self.order[sel], self.A[sel], self.sd[sel],
                              self.codes[sel], self.points[sel])


def _forms(Co: np.ndarray, x: np.ndarray):
    """(ok, A, d) (X, T, …) of the forms of the covariances Co (T, 4, 4), pivot first (row 0;
    rows 1–3 the others in order), at |A_0|² = x C_00 for each x (X, T) or (X, 1) (module
    docstring)."""
    a = np.sqrt(x * Co[None, :, 0, 0])                                   # (X, T)
    t = 1.0 / (a * a)
    c0 = Co[None, :, 0, 1:]                                             # (1, T, 3)
    R12 = Co[:, 1, 2] - c0[..., 0] * c0[..., 1] * t
    R13 = Co[:, 1, 3] - c0[..., 0] * c0[..., 2] * t
    R23 = Co[:, 2, 3] - c0[..., 1] * c0[..., 2] * t
    ok = R12 * R13 * R23 > 0
    with np.errstate(all="ignore"):
        b1 = np.sqrt(np.where(ok, R12 * R13 / R23, 1.0))
    A = np.zeros(a.shape + (4, 2))
    A[..., 0, 0] = a
    A[..., 1:, 0] = c0 / a[..., None]
    A[..., 1, 1] = b1
    A[..., 2, 1] = R12 / b1
    A[..., 3, 1] = R13 / b1
    diag = np.einsum("tkk->tk", Co)
    # |A_k|² and the tests per row written out: reductions over axes of length 2 and 4 cost numpy
    # a call per element (~0.2 s of a softplus network's 19 searches); the same numbers
    d = diag - (A[..., 0] * A[..., 0] + A[..., 1] * A[..., 1])
    # rounding: a form that exists has d ≥ 0 up to a few ulps of C
    floor = -1e-12 * diag
    for k in range(4):
        ok &= (d[..., k] >= floor[..., k]) & np.isfinite(d[..., k])
    return ok, A, np.maximum(d, 0.0)


def _slopes(A: np.ndarray, e: np.ndarray, own1: np.ndarray):
    """(own, inside) (…, 2) of :func:`.ladder.slopes` for the rows of A (…, 4, 2) with scales
    e (…, 4), the columns of A as the coordinates w₀, w₁: row 0 is owned by w₀, row ``own1``
    (…) ∈ {1, 2, 3} by w₁; along w₀ the rows 1–3 are smoothed by w₁,
    ŝ² = |ℓ'|² − (ℓ'·b')²/(1 + |b'|²) with ℓ' = e A_·0 and b' = e A_·1 (the rank-one case of the
    ladder's (I + Σ')⁻¹); along w₁ the two rows not owned are not smoothed."""
    l1, l2, l3 = (e[..., k] * A[..., k, 0] for k in (1, 2, 3))
    b1, b2, b3 = (e[..., k] * A[..., k, 1] for k in (1, 2, 3))
    lb = l1 * b1 + l2 * b2 + l3 * b3
    smooth = l1 * l1 + l2 * l2 + l3 * l3 - lb * lb / (1.0 + b1 * b1 + b2 * b2 + b3 * b3)
    steep = np.maximum(np.maximum(np.abs(l1), np.abs(l2)), np.abs(l3))
    b1, b2, b3 = np.abs(b1), np.abs(b2), np.abs(b3)
    mine = np.where(own1 == 1, b1, np.where(own1 == 2, b2, b3))
    others = np.where(own1 == 1, np.maximum(b2, b3), np.where(own1 == 2, np.maximum(b1, b3),
                                                                 np.maximum(b1, b2)))
    own = np.stack([e[..., 0] * np.abs(A[..., 0, 0]), mine], -1)
    inside = np.stack([np.minimum(steep, np.sqrt(np.maximum(smooth, 0.0))), others], -1)
    return own, inside


def _candidates(Co: np.ndarray, x: np.ndarray, kap: np.ndarray, slack: float, ladder):
    """(ok, A, d, own1, codes, points) of the forms of Co (pivot first) at x (X, T) or (X, 1),
    with the rows' sharpness ``kap`` (T, 4) or (4,): the row owned by w₁ is the one that varies
    fastest along it (its smoothed scale)."""
    ok, A, d = _forms(Co, x)
    e = 1.0 / np.sqrt(1.0 + d)
    own1 = 1 + np.argmax(np.abs(A[..., 1:, 1]) * e[..., 1:], axis=-1)
    # slopes and rules only of the candidates that are forms (deep layers: ~60 % of the tuples have
    # one; the others' points are ∞ and their codes unused)
    codes = np.zeros(ok.shape + (2,), np.intp)
    points = np.full(ok.shape, np.inf)
    if np.any(ok):
        Ak, dk, ok1 = A[ok], d[ok], own1[ok]
        own, inside = _slopes(Ak, e[ok], ok1)
        sharp = None
        if np.any(kap < 1):
            kk = np.broadcast_to(kap, ok.shape + (4,))[ok]
            sharp = _slopes(Ak, kk / np.sqrt(1.0 + kk * kk * dk), ok1)
        codes[ok] = rule_codes(own, inside, slack, ladder, sharp)
        points[ok] = points_per_tuple(codes[ok])
    return ok, A, d, own1, codes, points


def two_factor_forms(C: np.ndarray, kappa, slack: float, ladder) -> TwoFactorForms:
    """The cheapest two-factor form of each covariance C (T, 4, 4) (module docstring), for the
    factors' sharpness ``kappa`` (4,) in the variables' order: every pivot at the values
    :data:`TWO_FACTOR_X` of x, then :data:`TWO_FACTOR_REFINE` values around the best one (the
    points fall by up to 40 % on deep layers' kernels against the coarse values alone)."""
    T = C.shape[0]
    kappa = np.asarray(kappa, dtype=float)
    rows = np.arange(T)
    x = np.asarray(TWO_FACTOR_X)[:, None]
    pivots = np.array([[p] + [k for k in range(4) if k != p] for p in range(4)])
    best_pts = np.full(T, np.inf)
    best_p = np.zeros(T, np.intp)
    best_x = np.ones(T)
    for p, o in enumerate(pivots):
        points = _candidates(C[:, o][:, :, o], x, kappa[o], slack, ladder)[-1]
        i = np.argmin(points, axis=0)
        up = points[i, rows] < best_pts
        best_pts[up], best_p[up], best_x[up] = points[i, rows][up], p, x[i[up], 0]
    # around the best x of the best pivot; the coarse best is among the candidates (offset 0)
    order = pivots[best_p]                                                  # (T, 4)
    Co = C[rows[:, None, None], order[:, :, None], order[:, None, :]]
    step = TWO_FACTOR_X[1] - TWO_FACTOR_X[0]
    xr = np.clip(best_x + step * np.linspace(-1, 1, TWO_FACTOR_REFINE)[:, None], 1e-3, 1.0)
    ok, A, d, own1, codes, points = _candidates(Co, xr, kappa[order], slack, ladder)
    i = np.argmin(points, axis=0)                                           # first of the fewest
    A, d, k, codes, pts = A[i, rows], d[i, rows], own1[i, rows], codes[i, rows], points[i, rows]
    # rows in the order (pivot, owned by w₁, the other two); w₁ → −w₁ so that A_11 > 0
    perm = np.tile(np.arange(4), (T, 1))
    perm[rows, k] = 1
    perm[:, 1] = k
    A = np.take_along_axis(A, perm[..., None], 1)
    A[..., 1] *= np.where(A[:, 1, 1] < 0, -1.0, 1.0)[:, None]
    return TwoFactorForms(np.isfinite(pts), np.take_along_axis(order, perm, 1), A,
                          np.sqrt(np.take_along_axis(d, perm, 1)), codes, pts)


def _extent(forms: TwoFactorForms) -> tuple[float, float]:
    """(M, S) of the tables (:func:`.table.extent_for`): the rows' μ = A_k · w has standard
    deviation |A_k|, their s = √d_k."""
    return extent_for(float(np.sqrt(np.max(np.sum(forms.A * forms.A, axis=2)))), float(np.max(forms.sd)))


def _lookup(tab, M: float, h: float, A: np.ndarray, sd: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """G(μ, s) of one factor per tuple (T,) at μ (T, P) from its table (tab, M) of spacing h,
    whose clamp reaches TABLE_REACH standard deviations |A| (A: (T, 2)) of μ."""
    L = np.zeros((A.shape[0], 2, 2))
    L[:, 1, 0], L[:, 1, 1] = np.sqrt(np.sum(A * A, axis=1)), sd
    return table_lookup(tab, M, (mu + M) / h, L, 2, h)


def _envelope_ratio(distinct: list, tid: np.ndarray, forms: TwoFactorForms,
                    umax: np.ndarray) -> np.ndarray:
    """Π_k env_k(R_k)/env_k(2σ_k) of :mod:`.pruning` per tuple: row k reads G_k(A_k · w, s_k), an
    average of its factor f over |z| ≤ R_k = |A_k0| u_max,0 + |A_k1| u_max,1 + TABLE_REACH s_k
    (``umax`` (T, 2): the largest node of each level's rule); σ_k² = |A_k|² + s_k²; ``tid``
    (T, 4): each row's factor in ``distinct``."""
    reach = np.einsum("tkj,tj->tk", np.abs(forms.A), umax) + TABLE_REACH * forms.sd
    sd = np.sqrt(np.sum(forms.A * forms.A, axis=2) + forms.sd ** 2)
    ratio = np.ones(tid.shape[0])
    for k in range(tid.shape[1]):
        per = np.stack([envelope_ratio(f, 1.0, reach[:, k], sd[:, k]) for f in distinct])
        ratio *= np.take_along_axis(per, tid[None, :, k], axis=0)[0]
    return ratio


def integrate_two_factor(factors, forms: TwoFactorForms, codes: np.ndarray,
                         quad: Quadrature) -> np.ndarray:
    """E[Π_k f_k(z_k)] by the two-factor forms (all ``forms.ok``) with rule codes (T, 2) (those of
    ``forms``, the outer one halved where the integrand is even in w): the compiled kernel
    (:func:`.compiled.two_factor`) where :func:`.fast.nested_compiled` would run, else numpy over
    chunks of tuples that share their codes; the two agree to rounding.  ``factors``: the four
    factors of the variables, in C's order.  The rows read their tables on one grid, the finest
    of their factors' spacings (:mod:`.spacing`), or the finest grid where a row's variance
    |A_k|² + d_k is below SPACING_MIN_VARIANCE."""
    T = forms.A.shape[0]
    quad.count("two_factor_tuples", T)
    distinct = list(dict.fromkeys(factors))

    def run(sel, h):
        if sel is None:
            return _two_factor_at(distinct, factors, forms, codes, quad, h)
        return _two_factor_at(distinct, factors, forms.take(sel), codes[sel], quad, h)
    # one grid for the four rows; a tuple with a row of small variance on the finest (.spacing)
    return per_spacing(spacing_for(distinct, quad), np.min(np.sum(forms.A * forms.A, axis=2) + forms.sd ** 2, axis=1),
                       run)


def _two_factor_at(distinct: list, factors, forms: TwoFactorForms, codes: np.ndarray, quad: Quadrature,
                   h: float) -> np.ndarray:
    """:func:`integrate_two_factor` with the tables at spacing h."""
    T = forms.A.shape[0]
    M, S = _extent(forms)
    tables = [g_table(f, M, S, quad, h) for f in distinct]
    tid = np.array([distinct.index(f) for f in factors])[forms.order]  # (T, 4): table per row
    if quad.wants_kernel(np.sum(forms.points)):
        from . import compiled as gj
        if gj.available():
            Mc = min(Mt for _, Mt in tables)
            Jc = min(tab.shape[1] for tab, _ in tables)
            Ic = int(round(Mc / h))
            # the kernel reads the tables in columns (n_s, n_μ): g_table_columns
            cols = [g_table_columns(f, tab, h) for f, (tab, _) in zip(distinct, tables)]
            if len(tables) == 1:
                tabs = cols[0][None]
            else:
                tabs = np.stack([c[:Jc, int(round(Mt / h)) - Ic:int(round(Mt / h)) + Ic + 1]
                                 for c, (_, Mt) in zip(cols, tables)])
            bank, lut, lo = rule_bank(tuple(int(c) for c in np.unique(codes)), quad.tables)
            thr = prune_thresholds(_envelope_ratio(distinct, tid, forms, bank[5][lut[codes - lo]]),
                                   points_per_tuple(codes))
            out = gj.guarded(gj.two_factor, forms.A, forms.sd, tid, lut[codes - lo], bank, tabs, Mc,
                             h, h, TABLE_REACH, SPLIT_C, SPLIT_DC, thr=thr,
                             pool=quad.pool, groups=8 * quad.threads)
            quad.kernel_ran(T)
            return out
    out = np.empty(T)
    keys, inv = np.unique(codes, axis=0, return_inverse=True)
    inv = np.ravel(inv)
    for gi, key in enumerate(keys):
        idx = np.nonzero(inv == gi)[0]
        U0, W0 = (np.ravel(a) for a in split_nodes(rule_for_code(int(key[0]), quad.tables), 0.0))
        rules1 = rule_for_code(int(key[1]), quad.tables)
        per = U0.size * rules1[0].shape[1]
        for sl in chunks(idx.size, per, TWO_FACTOR_CHUNK_POINTS):
            ii = idx[sl]
            A, sd, rows = forms.A[ii], forms.sd[ii], tid[ii]
            # the outer coordinate's nodes (n0,), the inner ones per tuple and outer node
            U1, W1 = split_nodes(rules1, -A[:, 1, 0, None] * U0 / A[:, 1, 1, None])
            U1 = np.broadcast_to(U1, (ii.size, U0.size, U1.shape[-1]))
            W1 = np.broadcast_to(W1, U1.shape)
            g0 = np.empty((ii.size, U0.size))
            inner = W1.copy()
            for row in range(4):
                for k, (tab, Mt) in enumerate(tables):
                    sel = rows[:, row] == k
                    if not np.any(sel):
                        continue
                    a = A[sel, row]
                    if row == 0:
                        g0[sel] = _lookup(tab, Mt, h, a, sd[sel, 0], a[:, 0, None] * U0)
                        continue
                    mu = a[:, 0, None, None] * U0[:, None] + a[:, 1, None, None] * U1[sel]
                    inner[sel] *= _lookup(tab, Mt, h, a, sd[sel, row],
                                          mu.reshape(mu.shape[0], -1)).reshape(mu.shape)
            out[ii] = np.einsum("tn,n,tn->t", g0, W0, np.sum(inner, axis=2))
    return out
