"""Source of the runtime that every generated module carries (Gaussian expectation tensors).

This file is not imported by the package: :mod:`ntkdiagrams.generation.generate` copies the text
between the two ``runtime`` marker lines into each generated module, after the target's imports
(``np`` is numpy for index tables; ``xp`` is numpy, or jax.numpy for the JAX target) and the
constants ``ADAPTIVE`` (numpy: node counts chosen per tuple), ``FIXED_HALF`` (JAX: node counts
per dimension) and, for activations with kinks, ``RADIAL`` / ``SIMPLEX`` rules.

Expectations T[a₁…a_k] = ⟨f₁(z_{a₁})⋯f_k(z_{a_k})⟩_K over every index tuple: the tuples (sorted
within slots of the same function) are grouped by their number m of distinct inputs, and each
group is integrated over its m variables in the Cholesky coordinates z = L u, u ~ N(0, I_m), slot
s reading its tuple's variable:

* smooth factors: a product rule, per coordinate j with scale s_j = max_i |L_ij|: Gauss–Hermite
  (8 … 26 nodes) where s_j ≤ 0.3, else the trapezoid rule u_j = h_j i on [−R, R] (R = 8.6) with
  h_j ≤ min(0.7, c/s_j); points of weight < 1e-18 are dropped.  c = 0.15 (calibrated on tanh,
  whose poles at ±iπ/2 set the rate, and its derivatives up to σ⁗: ≲ 1e-12 relative), or 0.2 for
  expectations of σ = tanh itself (simple poles; ~1e-13 measured on ⟨tanh⁴⟩);
* factors with kinks at z = 0 (piecewise polynomials: ReLU family): the exact cone method of
  ``ntkdiagrams.numerics.gaussian.cone`` (radial Gauss rule; Gauss–Legendre arcs for m = 2,
  spherical simplices for m = 3, 4).
"""
import math  # noqa: F401  (the marker below starts the copied text)
import numpy as np
import numpy as xp

ADAPTIVE = True
FIXED_HALF = {1: 96, 2: 64, 3: 40, 4: 24}
RADIAL = {}
SIMPLEX = {}

# --- runtime begin ---
R_MAX = 8.6
H_PER_SCALE = 0.15
H_PER_SCALE_SIMPLE = 0.2
H_MAX = 0.7
HALF_BINS = np.array([13, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256])
CHUNK_POINTS = 1 << 21
GH_MAX_SCALE = 0.3
_RULES = {}


def _rule(code):
    """A 1-D rule of the weight φ(u): code > 0 the trapezoid rule on [−R, R] with 2·code + 1
    nodes; code < 0 the (−code)-point Gauss–Hermite rule."""
    if code < 0:
        t, w = np.polynomial.hermite_e.hermegauss(-code)
        return t, w / math.sqrt(2 * math.pi)
    h = R_MAX / code
    t = np.arange(-code, code + 1) * h
    return t, h * np.exp(-t * t / 2) / math.sqrt(2 * math.pi)


def _grid(codes):
    """Product of the rules ``codes`` (one per coordinate), without the points of weight < 1e-18."""
    key = tuple(int(c) for c in codes)
    if key not in _RULES:
        t, w = np.zeros((1, 0)), np.ones(1)
        for c in key:
            tc, wc = _rule(c)
            t = np.concatenate([np.repeat(t, tc.size, 0), np.tile(tc, t.shape[0])[:, None]], 1)
            w = np.repeat(w, tc.size) * np.tile(wc, w.size)
            keep = w > 1e-18
            t, w = t[keep], w[keep]
        _RULES[key] = (t, w)
    return _RULES[key]


def _codes(scale, hfac):
    """Rule codes per tuple and coordinate from the coordinate scales s_j: Gauss–Hermite where
    s_j ≤ 0.3 (few nodes suffice), else the trapezoid rule with h ≤ hfac / s_j."""
    need = R_MAX / np.minimum(H_MAX, hfac / np.maximum(scale, 1e-300))
    pos = np.searchsorted(HALF_BINS, need)
    trap = np.where(pos < HALF_BINS.size, HALF_BINS[np.minimum(pos, HALF_BINS.size - 1)], np.ceil(need).astype(int))
    gh = np.select([scale <= 0.05, scale <= 0.1, scale <= 0.2], [-8, -12, -18], -26)
    return np.where(scale <= GH_MAX_SCALE, gh, trap)


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


def _integrate_smooth(funcs, smap, C, hfac=H_PER_SCALE):
    """E[Π_s f_s(z_{smap[s]})], z ~ N(0, C), C (T, m, m): product rules in Cholesky coordinates."""
    T, m = C.shape[0], C.shape[1]
    L = _cholesky(C)
    if ADAPTIVE:
        scale = np.max(np.abs(np.asarray(L)), axis=1)  # s_j = max_i |L_ij|
        keys, inv = np.unique(_codes(scale, hfac), axis=0, return_inverse=True)
        inv = np.ravel(inv)
        groups = [(keys[g], np.nonzero(inv == g)[0]) for g in range(keys.shape[0])]
    else:
        groups = [((FIXED_HALF[m],) * m, np.arange(T))]
    parts = []
    for halves, rows in groups:
        t, w = _grid(halves)
        step = max(1, CHUNK_POINTS // t.shape[0])
        for a in range(0, rows.size, step):
            sel = rows[a:a + step]
            Ls = L[sel]
            z = xp.stack([sum(Ls[:, i, j, None] * t[None, :, j] for j in range(i + 1)) for i in range(m)], -1)
            parts.append((sel, _slots_product(funcs, smap[sel], z) @ w))
    return _scatter(parts, T)


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
    T, m = C.shape[0], C.shape[1]
    L = _cholesky(C)
    if m == 1:
        r, w = RADIAL[0]
        s = L[:, 0, 0]
        zp = (s[:, None] * r[None, :])[..., None]
        one = xp.ones(zp.shape)
        return (_branches(funcs, smap, zp, one) @ w + _branches(funcs, smap, -zp, -one) @ w) / math.sqrt(2 * math.pi)
    if m == 2:
        return _arcs(funcs, smap, L)
    return _simplices(funcs, smap, L)


def _arcs(funcs, smap, L):
    """m = 2: the circle cut at the four rays where z₀ = 0 or z₁ = 0; Gauss–Legendre per arc."""
    r, wr = RADIAL[1]
    x, wx = np.polynomial.legendre.leggauss(24)
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


def _simplices(funcs, smap, L):
    """m = 3, 4 (numpy only): the orthant cones as simplicial cones spanned by the columns of
    ±L⁻¹, bisected until every edge is ≤ 80°, each integrated with the collapsed Gauss–Jacobi
    rule through the central projection × the radial rule."""
    if not ADAPTIVE:
        raise NotImplementedError("the JAX target integrates kinked activations over at most two distinct "
                                  "inputs per expectation; use the numpy target for three or more inputs")
    L = np.asarray(L)
    n, m = L.shape[0], L.shape[1]
    Linv = np.linalg.inv(L)
    r, wr = RADIAL[m - 1]
    t, wt = SIMPLEX[m]
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


def expectation_tensor(funcs, K, kinked=False, hfac=H_PER_SCALE):
    """T[a₁…a_k] = ⟨Π_s f_s(z_{a_s})⟩_K for every index tuple: slots with the same function are
    symmetric (sorted tuples only); the tuples are grouped by their number m of distinct inputs
    and each group is integrated over its m variables (slot s reads its tuple's variable)."""
    N, k = K.shape[0], len(funcs)
    tuples = np.indices((N,) * k).reshape(k, -1).T
    canon = tuples.copy()
    groups = {}
    for s, f in enumerate(funcs):
        groups.setdefault(id(f), []).append(s)
    for slots in groups.values():
        if len(slots) > 1:
            canon[:, slots] = np.sort(canon[:, slots], axis=1)
    key = np.ravel_multi_index(canon.T, (N,) * k)
    ukey, inv = np.unique(key, return_inverse=True)
    uniq = np.stack(np.unravel_index(ukey, (N,) * k), axis=1)
    eq = (uniq[:, :, None] == uniq[:, None, :])
    by_m = {}
    for prefix, blocks in _patterns(k):
        prefix = np.array(prefix)
        want = prefix[:, None] == prefix[None, :]
        rows = np.nonzero(np.all(eq == want[None], axis=(1, 2)))[0]
        if rows.size == 0:
            continue
        ids = uniq[rows][:, [b[0] for b in blocks]]
        by_m.setdefault(len(blocks), []).append((rows, ids, np.broadcast_to(prefix, (rows.size, k))))
    parts = []
    for m, groups in by_m.items():  # one integration per number of distinct variables
        rows = np.concatenate([g[0] for g in groups])
        ids = np.concatenate([g[1] for g in groups])
        smap = np.concatenate([g[2] for g in groups])
        C = K[ids[:, :, None], ids[:, None, :]]
        parts.append((rows, _integrate_kinked(funcs, smap, C) if kinked else _integrate_smooth(funcs, smap, C, hfac)))
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
