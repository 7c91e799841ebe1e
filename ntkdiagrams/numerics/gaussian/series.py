"""Two-point tensors by the Hermite series (Mehler's formula), vectorised over all pairs.

For two smooth factors f, g and z ~ N(0, K), write z_a = σ_a x, z_b = σ_b y with σ_a = √K_aa
and ρ_ab = K_ab/(σ_a σ_b) the correlation of the standard normals x, y.  With the orthonormal
Hermite functions h_n = He_n/√(n!) (probabilists') and the coefficients

    c_n(a) = E[f(σ_a x) h_n(x)],     d_n(b) = E[g(σ_b y) h_n(y)],

Mehler's formula gives

    T[a, b] = E[f(z_a) g(z_b)] = Σ_{n≥0} ρ_ab^n c_n(a) d_n(b)                     (a ≠ b),

and T[a, a] = E[f(σ_a x) g(σ_a x)] directly.  The coefficients are one matrix product per
factor over the N inputs (N·Q function values on a Q-point Gauss–Hermite rule), so the work per
pair is only the series: a Horner sum of M_ab terms.

Truncation.  By Cauchy–Schwarz and |ρ| ≤ 1, the series cut after n = M errs by at most

    |ρ_ab|^{M+1} · t_f(a, M) · t_g(b, M),    t_f(a, M) = (Σ_{n>M} c_n(a)²)^{1/2},

relative to the scale ‖f_a‖ ‖g_b‖ (‖f_a‖² = E[f(z_a)²], the Cauchy–Schwarz bound of the entry):
with τ(M) the largest normalised tail t/‖f‖ over the inputs, each pair takes the smallest M with
|ρ_ab|^{M+1} τ_f(M) τ_g(M) ≤ :data:`SERIES_TOL` (one search over |ρ|).  The tails come from the
computed coefficients (no cancellation).

Coefficients.  On a Q-point Gauss–Hermite rule, c_n for n ≤ Q/2 (the weights as Christoffel
numbers in logarithms, so that nothing underflows up to Q = 2048).  The rule *resolves* an input
when the coefficients 3Q/8 < n ≤ Q/2 have decayed, Σ c_n² ≤ :data:`SERIES_RESOLVED`² ‖f‖²; that
sum also stands in for the terms beyond Q/2 in t (they are smaller for decaying coefficients),
and aliasing of the coefficients kept comes from those beyond 3Q/2, far smaller again.  Inputs
are tried on the rules of :data:`SERIES_NODES` in turn; one that none resolves (tanh beyond a
variance of ~8, a factor not finite on the nodes) is left to the general path (``resolved``).
Accuracy (tests/test_gaussian_series.py): ≤ 1e-11 of the scale against the exact cone method at
degree 80 for tanh, sech², tanh'', erf, gelu, softplus, swish, variances 0.5 … 10, correlations
up to 1 − 1e-14 (collinear inputs).

Collinear inputs (1 − |ρ| < :data:`ntkdiagrams.numerics.gaussian.merge.MERGE_TOL`) are not summed:
identical ones take the diagonal value (so that T[a, b] = T[a, a] exactly, as for merged
slots), the others go to the general path, which merges them.

Applicable to factors that are smooth (no kink, no δ) and grow at most polynomially (growth
rates ≤ 0: every ordinary activation and its derivatives; :func:`applicable`).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from .factors import Factor
from .merge import MERGE_TOL
from .stored import stored

__all__ = ["SERIES_NODES", "SERIES_RESOLVED", "SERIES_TOL", "SERIES_VERIFIED", "applicable", "hermite_basis",
           "pair_series", "series_tensor"]

#: coefficients of an input no rule resolves are kept where the two largest rules agree to this
#: (relative to ‖f‖): the difference is the error of the smaller rule (aliasing from n ≥ 3Q'/2);
#: the larger one's, from n ≥ 7Q'/2, is smaller by orders of magnitude (~1e-15 at 1e-9 for
#: sech² at variance 8)
SERIES_VERIFIED = 1e-9
#: per-entry truncation bound of the series, relative to the scale ‖f_a‖ ‖g_b‖
SERIES_TOL = 1e-13
#: Gauss–Hermite rules tried for the coefficients, in order (a row takes the first that resolves it)
SERIES_NODES = (128, 256, 512, 1024, 2048)
#: a Q-point rule resolves a row when Σ_{3Q/8<n≤Q/2} c_n² ≤ SERIES_RESOLVED² Σ_n c_n² (SERIES_RESOLVED²
#: ≤ SERIES_TOL: at the last column every pair's bound holds)
SERIES_RESOLVED = 3e-7


def applicable(facs: list[Factor]) -> bool:
    """Two factors, each smooth, without δ and of at most polynomial growth."""
    return len(facs) == 2 and all(
        f.smooth and f.delta == 0 and all(c is not None and c <= 0 for c in f.growth) for f in facs)


#: the recurrences below rescale their values past this size (and track the scale in a log)
_RESCALE = 1e150


def _hermite_rows(x: np.ndarray, log0: np.ndarray, count: int, total: bool = False):
    """exp(log0) h_n(x) for n < ``count`` (rows), by the three-term recurrence
    h_{n+1} = (x h_n − √n h_{n−1})/√(n+1) run on rescaled values, so that neither the values
    nor exp(log0) over- or underflow on the way; ``total``: instead log Σ_{n<count} h_n(x)²."""
    u_prev, u = np.zeros_like(x), np.ones_like(x)
    scale = np.zeros_like(x)           # log of the factor taken out of u
    rows = None if total else np.empty((count, x.size))
    acc = np.zeros_like(x)             # Σ h_n² / e^{2 scale}
    root = np.sqrt(np.arange(count + 1))  # √n (the same doubles as np.sqrt(n) one by one)
    mag = np.empty_like(x)
    for n in range(count):
        if total:
            acc += u * u
        else:
            with np.errstate(divide="ignore"):
                rows[n] = np.sign(u) * np.exp(log0 + scale + np.log(np.abs(u)))
        u_prev, u = u, (x * u - root[n] * u_prev) / root[n + 1]
        if np.abs(u, out=mag).max() > _RESCALE:
            big = mag > _RESCALE
            for arr in (u, u_prev):
                arr[big] /= _RESCALE
            acc[big] /= _RESCALE ** 2
            scale[big] += np.log(_RESCALE)
    return np.log(acc) + 2 * scale if total else rows


@lru_cache(maxsize=16)
def hermite_basis(Q: int, folder: Path | None = None):
    """(x, w, ψ) of the Q-point Gauss–Hermite rule (weights normalised to the standard normal):
    ψ[q, n] = √w_q h_n(x_q) for n ≤ Q/2 (read-only); the full (Q, Q) matrix is orthogonal.  The
    weights are the Christoffel numbers w_q = 1/Σ_{n<Q} h_n(x_q)², summed in logarithms, so that
    ψ stays exact where w_q itself underflows (|x_q| ≳ 38, rules with Q ≳ 700).  ``folder``: the
    tables' folder (:func:`.stored.stored`; the same arrays, read from disk where stored)."""
    if folder is not None:
        return stored(folder, "hermite_basis", (int(Q),), lambda: hermite_basis(Q))
    from scipy.special import roots_hermitenorm  # scipy.special: ~0.3 s of import, when needed

    x, _ = roots_hermitenorm(Q)
    logw = -_hermite_rows(x, np.zeros_like(x), Q, total=True)
    psi = np.ascontiguousarray(_hermite_rows(x, 0.5 * logw, Q // 2 + 1).T)
    w = np.exp(logw)
    for a in (x, w, psi):
        a.setflags(write=False)
    return x, w, psi


#: products of at most this many multiply-adds per call (:func:`_project`)
_PRODUCT_CHUNK = 1 << 18


def _product(v: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """v @ psi in slices of rows of at most _PRODUCT_CHUNK multiply-adds where psi is small:
    OpenBLAS runs such products on the calling thread; a larger one wakes its thread pool,
    which on a loaded machine costs ~10× the product itself (5 ms instead of 0.1 ms for
    256 × 128 × 65, measured)."""
    step = _PRODUCT_CHUNK // psi.size
    if step < 4:
        return v @ psi
    return np.concatenate([v[i:i + step] @ psi for i in range(0, v.shape[0], step)]) if v.shape[0] else v @ psi


@lru_cache(maxsize=16)
def _parity_basis(Q: int, folder: Path | None = None):
    """(ψ_even, ψ_odd): the columns n even and n odd of ψ (:func:`hermite_basis`) on the first Q/2
    nodes (x_q < 0), contiguous.  The nodes are symmetric, x_{Q−1−q} = −x_q, and
    ψ[Q−1−q, n] = (−1)ⁿ ψ[q, n] (both exactly, in the computed doubles)."""
    psi = hermite_basis(Q, folder)[2]
    h = Q // 2
    even, odd = np.ascontiguousarray(psi[:h, 0::2]), np.ascontiguousarray(psi[:h, 1::2])
    for a in (even, odd):
        a.setflags(write=False)
    return even, odd


def _project(v: np.ndarray, Q: int, folder: Path | None = None) -> np.ndarray:
    """c = v @ ψ (n, Q/2 + 1) by the parity of the Hermite functions: with v± the sums and
    differences of the values at the mirrored nodes q and Q − 1 − q, c_n = v+ · ψ[:Q/2, n] for n
    even and v− · ψ[:Q/2, n] for n odd, half the multiply-adds and half the basis read (ψ of
    Q = 2048 is 17 MB: the product streams it from memory).  Within ~1e-15 of ‖c‖ of the full
    product (rounding)."""
    even, odd = _parity_basis(Q, folder)
    h = Q // 2
    back = v[:, ::-1][:, :h]
    c = np.empty((v.shape[0], h + 1))
    c[:, 0::2] = _product(v[:, :h] + back, even)
    c[:, 1::2] = _product(v[:, :h] - back, odd)
    return c


def _values(f: Factor, z: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        v = np.asarray(f.plus(z), dtype=float)
    return np.broadcast_to(v, z.shape)


def _projection(f: Factor, Q: int, sig: np.ndarray, folder: Path | None = None):
    """One factor at the scales ``sig`` (n,) on the Q-point rule: its values f(σ x_q) (n, Q)
    (rows with a value that is not finite set to zero), which rows are finite (n,), the
    coefficients c_k = Σ_q w_q f(σ x_q) ψ_k(x_q), k ≤ Q/2 (n, Q/2 + 1), and E[f²] on the rule
    (n,)."""
    x, w, psi = hermite_basis(Q, folder)
    v = _values(f, np.multiply.outer(sig, x))
    finite = np.all(np.isfinite(v), axis=1)
    v = np.where(finite[:, None], v, 0.0)
    return v, finite, _project(v * psi[:, 0], Q, folder), np.einsum("aq,q,aq->a", v, w, v)


def _coefficients(facs: list[Factor], sig: np.ndarray, folder: Path | None = None, remember=None):
    """For both factors at the scales ``sig`` (n,): coefficients c_n (2, n, Mmax+1), the squared
    norms E[f²] on the rule (2, n), the diagonal E[f g] (n,) and a status per row: 2 resolved
    (the first rule of SERIES_NODES that resolves both factors), 1 verified (no rule resolves
    it, but its coefficients n ≤ Q'/2 on the largest rule agree with those on the one before,
    Q', within SERIES_VERIFIED ‖f‖: those are kept, the rest is zero), 0 neither.

    ``remember``: :meth:`.context.Quadrature.remember`, which keeps each factor's last
    :func:`_projection` per rule: the pair tensors of one layer share their scales, and σ enters
    four of the six of a network's first-order set (each projection is computed once per layer
    instead of once per tensor; the same numbers)."""
    n = sig.size
    same = facs[0] is facs[1]
    half = SERIES_NODES[-1] // 2
    coef = np.zeros((2, n, half + 1))
    norm2 = np.zeros((2, n))
    diag = np.zeros(n)
    status = np.zeros(n, np.int8)
    todo = np.ones(n, bool)
    prev = None
    for Q in SERIES_NODES:
        rows = np.flatnonzero(todo)
        if rows.size == 0:
            break
        w = hermite_basis(Q, folder)[1]
        per = [_projection(f, Q, sig[rows], folder) if remember is None else
               remember(("series projection", f, Q), sig[rows],
                        lambda sg, f=f, Q=Q: _projection(f, Q, sg, folder))
               for f in facs[:1 if same else 2]]
        # a row counts where both factors are finite (the others are never resolved or verified)
        finite = per[0][1] & per[-1][1]
        vals = [p[0] for p in per]
        c = [p[2] for p in per]
        # E[f²] on the rule; the coefficients 3Q/8 < n ≤ Q/2 must have decayed
        nrm = [p[3] for p in per]
        upper = [np.sum(ci[:, 3 * Q // 8 + 1:] ** 2, axis=1) for ci in c]
        if same:
            vals, c, nrm, upper = vals * 2, c * 2, nrm * 2, upper * 2
        ok = finite.copy()
        for u, t2 in zip(upper, nrm):
            ok &= u <= SERIES_RESOLVED ** 2 * t2
        good = rows[ok]
        for i in range(2):
            coef[i, good, :Q // 2 + 1] = c[i][ok]
            norm2[i, good] = nrm[i][ok]
        diag[good] = np.einsum("aq,q,aq->a", vals[0][ok], w, vals[1][ok])
        status[good] = 2
        todo[good] = False
        if Q == SERIES_NODES[-1] and prev is not None:
            prows, pc = prev
            at = np.searchsorted(prows, rows)  # every row left here was left by the rule before
            k = pc[0].shape[1]
            ver = finite & ~ok
            for i in range(2):
                ver &= np.max(np.abs(c[i][:, :k] - pc[i][at]), axis=1) <= SERIES_VERIFIED * np.sqrt(nrm[i])
            sel = rows[ver]
            for i in range(2):
                coef[i, sel, :k] = c[i][ver, :k]
                norm2[i, sel] = nrm[i][ver]
            status[sel] = 1
        prev = (rows[~ok], [ci[~ok] for ci in c])
    return coef, norm2, diag, status


def _tails(c: np.ndarray, norm2: np.ndarray) -> np.ndarray:
    """t[a, M] = (Σ_{n>M} c[a, n]²)^{1/2} by Parseval, ‖f_a‖² − Σ_{n≤M} c_n², with every term the
    columns leave out (discrete Parseval on the rule: Σ_{n<Q} c_n² = E_Q[f²]) and an allowance
    of 1e-15 ‖f_a‖² for the rounding of the difference."""
    t2 = norm2[:, None] - np.cumsum(c * c, axis=1)
    return np.sqrt(np.maximum(t2, 0.0) + 1e-15 * norm2[:, None])


def _parity(cf: np.ndarray, cg: np.ndarray, nf: np.ndarray, ng: np.ndarray) -> int | None:
    """0 or 1 when every product c_n d_n of non-negligible size (> 1e-16 of the largest scale)
    has n of that parity (even or odd factors), else None."""
    big = np.max(np.abs(cf), axis=0) * np.max(np.abs(cg), axis=0)
    live = np.flatnonzero(big > 1e-16 * np.sqrt(np.max(nf) * np.max(ng)))
    if live.size == 0:
        return 0
    par = live % 2
    return int(par[0]) if np.all(par == par[0]) else None


def pair_series(cf: np.ndarray, cg: np.ndarray, nf: np.ndarray, ng: np.ndarray, rho: np.ndarray,
                ia: np.ndarray, ib: np.ndarray, horner=None):
    """Σ_{n ≤ M_p} ρ_p^n cf[ia_p, n] cg[ib_p, n] for the pairs p, each cut at the smallest M_p
    with |ρ_p|^{M_p+1} τ_f τ_g ≤ SERIES_TOL, τ = t/‖f‖ the normalised tail of the row with the
    largest one at that order (module docstring; a bound on the pair's own); ``nf``, ``ng`` the
    squared norms E[f²], E[g²] per row (:func:`_tails`).  Returns (values, ok): ``ok`` False
    where no order within the columns meets the bound (the value is then not to be used).  Factors of one parity (all c_n d_n with n even, or
    all odd) sum in ρ² over every second term.  ``horner``: the compiled sum
    (:func:`.compiled.pair_horner`, the same numbers), or None for numpy."""
    P = rho.size
    out = np.zeros(P)
    if P == 0:
        return out, np.ones(0, bool)
    Mmax = cf.shape[1] - 1
    # normalised tails, their worst row per order M, and from those the largest |ρ| that order M
    # serves: |ρ|^{M+1} τ_f(M) τ_g(M) ≤ SERIES_TOL (cumulative, so M(|ρ|) is monotone)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau_f = np.max(np.where(nf[:, None] > 0, _tails(cf, nf) / np.sqrt(nf)[:, None], 0.0), axis=0)
        tau_g = np.max(np.where(ng[:, None] > 0, _tails(cg, ng) / np.sqrt(ng)[:, None], 0.0), axis=0)
        reach = (SERIES_TOL / (tau_f * tau_g)) ** (1.0 / np.arange(1, Mmax + 2))
    reach = np.maximum.accumulate(np.minimum(np.nan_to_num(reach, nan=np.inf), 1.0))
    arho = np.abs(rho)
    ok = arho <= reach[-1]  # the others: no order within the columns meets the bound
    lo = np.minimum(np.searchsorted(reach, arho, side="left"), Mmax)
    parity = _parity(cf, cg, nf, ng)
    start, step = (0, 1) if parity is None else (parity, 2)
    # in steps of ``step`` from ``start``: the terms k = 0 … K_p, n = start + step·k ≤ M_p
    Kp = (np.maximum(lo - start, -1) // step).astype(np.int16)
    order = np.argsort(-Kp, kind="stable")  # radix sort of 16-bit keys
    Kp, r, a, b = Kp[order], rho[order], ia[order], ib[order]
    mult = r * r if step == 2 else r
    cfT, cgT = np.ascontiguousarray(cf.T), np.ascontiguousarray(cg.T)
    acc = np.zeros(P)
    if horner is not None:
        horner(Kp.astype(np.int64), np.ascontiguousarray(mult), np.ascontiguousarray(a, np.int64),
               np.ascontiguousarray(b, np.int64), cfT, cgT, int(start), int(step), acc)
    else:
        # active pairs at term k: those with K_p ≥ k, a prefix of the sorted list
        count = np.searchsorted(-Kp, -np.arange(max(int(Kp[0]), 0) + 1), side="right")
        for k in range(int(Kp[0]), -1, -1):
            n = start + step * k
            m = int(count[k])
            head = acc[:m]
            head *= mult[:m]
            term = cfT[n].take(a[:m])
            term *= cgT[n].take(b[:m])
            head += term
    if start == 1:
        acc *= r
    out[order] = acc
    return out, ok


def series_tensor(facs: list[Factor], K: np.ndarray, folder: Path | None = None, remember=None,
                  horner=None):
    """(T, missing): T[a, b] = E[f(z_a) g(z_b)] for z ~ N(0, K) (K checked, (N, N)) by the
    series, NaN at the index pairs ``missing`` (m, 2) that it leaves to the general path (inputs
    no rule resolves or verifies, pairs whose bound no order meets, the diagonal of verified
    inputs).  Identical factors (the same :class:`Factor` object) give a symmetric T, summed once
    per pair; ``missing`` then lists a ≤ b only.  ``folder``: the quadrature tables' folder
    (:attr:`.context.Quadrature.tables`; None: computed in the process); ``remember``:
    :meth:`.context.Quadrature.remember`, to share the factors' projections between the tensors
    of a layer (None: each tensor computes its own; the same numbers); ``horner``: as in
    :func:`pair_series`."""
    N = K.shape[0]
    sym = facs[0] is facs[1]
    var = np.clip(np.diag(K), 0.0, None)
    uvar, inv = np.unique(var, return_inverse=True)
    coef, norm2, diag, ustatus = _coefficients(facs, np.sqrt(uvar), folder, remember)
    status = ustatus[inv]
    T = np.full((N, N), np.nan)
    full = np.flatnonzero(status == 2)
    T[full, full] = diag[inv][full]
    # only the columns that a row uses
    used = np.flatnonzero(np.any(coef[:, ustatus > 0] != 0, axis=(0, 1)))
    coef = coef[:, :, :(used[-1] + 1 if used.size else 1)]
    cf, cg, nf, ng = coef[0][inv], coef[1][inv], norm2[0][inv], norm2[1][inv]
    usable = np.flatnonzero(status > 0)
    la, lb = np.triu_indices(usable.size, 1) if sym else np.nonzero(~np.eye(usable.size, dtype=bool))
    ia, ib = usable[la], usable[lb]
    sig = np.sqrt(var)
    den = sig[ia] * sig[ib]
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.clip(np.where(den > 0, K[ia, ib] / den, 0.0), -1.0, 1.0)
    missing = [np.stack([ia, ib], axis=1)[:0]]
    # collinear pairs, 1 − |ρ| < MERGE_TOL: identical inputs (ρ > 0, equal variances) take the
    # diagonal value itself, the others the general path (merged to one variable, as before)
    coll = 1 - np.abs(rho) < MERGE_TOL
    if np.any(coll):
        same = coll & (rho > 0) & (var[ia] == var[ib]) & (status[ia] == 2)
        T[ia[same], ib[same]] = T[ia[same], ia[same]]
        if sym:
            T[ib[same], ia[same]] = T[ia[same], ia[same]]
        missing.append(np.stack([ia[coll & ~same], ib[coll & ~same]], axis=1))
        keep = ~coll
        ia, ib, la, lb, rho = ia[keep], ib[keep], la[keep], lb[keep], rho[keep]
    both = (status[ia] == 2) & (status[ib] == 2)
    # pairs of resolved inputs on their own (their tails set the orders), then the rest
    for part in (both, ~both):
        if np.all(part):  # every usable input takes part: the local indices are those of the pairs
            p, rows, loc = slice(None), usable, (la, lb)
        else:
            p = np.flatnonzero(part)
            if p.size == 0:
                continue
            rows = np.unique(np.concatenate([ia[p], ib[p]]))
            loc = np.searchsorted(rows, ia[p]), np.searchsorted(rows, ib[p])
        vals, ok = pair_series(cf[rows], cg[rows], nf[rows], ng[rows], rho[p], *loc, horner=horner)
        if isinstance(p, slice):
            p = np.arange(ia.size)
        if not np.all(ok):
            missing.append(np.stack([ia[p[~ok]], ib[p[~ok]]], axis=1))
            p, vals = p[ok], vals[ok]
        T[ia[p], ib[p]] = vals
        if sym:
            T[ib[p], ia[p]] = vals
    # inputs without a series, and the diagonal of the verified ones
    rest = np.flatnonzero(status < 2)
    if rest.size:
        pairs = np.stack(np.meshgrid(rest, np.arange(N), indexing="ij"), axis=-1).reshape(-1, 2)
        pairs = pairs[(status[pairs[:, 1]] == 0) | (status[pairs[:, 0]] == 0) | (pairs[:, 0] == pairs[:, 1])]
        if sym:
            pairs = np.sort(pairs, axis=1)
        else:
            pairs = np.concatenate([pairs, pairs[:, ::-1]])
        missing.append(pairs)
    missing = np.concatenate(missing)
    if missing.shape[0]:
        missing = np.unique(missing, axis=0)
    return T, missing
