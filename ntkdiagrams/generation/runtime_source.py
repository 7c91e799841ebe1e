"""Source of the runtime that every generated module carries (Gaussian expectation tensors).

This file is not imported by the package: :mod:`ntkdiagrams.generation.generate` copies the text
between the two ``runtime`` marker lines into each generated module, after the target's imports
(``np`` is numpy for index tables; ``xp`` is numpy, or jax.numpy for the JAX target) and the
constants: ``ADAPTIVE`` (True for numpy), ``FAST`` / ``ORTHANT`` (the package's fast-path and
orthant constants), ``CONE_DEGREE`` / ``CONE_RADIAL`` / ``RADIAL`` / ``RADIAL1`` / ``SIMPLEX``
(radial and simplex rules), ``FIXED_HALF`` / ``FIXED_MAX_SCALE`` (JAX), and per function ``_F``,
``_KINKED``, ``_POLY``, ``_PIECES``.

Expectations T[a₁…a_k] = ⟨f₁(z_{a₁})⋯f_k(z_{a_k})⟩_K over every index tuple: the tuples (sorted
within slots of the same function) are grouped by their pattern of coinciding indices, and each
group is integrated over its m distinct variables z ~ N(0, C), slot s reading its tuple's variable.

numpy target — the package's own methods (``ntkdiagrams.numerics.gaussian``; docs/gaussian.md),
ported rule for rule, so that the module agrees with ``ntkdiagrams.evaluate`` to rounding,
with two exceptions: the package's parity (:func:`ntkdiagrams.numerics.gaussian.fast.symmetry`:
half the outermost rule for even integrands, 0 for odd ones; the full rule here agrees to
~1e-12), and its exact sums for trigonometric factors
(:mod:`ntkdiagrams.numerics.gaussian.trigonometric`; for σ = sin this module keeps the fast path,
whose error, ~1e-8 of V per layer, is then the difference).  The functions' sharpness κ
(:mod:`ntkdiagrams.numerics.gaussian.sharpness`, the ladders' slope ratio of functions smoother
than tanh) is computed by the package when the module is generated (:data:`_SHARP`):

* smooth functions, m ≥ 2, largest variance × κ² ≤ FAST["MAX_VARIANCE"]: the fast path — nested split
  Gauss rules in the Cholesky coordinates z = L u, one rule per coordinate from the ladders by its
  slope (Gauss–Hermite for small slopes; tuples whose variances are all ≤ FAST["SMALL_VARIANCE"]
  take tightened rungs without the owned function's slack), for m ≥ 3 the innermost integral
  G(μ, s) = E[f(μ + sξ)] read from a table (6 × 6-point Lagrange); the order of identical single
  slots with the fewest points; four single functions whose covariance has a two-factor form
  C = A Aᵀ + diag(d) (d ≥ 0, every variance ≥ FAST["TWO_FACTOR_MIN_VARIANCE"], not all ≤
  FAST["SMALL_VARIANCE"]) that saves points: the integral over
  the two shared coordinates of the four functions' tables (ntkdiagrams.numerics.gaussian.twofactor);
  tuples beyond the ladders and larger variances: the cone method (default degrees);
* smooth functions, m = 1: the cone method's 64-point radial rule;
* piecewise-polynomial functions (ReLU family), m ≥ 2: closed-form orthant moments (Stein's lemma
  down to orthant probabilities P_2, P_3 closed, P_4 a graded 1-D integral; covariances of rank
  m − 1 reduced exactly), the cone method where the correlations are ill-conditioned; m = 1: the
  exact radial rule of ⌊P/2⌋ + 1 nodes.

JAX target — fixed shapes for jit: smooth functions by the trapezoid rule on [−8.6, 8.6] in every
Cholesky coordinate with FIXED_HALF[m] nodes per side, accurate to ~1e-8 while every coordinate
scale s_j = max_i |L_ij| ≤ FIXED_MAX_SCALE[m] (1.6, 1.1, 0.7, 0.4 for m = 1 … 4; h ≤ 0.15/s_j,
calibrated on tanh and its derivatives), ValueError (eager) or NaN (jit) beyond, node counts for a
larger ``max_scale`` on request; piecewise-polynomial functions by the same orthant moments (all 48
panels of the P_4 integral, no rank reduction) and exact 1-D rules.
"""
import itertools
import math  # noqa: F401  (the marker below starts the copied text)
import numpy as np
import numpy as xp

ADAPTIVE = True
FIXED_HALF = {1: 96, 2: 64, 3: 40, 4: 24}
FIXED_MAX_SCALE = {1: 1.6, 2: 1.1, 3: 0.7, 4: 0.4}
RADIAL = {}
SIMPLEX = {}
KINK_ARC_NODES = 24
CONE_RADIAL = {}
CONE_DEGREE = {1: (64, 0), 2: (40, 40), 3: (16, 12), 4: (12, 8)}
FAST = {}
ORTHANT = {}
_PIECES = {}
RADIAL1 = {}
_F = {}
_KINKED = {}
_POLY = {}
_SHARP = {}

# --- runtime begin ---
R_MAX = 8.6
H_PER_SCALE = 0.15
CHUNK_POINTS = 1 << 21
_RULES = {}


def _rule(code):
    """JAX target: the trapezoid rule of the weight φ(u) on [−R, R] with 2·code + 1 nodes."""
    h = R_MAX / code
    t = np.arange(-code, code + 1) * h
    return t, h * np.exp(-t * t / 2) / math.sqrt(2 * math.pi)


def _grid(codes):
    """Product of the rules ``codes`` (one per coordinate), without the points of weight < 1e-18."""
    key = ("grid",) + tuple(int(c) for c in codes)
    if key not in _RULES:
        t, w = np.zeros((1, 0)), np.ones(1)
        for c in key[1:]:
            tc, wc = _rule(c)
            t = np.concatenate([np.repeat(t, tc.size, 0), np.tile(tc, t.shape[0])[:, None]], 1)
            w = np.repeat(w, tc.size) * np.tile(wc, w.size)
            keep = w > 1e-18
            t, w = t[keep], w[keep]
        _RULES[key] = (t, w)
    return _RULES[key]


def _cholesky(C):
    """Lower Cholesky factors (T, m, m) of PSD matrices; a (numerically) zero pivot gives a zero column."""
    m = C.shape[-1]
    L = [[None] * m for _ in range(m)]
    zero = xp.zeros(C.shape[0])
    for j in range(m):
        d = C[:, j, j] - sum((L[j][k] ** 2 for k in range(j)), zero)
        tiny = d <= 1e-13 * xp.maximum(C[:, j, j], 1e-300)
        sd = xp.sqrt(xp.where(tiny, 1.0, d))
        L[j][j] = xp.where(tiny, 0.0, sd)
        for i in range(j + 1, m):
            v = (C[:, i, j] - sum((L[i][k] * L[j][k] for k in range(j)), zero)) / sd
            L[i][j] = xp.where(tiny, 0.0, v)
        for i in range(j):
            L[i][j] = zero
    return xp.stack([xp.stack(row, -1) for row in L], -2)


def _scatter(parts, n):
    """Values of (index array, values) parts, put back in index order (numpy and jax alike)."""
    idx = np.concatenate([p[0] for p in parts])
    vals = xp.concatenate([p[1] for p in parts])
    return vals[np.argsort(idx)]


def _slot(zv, col):
    """Per tuple t (leading axis), the variable col[t] of zv (T, ..., m)."""
    if np.all(col == col[0]):
        return zv[..., int(col[0])]
    out = zv[..., 0]
    shape = (-1,) + (1,) * (zv.ndim - 2)
    for v in range(1, zv.shape[-1]):
        out = xp.where((col == v).reshape(shape), zv[..., v], out)
    return out


def _slots_product(funcs, smap, z):
    """Π_s f_s(z_{smap[s]}): slot s reads the tuple's variable smap[:, s]."""
    out = None
    for s, fn in enumerate(funcs):
        v = fn(_slot(z, smap[:, s]))
        out = v if out is None else out * v
    return out


def _integrate_smooth(funcs, smap, C, max_scale=None):
    """JAX target: E[Π_s f_s(z_{smap[s]})], z ~ N(0, C), C (T, m, m), by a fixed product rule (fixed
    shapes for jit): the trapezoid rule on [−R, R] in every Cholesky coordinate, FIXED_HALF[m] nodes
    per side, accurate to ~1e-8 while every coordinate scale s_j = max_i |L_ij| is ≤
    FIXED_MAX_SCALE[m] (spacing h ≤ H_PER_SCALE / s_j).  ``max_scale`` (a number, static under jit):
    the node counts for that scale instead.  Beyond the scale: ValueError when called eagerly,
    NaN entries under jit."""
    m = C.shape[1]
    L = _cholesky(C)
    if max_scale is None:
        limit, half = FIXED_MAX_SCALE[m], FIXED_HALF[m]
    else:
        limit = float(max_scale)
        half = max(12, int(math.ceil(limit * R_MAX / H_PER_SCALE)))
    t, w = _grid((half,) * m)
    z = xp.stack([sum(L[:, i, j, None] * t[None, :, j] for j in range(i + 1)) for i in range(m)], -1)
    val = _slots_product(funcs, smap, z) @ w
    scale = xp.max(xp.abs(L), axis=1)
    bad = xp.any(scale > limit, axis=1)
    try:
        beyond = bool(xp.any(bad))
    except Exception:  # a traced value under jax.jit: cannot raise, the entries become NaN
        return xp.where(bad, xp.nan, val)
    if beyond:
        raise ValueError(f"a Gaussian expectation over {m} distinct inputs has a coordinate scale "
                         f"{float(xp.max(scale)):.3g} > {limit:.3g}, beyond the JAX target's fixed rules "
                         f"({half} nodes per side; accurate to ~1e-8 up to that scale): pass max_scale= a "
                         "larger bound (static; (2*ceil(57*max_scale)+1)**m points per tuple), or use the "
                         "numpy target")
    return val


def _branches(funcs, smap, z, s):
    """Π_s f_s^{±}(z_v), v = smap[:, s]: the branch of each function on the side sign(z_v) = s_v."""
    out = None
    for k, (plus, minus) in enumerate(funcs):
        zs, ss = _slot(z, smap[:, k]), _slot(s, smap[:, k])
        v = xp.where(ss > 0, plus(zs), minus(zs))
        out = v if out is None else out * v
    return out


def _integrate_kinked(funcs, smap, C):
    """E[Π_b F_b(z_b)] for piecewise-polynomial factors with kinks at 0: the cone method
    (exact radial rule; exact arcs for m ≤ 2; spherical simplices for m = 3, 4)."""
    m = C.shape[1]
    L = _cholesky(C)
    if m == 1:
        r, w = RADIAL[0]
        s = L[:, 0, 0]
        zp = (s[:, None] * r[None, :])[..., None]
        one = xp.ones(zp.shape)
        return (_branches(funcs, smap, zp, one) @ w + _branches(funcs, smap, -zp, -one) @ w) / math.sqrt(2 * math.pi)
    if m == 2:
        return _arcs(funcs, smap, L, RADIAL[1], KINK_ARC_NODES)
    return _simplices(funcs, smap, L, RADIAL[m - 1], SIMPLEX[m])


def _arcs(funcs, smap, L, radial, n_a):
    """m = 2: the circle cut at the four rays where z₀ = 0 or z₁ = 0; n_a-point Gauss–Legendre per
    arc, the radial rule ``radial`` (weight r e^{−r²/2})."""
    r, wr = radial
    x, wx = np.polynomial.legendre.leggauss(n_a)
    base = xp.arctan2(L[:, :, 1], L[:, :, 0])
    rays = xp.sort(xp.concatenate([base + np.pi / 2, base - np.pi / 2], axis=1) % (2 * np.pi), axis=1)
    ends = xp.concatenate([rays[:, 1:], rays[:, :1] + 2 * np.pi], axis=1)
    half = (ends - rays) / 2
    mid = (ends + rays) / 2
    phi = mid[:, :, None] + half[:, :, None] * x[None, None, :]
    wphi = half[:, :, None] * wx[None, None, :]
    om = xp.stack([xp.cos(phi), xp.sin(phi)], axis=-1)
    d = xp.einsum("tjk,tsqk->tsqj", L, om)
    sgn = xp.sign(xp.einsum("tjk,tsk->tsj", L, xp.stack([xp.cos(mid), xp.sin(mid)], axis=-1)))
    zz = d[:, :, :, None, :] * r[None, None, None, :, None]  # (T, 4, n_a, n_r, 2)
    s = xp.broadcast_to(sgn[:, :, None, None, :], zz.shape)
    prod = _branches(funcs, smap, zz, s)
    return xp.einsum("tsqr,tsq,r->t", prod, wphi, wr) / (2 * np.pi)


def _simplices(funcs, smap, L, radial, simplex):
    """m = 3, 4 (numpy only): the orthant cones as simplicial cones spanned by the columns of
    ±L⁻¹, bisected until every edge is ≤ 80°, each integrated with the collapsed Gauss–Jacobi
    rule through the central projection × the radial rule."""
    if not ADAPTIVE:
        raise NotImplementedError("the JAX target integrates kinked activations over at most two distinct "
                                  "inputs per expectation; use the numpy target for three or more inputs")
    L = np.asarray(L)
    n, m = L.shape[0], L.shape[1]
    Linv = np.linalg.inv(L)
    r, wr = radial
    t, wt = simplex
    Vs, tids, eps_list = [], [], []
    for eps in np.array(np.meshgrid(*[[1.0, -1.0]] * m, indexing="ij")).reshape(m, -1).T:
        G = Linv * eps[None, None, :]
        Vs.append(G / np.linalg.norm(G, axis=1, keepdims=True))
        tids.append(np.arange(n))
        eps_list.append(np.broadcast_to(eps, (n, m)))
    V, tid, E = np.concatenate(Vs), np.concatenate(tids), np.concatenate(eps_list)
    cos_max = math.cos(math.radians(80.0))
    iu = np.triu_indices(m, 1)
    for _ in range(40):
        G = np.einsum("nki,nkj->nij", V, V)[:, iu[0], iu[1]]
        worst = np.argmin(G, axis=1)
        split = G[np.arange(G.shape[0]), worst] < cos_max
        if not np.any(split):
            break
        si = np.nonzero(split)[0]
        a, b = iu[0][worst[si]], iu[1][worst[si]]
        mid = V[si, :, a] + V[si, :, b]
        mid /= np.linalg.norm(mid, axis=1, keepdims=True)
        A, B = V[si].copy(), V[si].copy()
        A[np.arange(si.size), :, b] = mid
        B[np.arange(si.size), :, a] = mid
        keep = ~split
        V = np.concatenate([V[keep], A, B])
        tid = np.concatenate([tid[keep], tid[si], tid[si]])
        E = np.concatenate([E[keep], E[si], E[si]])
    detV = np.abs(np.linalg.det(V))
    total = np.zeros(n)
    Q = t.shape[0]
    step = max(1, CHUNK_POINTS // (Q * r.size))
    for a0 in range(0, V.shape[0], step):
        sl = slice(a0, a0 + step)
        x = np.einsum("nij,qj->nqi", V[sl], t)
        nx = np.linalg.norm(x, axis=2)
        jac = detV[sl, None] / nx ** m * wt[None, :]
        d = np.einsum("nij,nqj->nqi", L[tid[sl]], x / nx[:, :, None])
        zz = d[:, :, None, :] * r[None, None, :, None]
        s = np.broadcast_to(E[sl][:, None, None, :], zz.shape)
        val = np.sum((_branches(funcs, smap[tid[sl]], zz, s) @ wr) * jac, axis=1)
        total += np.bincount(tid[sl], weights=val, minlength=n)
    return total / (2 * np.pi) ** (m / 2)


# ---- numpy target: the fast path of ntkdiagrams.numerics.gaussian (fast, ladder, rules, table,
# nested), ported rule for rule so that the numbers agree with ntkdiagrams.evaluate to rounding.
# FAST holds the package's constants (ladders, split-rule grid, table spacings).

def _cholesky_np(C):
    """Batched lower Cholesky factors (n, m, m) of PSD matrices, tiny pivots (≤ 1e-13 C_jj) clamped
    to 0; a matrix singular to rounding gets 1e-12 · max_j C_jj on its diagonal first."""
    def chol(C):
        n, m, _ = C.shape
        L = np.zeros_like(C)
        ok = np.ones(n, bool)
        for j in range(m):
            d = C[:, j, j] - np.sum(L[:, j, :j] ** 2, axis=1)
            tiny = d <= 1e-13 * np.maximum(C[:, j, j], 1e-300)
            ok &= ~tiny
            sd = np.sqrt(np.where(tiny, 1.0, d))
            L[:, j, j] = np.where(tiny, 0.0, sd)
            for i in range(j + 1, m):
                v = (C[:, i, j] - np.sum(L[:, i, :j] * L[:, j, :j], axis=1)) / sd
                L[:, i, j] = np.where(tiny, 0.0, v)
        return L, ok
    L, ok = chol(C)
    if not np.all(ok):
        bad = ~ok
        m = C.shape[1]
        jit = 1e-12 * np.max(np.einsum("nii->ni", C[bad]), axis=1)
        C = C.copy()
        C[bad] += jit[:, None, None] * np.eye(m)
        L[bad] = chol(C[bad])[0]
    return C, L


def _split_rules(n):
    """Gauss rules of the weight φ on [c, ∞) for the grid of split points c (Stieltjes procedure on
    a 400-point Gauss–Legendre discretisation, Golub–Welsch), full line: the rule of [c, ∞)
    followed by the mirrored rule of (−∞, c].  Returns (nodes (G, 2n), weights (G, 2n))."""
    key = ("split", n)
    if key in _RULES:
        return _RULES[key]
    terms = max(n, FAST["SPLIT_RECURRENCE_TERMS"])
    rkey = ("recurrence", terms)
    if rkey not in _RULES:
        c_max, dc = FAST["SPLIT_C"], FAST["SPLIT_DC"]
        cs = np.arange(-c_max, c_max + dc / 2, dc)
        try:  # the package's discretisation (numpy's leggauss(400) agrees to rounding, ~100x slower)
            from scipy.special import roots_legendre
            x, w = roots_legendre(400)
        except ImportError:
            x, w = np.polynomial.legendre.leggauss(400)
        a = cs[:, None]
        b = np.maximum(cs + 7.5, 9.5)[:, None]
        X = (b - a) / 2 * x[None] + (b + a) / 2
        Wd = (b - a) / 2 * w[None] * np.exp(-X ** 2 / 2) / math.sqrt(2 * math.pi)
        G = cs.size
        alpha, beta = np.zeros((G, terms)), np.zeros((G, terms))
        p_prev, p = np.zeros_like(X), np.ones_like(X)
        norm = np.sum(Wd, axis=1)
        mass, norm_prev = norm.copy(), norm
        for k in range(terms):
            alpha[:, k] = np.sum(Wd * X * p * p, axis=1) / norm
            if k:
                beta[:, k] = norm / norm_prev
            p_new = (X - alpha[:, k:k + 1]) * p - (beta[:, k:k + 1] * p_prev if k else 0.0)
            p_prev, p = p, p_new
            norm_prev, norm = norm, np.sum(Wd * p * p, axis=1)
            sc = np.sqrt(norm)
            p, p_prev = p / sc[:, None], p_prev / sc[:, None]
            norm, norm_prev = norm / sc ** 2, norm_prev / sc ** 2
        _RULES[rkey] = (alpha, beta, mass)
    alpha, beta, mass = _RULES[rkey]
    G = alpha.shape[0]
    J = np.zeros((G, n, n))
    i = np.arange(n)
    J[:, i, i] = alpha[:, :n]
    J[:, i[1:], i[:-1]] = J[:, i[:-1], i[1:]] = np.sqrt(beta[:, 1:n])
    ev, V = np.linalg.eigh(J)
    X, W = ev, mass[:, None] * V[:, 0, :] ** 2
    _RULES[key] = (np.ascontiguousarray(np.concatenate([X, -X[::-1]], axis=1)),
                   np.ascontiguousarray(np.concatenate([W, W[::-1]], axis=1)))
    return _RULES[key]


def _split_index(c):
    """Row of the split-rule tables for split points c (clipped, rounded to the grid)."""
    c_max, dc = FAST["SPLIT_C"], FAST["SPLIT_DC"]
    return np.rint((np.clip(c, -c_max, c_max) + c_max) / dc).astype(np.intp)


def _rule_for_code(code):
    """(U, W) of a rule code: split rules (G, 2n) for n > 0, Gauss–Hermite (1, k) for −k."""
    code = int(code)
    if code > 0:
        return _split_rules(code)
    key = ("gh", code)
    if key not in _RULES:
        x, w = np.polynomial.hermite_e.hermegauss(-code)
        _RULES[key] = (x[None, :], (w / math.sqrt(2 * math.pi))[None, :])
    return _RULES[key]


def _slopes(L, outer, a=None):
    """(own, inside) per tuple and outer coordinate u_j: a_j |L_jj|, and the slope of the functions
    inside, min(max_{k>j} a_k |L_kj|, √(ℓᵀ(I + L_in L_inᵀ)⁻¹ℓ)) with ℓ = a ∘ L[j+1:, j],
    L_in = diag(a) L[j+1:, j+1:] (smoothed by the coordinates they are integrated over); the
    scales a (T, m) are 1 (None) or the functions' sharpness (:data:`_SHARP`)."""
    T, m = L.shape[0], L.shape[1]
    a = np.ones((T, m)) if a is None else a
    own, inside = np.empty((T, outer)), np.zeros((T, outer))
    for j in range(outer):
        own[:, j] = a[:, j] * np.abs(L[:, j, j])
        if j + 1 == m:
            continue
        ell = a[:, j + 1:] * L[:, j + 1:, j]
        Lin = a[:, j + 1:, None] * L[:, j + 1:, j + 1:]
        A = np.eye(m - j - 1) + Lin @ np.swapaxes(Lin, 1, 2)
        smooth = np.sqrt(np.einsum("ti,ti->t", ell, np.linalg.solve(A, ell[..., None])[..., 0]))
        inside[:, j] = np.minimum(np.max(np.abs(ell), axis=1), smooth)
    return own, inside


def _small_ladder(lad):
    """The rungs for small tuples (effective variance ≤ FAST["SMALL_VARIANCE"]): bounds times
    FAST["SMALL_TIGHTENING"]^(−1/(2q)), q = |code| ≥ FAST["SMALL_MIN_NODES"]."""
    return tuple((b * FAST["SMALL_TIGHTENING"] ** (-0.5 / abs(c)), c) for b, c in lad
                 if abs(c) >= FAST["SMALL_MIN_NODES"])


def _ladder_codes(lad, s, slack):
    """The code of the first rung with s ≤ bound · slack; 0 beyond the ladder."""
    bounds = np.array([b for b, _ in lad]) * slack
    return np.array([c for _, c in lad] + [0])[np.searchsorted(bounds, s)]


def _rule_codes(own, inside, slack, split_ladder, sharp=None, small=None):
    """Rule codes per tuple and outer coordinate u_j from the slopes of :func:`_slopes`: the first
    rung (bound, code) of the ladder with max(own_j, slack · inside_j) ≤ bound · slack (the slack
    for the owned function only); 0 beyond the ladder.  ``sharp``: the slopes with the functions'
    sharpness; a slope beyond SHARPNESS_FROM · slack enters as max(its sharpened slope, just
    above SHARPNESS_FROM · slack).  ``small``: mask of small tuples, which take the ladders of
    :func:`_small_ladder` without the slack for the owned function."""
    T, outer = own.shape
    out = np.empty((T, outer), np.intp)
    rows = [(slice(None), 1.0, split_ladder, FAST["LADDER_GH"])]
    if small is not None and np.any(small):
        rows = [(~small, 1.0, split_ladder, FAST["LADDER_GH"]),
                (small, slack, _small_ladder(split_ladder), _small_ladder(FAST["LADDER_GH"]))]
    for sel, own_slack, split_lad, gh_lad in rows:
        S = np.maximum(own_slack * own[sel], slack * inside[sel])
        if sharp is not None:
            edge = FAST["SHARPNESS_FROM"] * slack
            Sk = np.maximum(own_slack * sharp[0][sel], slack * sharp[1][sel])
            S = np.where(S <= edge, S, np.maximum(Sk, np.nextafter(edge, np.inf)))
        codes = np.empty(S.shape, np.intp)
        for j in range(outer):
            sj = S[:, j]
            codes[:, j] = _ladder_codes(split_lad, sj, slack)
            if j:
                gh = sj <= min(FAST["GH_MAX"], gh_lad[-1][0]) * slack
                codes[gh, j] = _ladder_codes(gh_lad, sj[gh], slack)
        out[sel] = codes
    return out


def _points_per_tuple(codes):
    pts = np.prod(np.where(codes > 0, 2 * codes, -codes).astype(float), axis=1)
    return np.where(np.any(codes == 0, axis=1), np.inf, pts)


def _g_table(f, M, S):
    """G(μ, s) = E[f(μ + s ξ)] on μ = −M + i h_μ, s = (j − 2) h_s, shape (n_μ, n_s)."""
    key = ("table", f, M, S)
    if key not in _RULES:
        h_mu, h_s = FAST["TABLE_H_MU"], FAST["TABLE_H_S"]
        mu = np.arange(-M, M + h_mu / 2, h_mu)
        ns = int(math.ceil(S / h_s)) + 6
        s = np.abs(np.arange(-2, ns - 2) * h_s)
        tab = np.empty((ns, mu.size))
        tab[s == 0] = f(mu)
        for j in np.nonzero(s > 0)[0]:
            # wide rows: more nodes
            Uj, Wj = _split_rules(FAST["TABLE_DEGREE"] if s[j] <= FAST["TABLE_WIDE_S"] else
                                  FAST["TABLE_DEGREE_WIDE"] if s[j] <= FAST["TABLE_WIDER_S"] else
                                  FAST["TABLE_DEGREE_WIDER"])
            g = _split_index(-mu / s[j])
            tab[j] = np.sum(Wj[g] * f(mu[:, None] + s[j] * Uj[g]), axis=1)
        _RULES[key] = np.ascontiguousarray(tab.T)
    return _RULES[key]


def _extent_for(mu_sd, s_max):
    """(M, S) of a table for μ of standard deviation ≤ mu_sd (TABLE_REACH of them) and s ≤ s_max."""
    S = max(2.0, math.ceil(s_max))
    M = max(20.0, 4.0 * math.ceil(FAST["TABLE_REACH"] * mu_sd / 4))
    return float(M), float(S)


def _table_extent(L, m):
    return _extent_for(float(np.sqrt(np.max(np.sum(L[:, m - 1, :m - 1] ** 2, axis=1)))),
                       float(np.max(L[:, m - 1, m - 1])))


def _lagrange6(t):
    a, b, c, d, e, f = t + 2, t + 1, t, t - 1, t - 2, t - 3
    ab, ef = a * b, e * f
    abc, def_ = ab * c, d * ef
    abcd, cdef = abc * d, c * def_
    return (-(1 / 120) * (b * cdef), (1 / 24) * (a * cdef), -(1 / 12) * (ab * def_),
            (1 / 12) * (abc * ef), -(1 / 24) * (abcd * f), (1 / 120) * (abcd * e))


def _table_lookup(tab, M, x, L, m):
    """G(μ, s) at the points x (T, P) (μ in table units, modified in place), s = L[t, m−1, m−1]:
    6-point Lagrange in s, the quintic of the 6-point interpolant in μ on each cell."""
    h_mu, h_s = FAST["TABLE_H_MU"], FAST["TABLE_H_S"]
    T = L.shape[0]
    n_mu, n_s = tab.shape
    reach = FAST["TABLE_REACH"] * np.sqrt(np.sum(L[:, m - 1, :m - 1] ** 2, axis=1))[:, None] / h_mu
    np.clip(x, M / h_mu - reach, M / h_mu + reach, out=x)
    lo, hi = int(x.min()), int(x.max())
    if lo < 2 or hi > n_mu - 4:
        np.clip(x, 2.0, n_mu - 4.0, out=x)
        lo, hi = int(x.min()), int(x.max())
    lo, hi = lo - 2, hi + 3
    xs = L[:, m - 1, m - 1] / h_s + 2.0
    js = np.clip(np.floor(xs).astype(np.intp), 2, n_s - 4)
    ws = _lagrange6(xs - js)
    win = tab[lo:hi + 1]
    tt = sum(wk[:, None] * win[:, js + (k - 2)].T for k, wk in enumerate(ws))
    nw = tt.shape[1]
    ym2, ym1, y0, y1, y2, y3 = (tt[:, k:nw - 5 + k] for k in range(6))
    coef = np.stack((y0,
                     ym2 * (1 / 20) - ym1 * 0.5 - y0 * (1 / 3) + y1 - y2 * 0.25 + y3 * (1 / 30),
                     -ym2 * (1 / 24) + ym1 * (2 / 3) - y0 * 1.25 + y1 * (2 / 3) - y2 * (1 / 24),
                     -(ym2 + ym1) * (1 / 24) + y0 * (5 / 12) - y1 * (7 / 12) + y2 * (7 / 24) - y3 * (1 / 24),
                     (ym2 + y2) * (1 / 24) - (ym1 + y1) * (1 / 6) + y0 * 0.25,
                     -ym2 * (1 / 120) + ym1 * (1 / 24) - y0 * (1 / 12) + y1 * (1 / 12) - y2 * (1 / 24)
                     + y3 * (1 / 120)), axis=-1).reshape(-1, 6)
    i0 = x.astype(np.intp)
    x -= i0
    i0 += (np.arange(T) * (nw - 5) - 2 - lo)[:, None]
    cf = np.take(coef, i0, axis=0)
    g = cf[..., 5] * x
    for k in (4, 3, 2, 1):
        g += cf[..., k]
        g *= x
    g += cf[..., 0]
    return g


def _block_value(block, zz):
    """Π of the block's functions at zz."""
    out = None
    for f in block:
        v = f(zz)
        out = np.array(np.broadcast_to(v, zz.shape), dtype=float) if out is None else out * v
    return out


def _nested_sum(blocks, L, rules, tab, M):
    """Σ over the nested rules of Π_j F_j(z_j) (outer levels), times G(μ_last, s_last) from the
    table when ``tab`` is given (ntkdiagrams.numerics.gaussian.nested)."""
    T, m = L.shape[0], L.shape[1]
    h_mu = FAST["TABLE_H_MU"]
    wt = np.ones((T, 1))
    Mu = [np.zeros((T, 1)) for _ in range(m)]
    Lx = L
    if tab is not None:
        Mu[m - 1] += M / h_mu
        Lx = L.copy()
        Lx[:, m - 1, :] /= h_mu
    for j in range(len(rules)):
        s = L[:, j, j][:, None]
        U, W = rules[j]
        if U.shape[0] == 1:  # Gauss–Hermite: the same k nodes at every point
            u, w = U[0], W[0]
            f = _block_value(blocks[j], Mu[j][:, None, :] + (s * u)[:, :, None])  # (T, k, P)
            f *= wt[:, None, :]
            f *= w[None, :, None]
            wt = f.reshape(T, -1)
            for i in range(j + 1, m):
                Mu[i] = (Mu[i][:, None, :] + (Lx[:, i, j][:, None] * u)[:, :, None]).reshape(T, -1)
        else:  # split rule at the zero crossing c = −μ_j/s_j
            with np.errstate(divide="ignore", invalid="ignore"):
                c = np.where(s > 0, -Mu[j] / np.where(s > 0, s, 1.0), 0.0)
            g = _split_index(c)
            u, w = U[g], W[g]  # (T, P, 2n)
            f = _block_value(blocks[j], Mu[j][..., None] + s[..., None] * u)
            f *= w
            f *= wt[..., None]
            wt = f.reshape(T, -1)
            for i in range(j + 1, m):
                Mu[i] = (Mu[i][..., None] + Lx[:, i, j][:, None, None] * u).reshape(T, -1)
    if tab is None:
        return wt.sum(axis=1)
    g = _table_lookup(tab, M, Mu[m - 1], L, m)
    return np.einsum("tp,tp->t", wt, g)


def _integrate_nodes(blocks, L, nodes, m, single):
    """The nested rule with the rule codes (T, outer) per tuple, over chunks of tuples that share
    their codes."""
    out = np.empty(L.shape[0])
    tab, M = None, 0.0
    if single:
        M, S = _table_extent(L, m)
        tab = _g_table(blocks[-1][0], M, S)
    keys, inv = np.unique(nodes, axis=0, return_inverse=True)
    inv = np.ravel(inv)
    for gi, key in enumerate(keys):
        idx = np.nonzero(inv == gi)[0]
        rules = [_rule_for_code(d) for d in key]
        per = int(_points_per_tuple(key[None])[0])
        step = max(1, FAST["CHUNK_POINTS"] // max(per, 1))
        for a in range(0, idx.size, step):
            ii = idx[a:a + step]
            out[ii] = _nested_sum(blocks, L[ii], rules, tab, M)
    return out


def _two_factor_at(C, p, x):
    """(ok, order, A, d) of the two-factor forms C = A Aᵀ + diag(d) with pivot p at |A_p|² = x C_pp
    (ntkdiagrams.numerics.gaussian.twofactor)."""
    order = [p] + [k for k in range(4) if k != p]
    Co = C[:, order][:, :, order]
    a = np.sqrt(x[:, None] * Co[None, :, 0, 0])
    t = 1.0 / (a * a)
    c0 = Co[None, :, 0, 1:]
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
    d = diag - np.sum(A * A, axis=-1)
    ok &= np.all(d >= -1e-12 * diag, axis=-1) & np.all(np.isfinite(d), axis=-1)
    return ok, np.array(order), A, np.maximum(d, 0.0)


def _two_factor_slopes(A, e, own1):
    """(own, inside) of the ladder for the rows of A (…, 4, 2) with scales e (…, 4): row 0 owned by
    w₀, row own1 by w₁; along w₀ the rows 1–3 smoothed by w₁ (rank one), along w₁ the others not."""
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


def _two_factor_forms(C, kappa, slack, ladder):
    """The two-factor form with the fewest points per tuple (dict of arrays: ok, order, A, sd,
    codes, points), over all pivots and FAST["TWO_FACTOR_X"]."""
    T = C.shape[0]
    x = np.asarray(FAST["TWO_FACTOR_X"])
    parts = [_two_factor_at(C, p, x) for p in range(4)]
    ok = np.concatenate([q[0] for q in parts])
    order = np.stack([q[1] for q in parts])
    A = np.concatenate([q[2] for q in parts])
    d = np.concatenate([q[3] for q in parts])
    e = 1.0 / np.sqrt(1.0 + d)
    own1 = 1 + np.argmax(np.abs(A[..., 1:, 1]) * e[..., 1:], axis=-1)
    own, inside = _two_factor_slopes(A, e, own1)
    sharp = None
    if np.any(kappa < 1):
        kap = np.repeat(kappa[order], x.size, axis=0)[:, None, :]
        sharp = tuple(v.reshape(-1, 2) for v in _two_factor_slopes(A, kap / np.sqrt(1.0 + kap * kap * d), own1))
    codes = _rule_codes(own.reshape(-1, 2), inside.reshape(-1, 2), slack, ladder, sharp)
    points = np.where(ok, _points_per_tuple(codes).reshape(ok.shape), np.inf)
    best = np.argmin(points, axis=0)
    rows = np.arange(T)
    A, d, k = A[best, rows], d[best, rows], own1[best, rows]
    perm = np.tile(np.arange(4), (T, 1))
    perm[rows, k] = 1
    perm[:, 1] = k
    A = np.take_along_axis(A, perm[..., None], 1)
    A[..., 1] *= np.where(A[:, 1, 1] < 0, -1.0, 1.0)[:, None]
    pts = points[best, rows]
    return {"ok": np.isfinite(pts), "order": np.take_along_axis(order[best // x.size], perm, 1), "A": A,
            "sd": np.sqrt(np.take_along_axis(d, perm, 1)), "codes": codes.reshape(ok.shape + (2,))[best, rows],
            "points": pts}


def _integrate_two_factor(funcs, forms):
    """E[Π_k f_k(z_k)] = Σ w₀ G₀(A₀₀ u₀) Σ w₁ Π_{k≥1} G_k(A_k · u) with each row's table
    G_k(μ, √d_k) (ntkdiagrams.numerics.gaussian.twofactor), over chunks of tuples that share their
    codes."""
    A_all, sd_all, codes = forms["A"], forms["sd"], forms["codes"]
    T = A_all.shape[0]
    out = np.empty(T)
    M, S = _extent_for(float(np.sqrt(np.max(np.sum(A_all * A_all, axis=2)))), float(np.max(sd_all)))
    distinct = list(dict.fromkeys(funcs))
    tables = [_g_table(f, M, S) for f in distinct]
    tid = np.array([distinct.index(f) for f in funcs])[forms["order"]]
    h_mu = FAST["TABLE_H_MU"]

    def lookup(tab, a, s, mu):
        L = np.zeros((a.shape[0], 2, 2))
        L[:, 1, 0], L[:, 1, 1] = np.sqrt(np.sum(a * a, axis=1)), s
        return _table_lookup(tab, M, (mu + M) / h_mu, L, 2)
    keys, inv = np.unique(codes, axis=0, return_inverse=True)
    inv = np.ravel(inv)
    for gi, key in enumerate(keys):
        idx = np.nonzero(inv == gi)[0]
        U0, W0 = _rule_for_code(key[0])
        g = _split_index(np.zeros(1))[0] if U0.shape[0] > 1 else 0
        U0, W0 = U0[g], W0[g]
        U1r, W1r = _rule_for_code(key[1])
        step = max(1, FAST["CHUNK_POINTS"] // (U0.size * U1r.shape[1]))
        for a0 in range(0, idx.size, step):
            ii = idx[a0:a0 + step]
            A, sd, rows = A_all[ii], sd_all[ii], tid[ii]
            if U1r.shape[0] > 1:
                g1 = _split_index(-A[:, 1, 0, None] * U0 / A[:, 1, 1, None])
                U1, W1 = U1r[g1], W1r[g1]
            else:
                U1 = np.broadcast_to(U1r[0], (ii.size, U0.size, U1r.shape[1]))
                W1 = np.broadcast_to(W1r[0], U1.shape)
            g0 = np.empty((ii.size, U0.size))
            inner = np.array(W1)
            for row in range(4):
                for k, tab in enumerate(tables):
                    sel = rows[:, row] == k
                    if not np.any(sel):
                        continue
                    a = A[sel, row]
                    if row == 0:
                        g0[sel] = lookup(tab, a, sd[sel, 0], a[:, 0, None] * U0)
                        continue
                    mu = a[:, 0, None, None] * U0[:, None] + a[:, 1, None, None] * U1[sel]
                    inner[sel] *= lookup(tab, a, sd[sel, row], mu.reshape(mu.shape[0], -1)).reshape(mu.shape)
            out[ii] = np.einsum("tn,n,tn->t", g0, W0, np.sum(inner, axis=2))
    return out


def _pivots_dominate(L, outer):
    """Per tuple: whether every outer level's own function varies at least PIVOT_RATIO times as
    fast as every function inside it, |L_jj| ≥ ρ |L_kj| for k > j (the package's
    ``fast.pivots_dominate``: the split rule sits at the own function's zero crossing)."""
    ok = np.ones(L.shape[0], bool)
    for j in range(outer):
        inside = np.max(np.abs(L[:, j + 1:, j]), axis=1, initial=0.0)
        ok &= np.abs(L[:, j, j]) >= FAST["PIVOT_RATIO"] * inside
    return ok


def _integrate_fast(blocks, C):
    """Smooth factors, m ≥ 2 distinct variables (blocks: the functions of each variable): nested
    split Gauss rules in the Cholesky coordinates; for m ≥ 3 the last variable (a single function)
    from the table.  Tuples beyond the ladders: the cone method."""
    n, m = C.shape[0], len(blocks)
    out = np.empty(n)
    single = [j for j, b in enumerate(blocks) if len(b) == 1] if m >= 3 else []
    order = sorted(range(m), key=lambda j: -len(blocks[j]))  # larger blocks outer (as the package)
    if single:
        last = single[-1]
        order = [j for j in order if j != last] + [last]
    blocks = [blocks[j] for j in order]
    C = C[:, order][:, :, order]
    C, L = _cholesky_np(C)
    outer = m - 1 if single else m
    sl = FAST["SLACK"][m]
    split_ladder = FAST["LADDER_M2"] if m == 2 else FAST["LADDER_M34"]
    kappa = np.array([max(_SHARP.get(f, 1.0) for f in b) for b in blocks])
    sharp = bool(np.any(kappa < 1))

    small = np.max(np.einsum("tkk->tk", C), axis=1) <= FAST["SMALL_VARIANCE"]

    def codes(Ls, kap, sm):  # from the slopes, and the sharpened slopes where some κ < 1
        return _rule_codes(*_slopes(Ls, outer), sl, split_ladder,
                           _slopes(Ls, outer, kap) if sharp else None, sm)
    nodes = codes(L, np.broadcast_to(kappa, (n, m)), small)
    choice = np.zeros(n, np.intp)
    cand = np.empty(0, np.intp)
    if m == 4 and len(single) == 4:  # the two-factor form, before the order search
        cand = np.nonzero(~small & (np.min(np.einsum("tkk->tk", C), axis=1) >= FAST["TWO_FACTOR_MIN_VARIANCE"]))[0]
    if cand.size:
        forms = _two_factor_forms(C[cand], kappa, sl, split_ladder)
        ok = forms["ok"] & (forms["points"] <= FAST["TWO_FACTOR_SAVING"] * _points_per_tuple(nodes[cand]))
        if np.any(ok):
            two = cand[ok]
            out[two] = _integrate_two_factor([b[0] for b in blocks], {k: v[ok] for k, v in forms.items()})
            choice[two] = -1
    rest = np.nonzero(choice >= 0)[0]
    orders = [tuple(range(m))]

    def key(o):  # blocks of one single function are interchangeable
        return tuple(("f", id(blocks[j][0])) if len(blocks[j]) == 1 else ("b", j) for j in o)
    if single and rest.size:
        orders += [o for o in itertools.permutations(range(m))
                   if len(blocks[o[-1]]) == 1 and o != orders[0]]
        P, r = len(orders) - 1, rest.size
        if P:
            Cr = C[rest]
            Cp = np.concatenate([Cr[:, o][:, :, o] for o in orders[1:]])
            Cp, Lp = _cholesky_np(Cp)
            nodes_p = codes(Lp, np.concatenate([np.broadcast_to(kappa[list(o)], (r, m)) for o in orders[1:]]),
                            np.tile(small[rest], P))
            weight = np.array([1.0 if key(o) == key(orders[0]) else 1.0 / FAST["ORDER_SAVING"]
                               for o in orders[1:]])
            cost_p = _points_per_tuple(nodes_p).reshape(P, r) * weight[:, None]
            cost = _points_per_tuple(nodes[rest])
            # orders whose levels' own functions dominate those inside, where the tuple has one
            ok_p = _pivots_dominate(Lp, outer).reshape(P, r)
            ok = _pivots_dominate(L[rest], outer)
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
    groups = {}
    for c in np.unique(choice[choice >= 0]):
        groups.setdefault(key(orders[c]), (orders[c], []))[1].append(c)
    for o, cs in groups.values():
        idx = np.nonzero(np.isin(choice, cs))[0]
        bl = [blocks[j] for j in o]
        Cg, Lg, ng = C[idx], L[idx], nodes[idx]
        beyond = np.any(ng == 0, axis=1)
        if np.any(beyond):
            out[idx[beyond]] = _cone_smooth(bl, Cg[beyond])
        keep = ~beyond
        if np.any(keep):
            out[idx[keep]] = _integrate_nodes(bl, Lg[keep], ng[keep], m, single)
    return out


def _cone_smooth(blocks, C):
    """The package's exact cone method for smooth blocks (its default degrees; exact radial rule
    for polynomial blocks)."""
    m = len(blocks)
    C, L = _cholesky_np(C)
    base, n_a = CONE_DEGREE[m]
    P = 0
    for b in blocks:
        for f in b:
            if _POLY.get(f) is None:
                P = None
                break
            P += _POLY[f]
        if P is None:
            break
    n_r = base if P is None else min(base, P // 2 + 1)
    if P is not None and m >= 3:
        n_a = max(n_a, 20 if m == 3 else 12)
    n1 = base  # one smooth variable: 16 nodes per unit slope beyond the base (the package's cone.py)
    if m == 1 and P is None and C.shape[0]:
        n1 = max(base, FAST["SMOOTH_1D_NODES_PER_SLOPE"] * int(math.ceil(float(np.max(L[:, 0, 0])))))
    if n1 > base:  # the Gauss rule of φ on [0, ∞): the split rules' row
        U, W = _split_rules(n1)             # at c = 0, weights as those of e^{-r²/2}
        g = int(round(FAST["SPLIT_C"] / FAST["SPLIT_DC"]))
        r, wr = U[g, :n1], W[g, :n1] * math.sqrt(2 * math.pi)
    elif m == 1 and n_r in RADIAL1:
        r, wr = RADIAL1[n_r]
    else:  # the base rule, exact for polynomial blocks of total degree < 2 · base as well
        r, wr = CONE_RADIAL[(n_r if (n_r, m - 1) in CONE_RADIAL else base, m - 1)]
    funcs = [(f, f) for b in blocks for f in b]
    smap = np.broadcast_to(np.array([j for j, b in enumerate(blocks) for _f in b]), (C.shape[0], len(funcs)))
    if m == 1:
        zp = (L[:, 0, 0][:, None] * r[None, :])[..., None]
        one = np.ones(zp.shape)
        return (_branches(funcs, smap, zp, one) @ wr + _branches(funcs, smap, -zp, -one) @ wr) / math.sqrt(2 * math.pi)
    if m == 2:
        if P is not None:
            n_a = min(n_a, max(16, P + 8))
        return _arcs(funcs, smap, L, (r, wr), n_a)
    return _simplices(funcs, smap, L, (r, wr), _simplex_rule(m - 1, n_a))


def _simplex_rule(dim, n):
    """Collapsed Gauss–Jacobi rule on the standard simplex (barycentric points, weights)."""
    key = ("simplex", dim, n)
    if key not in _RULES:
        from scipy.special import roots_jacobi
        rules = []
        for i in range(dim):
            alpha = dim - 1 - i
            x, w = roots_jacobi(n, alpha, 0)
            rules.append(((1 + x) / 2, w / 2 ** (alpha + 1)))
        grids = np.meshgrid(*[r[0] for r in rules], indexing="ij")
        wgrid = np.ones_like(grids[0])
        for g in np.meshgrid(*[r[1] for r in rules], indexing="ij"):
            wgrid = wgrid * g
        us = [g.ravel() for g in grids]
        t = np.empty((us[0].size, dim + 1))
        rest = np.ones_like(us[0])
        for i in range(dim):
            t[:, i] = rest * us[i]
            rest = rest * (1 - us[i])
        t[:, dim] = rest
        _RULES[key] = (t, wgrid.ravel())
    return _RULES[key]


def _integrate_pattern(fids, blocks_slots, C):
    """numpy target: E[Π_b F_b(z_b)] for the tuples of one pattern of coinciding indices
    (blocks_slots: the slots of each distinct variable), by the method the package chooses
    (ntkdiagrams.numerics.gaussian.paths): m ≥ 2 piecewise-polynomial functions (ReLU family) the
    closed-form orthant moments where the correlations are well conditioned, else the cone
    method; smooth functions: m = 1 the cone method (64-point radial rule), m ≥ 2 the fast path
    when the largest variance times κ² (:data:`_SHARP`) is ≤ FAST["MAX_VARIANCE"], else the cone
    method."""
    blocks = [[fids[s] for s in b] for b in blocks_slots]
    m, n = len(blocks), C.shape[0]
    kinked = any(_KINKED[f] for b in blocks for f in b)
    if m >= 2 and all(f in _PIECES for b in blocks for f in b):
        strict = not all(any(_PIECES[f][1] == (0.0,) for f in b) for b in blocks)
        good = _well_conditioned(C, strict)
        out = np.empty(n)
        if np.any(good):
            out[good] = _integrate_orthant(blocks, C[good])
        if not np.all(good):
            out[~good] = _cone_kinked(blocks, C[~good]) if kinked else _cone_smooth(
                [[_F[f][0] for f in b] for b in blocks], C[~good])
        return out
    if kinked:
        return _cone_kinked(blocks, C)
    blocks = [[_F[f][0] for f in b] for b in blocks]
    if m == 1:
        return _cone_smooth(blocks, C)
    kappa = np.array([max(_SHARP.get(f, 1.0) for f in b) for b in blocks])  # the ladders' κ
    veff = np.max(np.einsum("nii->ni", C) * kappa ** 2, axis=1)
    fast = veff <= FAST["MAX_VARIANCE"]
    out = np.empty(n)
    if np.any(fast):
        out[fast] = _integrate_fast(blocks, C[fast])
    if not np.all(fast):
        out[~fast] = _cone_smooth(blocks, C[~fast])
    return out


def _cone_kinked(blocks, C):
    """The cone method for blocks (lists of fids) with kinks at 0; one variable: the package's
    radial rule of ⌊P/2⌋ + 1 nodes (P the total polynomial degree), exact."""
    funcs = [_F[f] for b in blocks for f in b]
    smap = np.broadcast_to(np.array([j for j, b in enumerate(blocks) for _f in b]), (C.shape[0], len(funcs)))
    if len(blocks) == 1:
        P = sum(max(len(_PIECES[f][0]), len(_PIECES[f][1])) - 1 for f in blocks[0])
        if P // 2 + 1 in RADIAL1:
            r, w = RADIAL1[P // 2 + 1]
            zp = (xp.sqrt(C[:, 0, 0])[:, None] * r[None, :])[..., None]
            one = np.ones(zp.shape)
            return (_branches(funcs, smap, zp, one) @ w + _branches(funcs, smap, -zp, -one) @ w) / math.sqrt(2 * math.pi)
    return _integrate_kinked(funcs, smap, C)


# ---- closed-form orthant moments of ntkdiagrams.numerics.gaussian.orthant for piecewise-polynomial
# functions (ReLU family), ported rule for rule (numpy: also the exact reduction of covariances of
# rank m − 1; JAX: fixed shapes, no reduction, the P_4 integral on all 48 graded panels).
# _PIECES[fid]: the ascending coefficients of the branches (z > 0, z < 0); ORTHANT: the bounds.

def _correlations(C):
    d = xp.sqrt(xp.einsum("nii->ni", C))
    R = C / d[:, :, None] / d[:, None, :]
    return xp.clip(R, -1.0, 1.0)


def _well_conditioned(C, strict=False):
    """Per tuple: smallest eigenvalue of the correlation matrix ≥ ORTHANT["MIN_EIGENVALUE"], or
    exactly of rank m − 1 with well-conditioned (m − 1)-variable parts."""
    if C.shape[1] < 2:
        return np.ones(C.shape[0], bool)
    good = np.linalg.eigvalsh(_correlations(C))[:, 0] >= ORTHANT["MIN_EIGENVALUE"]
    if C.shape[1] >= 3 and not np.all(good):
        good[~good] = _rank_deficient(C[~good], strict)
    return good


def _rank_deficient(C, strict=False):
    m = C.shape[1]
    R = _correlations(C)
    sing = np.linalg.eigvalsh(R)[:, 0] < ORTHANT["SINGULAR_EIGENVALUE"]
    if not np.any(sing):
        return sing
    idx = np.nonzero(sing)[0]
    lam = np.stack([np.linalg.eigvalsh(R[idx][:, keep][:, :, keep])[:, 0]
                    for keep in ([j for j in range(m) if j != k] for k in range(m))], axis=1)
    ok = lam >= ORTHANT["MIN_EIGENVALUE"]
    if strict:
        sing[idx] = np.all(ok, axis=1)
        return sing
    k, pos, neg = _null_split(C[idx])
    rows = np.arange(idx.size)
    need = np.zeros((idx.size, m), bool)
    need[rows, k] = True
    npos, nneg = pos.sum(1), neg.sum(1)
    one_neg = (nneg == 1) & (npos > 0)
    need[one_neg] |= neg[one_neg]
    one_pos = (npos == 1) & (nneg >= 2)
    need[one_pos] |= pos[one_pos]
    sing[idx] = np.all(ok | ~need, axis=1)
    return sing


def _null_split(C):
    n = C.shape[0]
    R = _correlations(C)
    _, v = np.linalg.eigh(R)
    c = v[:, :, 0] / np.sqrt(np.einsum("nii->ni", C))
    k = np.argmax(np.abs(v[:, :, 0]), axis=1)
    alpha = -c / c[np.arange(n), k][:, None]
    pos = alpha >= 0
    pos[np.arange(n), k] = False
    neg = alpha < 0
    neg[np.arange(n), k] = False
    return k, pos, neg


def _block_polynomial(block, s):
    """Ascending coefficients of the product of the block's branches on sign(z) = s."""
    out = np.ones(1)
    for f in block:
        c = np.array(_PIECES[f][0 if s > 0 else 1])
        out = np.convolve(out, c)
    return out


def _integrate_orthant(blocks, C):
    """E[Π_b F_b(z_b)] for piecewise-polynomial blocks (lists of fids): F_b = g₋ + (g₊ − g₋) 1{z_b > 0}
    expanded over the sets T of indicator-carrying blocks, orthant moments by Stein's lemma."""
    n, m = C.shape[0], len(blocks)
    singular = _rank_deficient(C) if m >= 3 and ADAPTIVE else np.zeros(n, bool)
    if ADAPTIVE and not np.any(singular):
        C, _ = _cholesky_np(C)
    total = xp.zeros(n)
    low = [_block_polynomial(b, -1) for b in blocks]
    high = [_block_polynomial(b, 1) for b in blocks]
    jump = []
    for lo, hi in zip(low, high):
        d = max(lo.size, hi.size)
        jump.append(np.pad(hi, (0, d - hi.size)) - np.pad(lo, (0, d - lo.size)))
    for T in itertools.product((False, True), repeat=m):
        P = [jump[j] if t else low[j] for j, t in enumerate(T)]
        live = [np.nonzero(p != 0)[0] for p in P]
        if any(lv.size == 0 for lv in live):
            continue
        restricted = tuple(j for j in range(m) if T[j])
        moments = _Moments(C, restricted, singular if len(restricted) == m else None)
        for powers in itertools.product(*live):
            coef = 1.0
            for j, p in enumerate(powers):
                coef = coef * P[j][p]
            if coef != 0:
                total += coef * moments.get(tuple(int(p) for p in powers))
    return total


class _Moments:
    """Moments with indicators on ``restricted``; tuples of rank m − 1 reduced exactly to m − 1
    restricted variables (ntkdiagrams.numerics.gaussian.orthant._Moments)."""

    def __init__(self, C, restricted, singular):
        self.C = C
        self.n, self.m = C.shape[0], C.shape[1]
        self.singular = singular if singular is not None and np.any(singular) else None
        regular = np.ones(self.n, bool) if self.singular is None else ~self.singular
        self.parts = []
        if np.any(regular):
            idx = np.nonzero(regular)[0]
            self.parts.append((idx, np.ones(self.m), restricted, 1.0))
        if self.singular is not None:
            self._reduce(np.nonzero(self.singular)[0])
        self._engines = [_OrthantMoments(C[idx] * f[None, :, None] * f[None, None, :], r)
                         for idx, f, r, _ in self.parts]

    def _reduce(self, idx):
        m = self.m
        k, pos, neg = _null_split(self.C[idx])
        groups = {}
        for t in range(idx.size):
            kk = int(k[t])
            P = tuple(np.nonzero(pos[t])[0])
            N = tuple(np.nonzero(neg[t])[0])
            groups.setdefault((kk, P, N), []).append(idx[t])
        for (kk, P, N), members in groups.items():
            sel = np.array(members)
            others = tuple(j for j in range(m) if j != kk)
            ones = np.ones(m)
            if not N:
                self.parts.append((sel, ones, others, 1.0))
            elif not P:
                continue
            elif len(N) == 1:
                self.parts.append((sel, ones, others, 1.0))
                flip = ones.copy()
                flip[kk] = -1.0
                self.parts.append((sel, flip, tuple(sorted(set(others) - {N[0]} | {kk})), -1.0))
            elif len(P) == 1:
                self.parts.append((sel, ones, tuple(j for j in range(m) if j != P[0]), 1.0))
            else:
                raise ValueError("rank-deficient orthants of more than 4 variables")

    def get(self, powers):
        if self.singular is None:  # one regular part: the moments themselves
            return self._engines[0].get(powers)
        out = np.zeros(self.n)
        for (idx, f, _, w), eng in zip(self.parts, self._engines):
            sign = float(np.prod(f ** np.array(powers)))
            out[idx] += w * sign * eng.get(powers)
        return out


class _OrthantMoments:
    """E[Π_j z_j^{p_j} Π_{j∈T} 1{z_j > 0}] by Stein's lemma down to orthant probabilities."""

    def __init__(self, C, restricted=None):
        self.C = C
        self.m = C.shape[1]
        self.restricted = frozenset(range(self.m) if restricted is None else restricted)
        self._cond = {(): C}
        self._memo = {}

    def cond(self, S):
        if S not in self._cond:
            j = S[-1]
            prev = self.cond(S[:-1])
            keep = [i for i in range(self.m) if i not in S[:-1]]
            k = keep.index(j)
            rest = np.array([r for r in range(len(keep)) if r != k], dtype=int)
            c = prev[:, rest, k]
            self._cond[S] = prev[:, rest][:, :, rest] - c[:, :, None] * c[:, None, :] / prev[:, k, k][:, None, None]
        return self._cond[S]

    def get(self, powers, S=()):
        key = (powers, S)
        if key in self._memo:
            return self._memo[key]
        Cs = self.cond(S)
        rest = [i for i in range(self.m) if i not in S]
        if not any(powers):
            T = np.array([r for r, i in enumerate(rest) if i in self.restricted], dtype=int)
            val = _orthant_probability(Cs[:, T][:, :, T])
        else:
            i = next(r for r, p in enumerate(powers) if p > 0)
            q = list(powers)
            q[i] -= 1
            val = xp.zeros(Cs.shape[0])
            for j in range(len(powers)):
                if q[j] > 0:
                    q2 = list(q)
                    q2[j] -= 1
                    val = val + Cs[:, i, j] * q[j] * self.get(tuple(q2), S)
                elif rest[j] in self.restricted:
                    sub = tuple(p for r, p in enumerate(q) if r != j)
                    S2 = tuple(sorted(S + (rest[j],)))
                    val = val + Cs[:, i, j] / xp.sqrt(2 * np.pi * Cs[:, j, j]) * self.get(sub, S2)
        self._memo[key] = val
        return val


def _orthant_probability(C):
    n, m = C.shape[0], C.shape[1]
    if m == 0:
        return xp.ones(n)
    if m == 1:
        return xp.full(n, 0.5)
    R = _correlations(C)
    if m == 2:
        return 0.25 + xp.arcsin(R[:, 0, 1]) / (2 * np.pi)
    if m == 3:
        return 0.125 + (xp.arcsin(R[:, 0, 1]) + xp.arcsin(R[:, 0, 2]) + xp.arcsin(R[:, 1, 2])) / (4 * np.pi)
    return _p4(R)


def _panels(levels):
    key = ("panels", levels)
    if key not in _RULES:
        g, w = np.polynomial.legendre.leggauss(ORTHANT["PANEL_NODES"])
        edges = np.concatenate([1 - 0.5 ** np.arange(levels), [1.0]])
        xs, ws = [], []
        for a, b in zip(edges[:-1], edges[1:]):
            xs.append(a + (b - a) * (g + 1) / 2)
            ws.append((b - a) / 2 * w)
        _RULES[key] = (np.concatenate(xs), np.concatenate(ws))
    return _RULES[key]


def _p4(R):
    """P(z > 0) for four variables: Plackett's identity along a path decoupling one variable."""
    n = R.shape[0]
    lam = xp.stack([xp.linalg.eigvalsh(R[:, keep][:, :, keep])[:, 0]
                    for keep in (np.array(k) for k in ([1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]))], axis=1)
    d = xp.argmax(lam, axis=1)
    perm = xp.asarray(np.array([[i for i in range(4) if i != dd] + [dd] for dd in range(4)]))[d]
    R = R[np.arange(n)[:, None, None], perm[:, :, None], perm[:, None, :]]
    out = 0.5 * (0.125 + (xp.arcsin(R[:, 0, 1]) + xp.arcsin(R[:, 0, 2]) + xp.arcsin(R[:, 1, 2]))
                 / (4 * np.pi))
    r3 = R[:, :3, 3]
    if ADAPTIVE:
        c2 = 1 - np.max(np.abs(r3), axis=1) ** 2
        small = max(float(np.min(np.minimum(c2, np.linalg.eigvalsh(R)[:, 0]))), 1e-300)
        levels = int(min(48, max(2, math.ceil(-math.log2(small)) + 3)))
    else:  # fixed shapes under jit: every panel
        levels = 48
    x, w = _panels(levels)
    for i in range(3):
        j, k = [a for a in range(3) if a != i]
        rho = r3[:, i]
        tmax = xp.arcsin(rho)
        theta = tmax[:, None] * x[None, :]
        sin = xp.sin(theta)
        safe = xp.where(rho == 0, 1.0, rho)
        t = xp.where(rho[:, None] == 0, 0.0, sin / safe[:, None])
        a = sin
        bj = xp.stack([xp.broadcast_to(R[:, j, i, None], t.shape), t * R[:, j, 3, None]], -1)
        bk = xp.stack([xp.broadcast_to(R[:, k, i, None], t.shape), t * R[:, k, 3, None]], -1)
        det = 1 - a * a

        def quad(u, v):
            return (u[..., 0] * v[..., 0] + u[..., 1] * v[..., 1]
                    - a * (u[..., 0] * v[..., 1] + u[..., 1] * v[..., 0])) / det
        with np.errstate(divide="ignore", invalid="ignore"):
            sjk = R[:, j, k, None] - quad(bj, bk)
            sjj = 1 - quad(bj, bj)
            skk = 1 - quad(bk, bk)
            rc = xp.clip(sjk / xp.sqrt(xp.maximum(sjj * skk, 1e-300)), -1, 1)
        p2 = 0.25 + xp.arcsin(rc) / (2 * np.pi)
        p2 = xp.where(xp.isfinite(p2), p2, 0.25)
        out = out + tmax * (p2 @ w) / (2 * np.pi)
    return out


def _patterns(k):
    """Set partitions of range(k) as tuples of blocks (restricted growth strings)."""
    out = []

    def grow(prefix, nb):
        if len(prefix) == k:
            blocks = [tuple(i for i in range(k) if prefix[i] == b) for b in range(nb)]
            out.append((tuple(prefix), tuple(blocks)))
            return
        for b in range(nb + 1):
            grow(prefix + [b], max(nb, b + 1))
    grow([], 0)
    return out


def expectation_tensor(fids, K, max_scale=None):
    """T[a₁…a_k] = ⟨Π_s f_s(z_{a_s})⟩_K for every index tuple (f_s the functions ``fids``): slots
    with the same function are symmetric (sorted tuples only); the tuples are grouped by their
    pattern of coinciding indices, each pattern integrated over its m distinct variables (slot s
    reads its tuple's variable): numpy and smooth functions by the package's method
    (:func:`_integrate_pattern`), kinked functions by the cone method, JAX by fixed rules."""
    kinked = any(_KINKED[f] for f in fids)
    funcs = [(_F[f] if kinked else _F[f][0]) for f in fids]
    N, k = K.shape[0], len(funcs)
    tuples = np.indices((N,) * k).reshape(k, -1).T
    canon = tuples.copy()
    groups = {}
    for s, f in enumerate(fids):
        groups.setdefault(f, []).append(s)
    for slots in groups.values():
        if len(slots) > 1:
            canon[:, slots] = np.sort(canon[:, slots], axis=1)
    key = np.ravel_multi_index(canon.T, (N,) * k)
    ukey, inv = np.unique(key, return_inverse=True)
    uniq = np.stack(np.unravel_index(ukey, (N,) * k), axis=1)
    eq = (uniq[:, :, None] == uniq[:, None, :])
    by_m = {}
    parts = []
    for prefix, blocks in _patterns(k):
        prefix = np.array(prefix)
        want = prefix[:, None] == prefix[None, :]
        rows = np.nonzero(np.all(eq == want[None], axis=(1, 2)))[0]
        if rows.size == 0:
            continue
        ids = uniq[rows][:, [b[0] for b in blocks]]
        if ADAPTIVE:
            C = np.asarray(K)[ids[:, :, None], ids[:, None, :]]
            parts.append((rows, _integrate_pattern(fids, blocks, C)))
        elif kinked and all(f in _PIECES for f in fids):  # JAX: orthant moments, exact 1-D rules
            fb = [[fids[s] for s in b] for b in blocks]
            C = K[ids[:, :, None], ids[:, None, :]]
            parts.append((rows, _integrate_orthant(fb, C) if len(fb) >= 2 else _cone_kinked(fb, C)))
        else:
            by_m.setdefault(len(blocks), []).append((rows, ids, np.broadcast_to(prefix, (rows.size, k))))
    for m, groups in by_m.items():  # one integration per number of distinct variables
        rows = np.concatenate([g[0] for g in groups])
        ids = np.concatenate([g[1] for g in groups])
        smap = np.concatenate([g[2] for g in groups])
        C = K[ids[:, :, None], ids[:, None, :]]
        parts.append((rows, _integrate_kinked(funcs, smap, C) if kinked else _integrate_smooth(funcs, smap, C, max_scale)))
    vals = _scatter(parts, uniq.shape[0])
    return vals[np.ravel(inv)].reshape((N,) * k)


def contract_blob(tensor, args, sites, K, moments, axes_labels):
    """Σ_β T[args] Π_sites ⟨∂_{β∈site} F_site⟩ by Gaussian integration by parts (for activations
    with kinks; ``ntkdiagrams.numerics.hermite.contract_blob``).  ``moments[i]`` returns site i's
    (distinct, equal) derivative moments."""
    N = K.shape[0]
    naxes = len(axes_labels)
    grid = np.indices((N,) * naxes).reshape(naxes, -1)
    val = {lab: grid[i] for i, lab in enumerate(axes_labels)}
    d = xp.sqrt(xp.diagonal(K))
    rho = K / (d[:, None] * d[None, :])
    same_input = (xp.abs(rho - 1.0) <= 1e-12) & (xp.abs(d[:, None] - d[None, :]) <= 1e-12 * xp.abs(d[None, :]))
    ms = []
    for i, (labels, legs) in enumerate(sites):
        dist, eq = moments[i]
        if len(labels) == 2:
            a, b = val[labels[0]], val[labels[1]]
            coinc = same_input[a, b]
        else:
            a, b, coinc = val[labels[0]], None, np.ones(grid.shape[1], dtype=bool)
        ms.append((legs, dist, eq, a, b, coinc))
    out = xp.zeros(grid.shape[1])
    nlegs = sum(len(m[0]) for m in ms)
    for gam in np.ndindex(*(2,) * nlegs):
        pos = 0
        choice = {}
        factor = xp.ones(grid.shape[1])
        for legs, dist, eq, a, b, coinc in ms:
            g = tuple(gam[pos:pos + len(legs)])
            pos += len(legs)
            site = xp.where(coinc, 0.0 if any(g) else eq[a], 0.0)
            if dist is not None:
                site = site + xp.where(coinc, 0.0, dist[g][a, b if b is not None else a])
            factor = factor * site
            for q, gq in zip(legs, g):
                choice[q] = xp.where(coinc, a, b if (gq and b is not None) else a)
        idx = tuple(choice[x] if kind == "leg" else val[x] for kind, x in args)
        out = out + factor * tensor[idx]
    return out.reshape((N,) * naxes)


def einsum(spec, *operands):
    """xp.einsum with an optimised contraction order."""
    return xp.einsum(spec, *operands, optimize=True)
# --- runtime end ---
