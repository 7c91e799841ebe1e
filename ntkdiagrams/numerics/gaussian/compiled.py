"""Compiled kernel of the fast path's nested rule (optional: needs numba, the ``[fast]`` extra).

:func:`ntkdiagrams.numerics.gaussian.nested.nested_sum` evaluates, for each index tuple t with
Cholesky factor L (z = L u, u ~ N(0, I)),

    E_t = Σ_{i₀} w₀ F₀(z₀) Σ_{i₁} w₁ F₁(z₁) … Σ_{i_J} w_J F_J(z_J) · G(μ_{J+1}, L_{J+1,J+1}),

    z_j = μ_j + L_jj u_{i_j},    μ_j = Σ_{k<j} L_jk u_{i_k},

with numpy arrays over all quadrature points of a chunk.  :func:`nested` computes the same sum
depth-first, one compiled loop per tuple.  The rules are the same: level j of tuple t uses the
rule ``codes[t, j]`` of a flattened bank (:func:`ntkdiagrams.numerics.gaussian.rules.rule_bank`;
Gauss–Hermite: one row; split rule: the row of the split c = −μ_j/L_jj, rounded to the split
grid, picked per parent point); F_j is the product of the block's factors f(α z_j);
G(μ, s) = E[f(μ + s ξ)] is the 4 × 4-point Lagrange interpolant of the same table, with the
same formulas (:mod:`ntkdiagrams.numerics.gaussian.interpolation`, compiled here; its cubic
coefficients in μ are computed per tuple on the cells within TABLE_REACH standard deviations of
μ).  So the two paths agree to rounding (tests/test_gaussian_jit.py: 1e-13 relative).

Factors.  Only factors with an exponential form f(z) = P(E)/Q(E), E = e^{κz}, P and Q
polynomials of degree ≤ d (tanh, sigmoid, their powers and derivatives) are compiled.  They are
data (κ and the coefficients of P and Q), so one compiled kernel serves them all; numba caches
it on disk.  A factor is

    f(z) = P(E)/Q(E)                       for κz ≤ 0,   E = e^{κz} ≤ 1,
         = P̃(y)/Q̃(y),  y = e^{−κz} ≤ 1      for κz > 0,   P̃(y) = y^d P(1/y),

so nothing overflows.  On the last outer level, where most points are, a block of one factor
uses the addition theorem instead, f(α(μ + s u_i)) = R(e^{κα μ} · e^{κα s u_i}): e^{κα s u_i}
is computed once per tuple and rule row, e^{κα μ} once per parent point, so no exponential is
taken per point (guarded: |κα z|·d ≤ ``expo_max``, else the direct form).  Other factors (erf,
gelu, softplus, …) keep the numpy path.

Threads.  Tuples are split into interleaved groups (t ≡ g mod groups, so expensive and cheap
tuples mix) that run in the Python threads of the caller's pool (a
:class:`ntkdiagrams.numerics.gaussian.context.Quadrature`); the kernel releases the GIL.
numba's own threading layers are not used: GNU OpenMP is not safe across fork (the validation
scripts use process pools) and the workqueue layer not across threads.  Timings:
docs/gaussian.md.
"""
from __future__ import annotations

import math

import numpy as np

from .interpolation import cubic_coefficients, lagrange4

try:  # numba is optional: without it the numpy path (nested.py) is used
    import numba as nb
except ImportError:  # pragma: no cover - depends on the installation
    nb = None

#: nested levels of the kernel (m ≤ 4 variables)
LEVELS = 4


def available() -> bool:
    """Whether numba is installed (the compiled path can be used)."""
    return nb is not None


#: the exception types of numba's compiler (empty without numba)
COMPILER_ERRORS = (nb.core.errors.NumbaError,) if nb is not None else ()


if nb is not None:
    _njit = nb.njit(cache=True, nogil=True, error_model="numpy")
    #: small helpers are inlined by numba: LLVM does not inline a call into another compiled
    #: (cached) function, and such a call costs ~30 ns
    _inline = nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")

    @_inline
    def _row(G, mu, s, c_max, dc):
        """Row of a rule for a parent point: 0 for Gauss–Hermite, else the rounded split."""
        if G == 1:
            return 0
        c = -mu / s if s > 0.0 else 0.0
        if c < -c_max:
            c = -c_max
        elif c > c_max:
            c = c_max
        return int(np.rint((c + c_max) / dc))

    @_inline
    def _horner(c, k, row, d, x):
        """Σ_i c[k, row, i] xⁱ, i ≤ d."""
        v = c[k, row, d]
        for i in range(d - 1, -1, -1):
            v = v * x + c[k, row, i]
        return v

    @_inline
    def _factor(k, x, fac_kappa, fac_deg, fac_coef):
        """f_k(x) = P(E)/Q(E) with E = e^{−|κx|} ≤ 1: rows P, Q of fac_coef[k] for κx ≤ 0,
        P̃, Q̃ for κx > 0."""
        d = fac_deg[k]
        a = fac_kappa[k] * x
        e = math.exp(-abs(a))
        r = 0 if a <= 0.0 else 2
        return _horner(fac_coef, k, r, d, e) / _horner(fac_coef, k, r + 1, d, e)

    @_inline
    def _block(j, t, z, nmem, fid, alpha, fac_kappa, fac_deg, fac_coef):
        """F_j(z) = Π_members f(α z)."""
        v = 1.0
        for i in range(nmem[j]):
            v *= _factor(fid[j, i], alpha[t, j, i] * z, fac_kappa, fac_deg, fac_coef)
        return v

    # the same formulas as the numpy path's, compiled
    _lagrange = _inline(lagrange4)
    _cubic = _inline(cubic_coefficients)

    @_njit
    def _tuple_sum(t, L, codes, U, W, base, rows, width, umax, nmem, fid, alpha, fac_kappa,
                   fac_deg, fac_coef, outer, tv, tab, M, h_mu, h_s, reach, c_max, dc, expo_max,
                   cells, y, eu, eu_stamp, f, e, num, den, idx, off, wt, mu, ws):
        """E_t.  The parent levels 0 … J−1 (J = outer − 1) are walked depth-first with an
        explicit stack (node index, rule offset, weight and running means per level); the
        last outer level J is summed in the inner loop, with the table lookup when tv ≥ 0.

        The remaining arguments are scratch arrays of the calling thread, reused from tuple
        to tuple; a row of e^{κα s u} is valid for this tuple where its stamp is t + 1, so
        nothing needs clearing."""
        n_mu, n_s = tab.shape
        js = 1
        lo = hi = 0.0
        if tv >= 0:  # the interpolation in s is the same for every point of the tuple
            xs = L[t, tv, tv] / h_s + 1.0
            js = min(max(int(math.floor(xs)), 1), n_s - 3)
            ws[0], ws[1], ws[2], ws[3] = _lagrange(xs - js)
            sd = 0.0
            for k in range(tv):
                sd += L[t, tv, k] ** 2
            rr = reach * math.sqrt(sd) / h_mu
            lo = max(M / h_mu - rr, 1.0)
            hi = min(M / h_mu + rr, n_mu - 3.0)
            # cubic coefficients (in x − i) of the interpolant on every table cell i the tuple
            # can reach, through the rows y_{i−1} … y_{i+2} interpolated in s
            for i in range(int(lo) - 1, int(hi) + 3):
                y[i] = (ws[0] * tab[i, js - 1] + ws[1] * tab[i, js] + ws[2] * tab[i, js + 1]
                        + ws[3] * tab[i, js + 2])
            for i in range(int(lo), int(hi) + 1):
                cells[i, 0], cells[i, 1], cells[i, 2], cells[i, 3] = _cubic(y[i - 1], y[i], y[i + 1],
                                                                            y[i + 2])
        stamp = t + 1
        J = outer - 1
        # the last level's single factor by the addition theorem: e^{κα s u} per rule row
        rJ = codes[t, J]
        sJ = L[t, J, J]
        kJ = fid[J, 0]
        dJ = fac_deg[kJ]
        ka = fac_kappa[kJ] * alpha[t, J, 0]
        add = nmem[J] == 1
        idx[:] = 0
        wt[0] = 1.0
        mu[0, :] = 0.0  # mu[j, i]: mean of z_i given u_0 … u_{j−1}
        r = codes[t, 0]
        off[0] = base[r] + _row(rows[r], 0.0, L[t, 0, 0], c_max, dc) * width[r]
        total = 0.0
        j = 0
        while True:
            r = codes[t, j]
            if idx[j] == width[r]:  # level j done: back to its parent
                if j == 0:
                    break
                j -= 1
                idx[j] += 1
                continue
            if j < J:  # a parent node
                u = U[off[j] + idx[j]]
                wt[j + 1] = wt[j] * W[off[j] + idx[j]] * _block(
                    j, t, mu[j, j] + L[t, j, j] * u, nmem, fid, alpha, fac_kappa, fac_deg, fac_coef)
                for i in range(j + 1, LEVELS):
                    mu[j + 1, i] = mu[j, i] + L[t, i, j] * u
                j += 1
                idx[j] = 0
                if j < J:
                    r = codes[t, j]
                    off[j] = base[r] + _row(rows[r], mu[j, j], L[t, j, j], c_max, dc) * width[r]
                continue
            # the last outer level J, all its nodes at once
            m = mu[J, J]
            k = width[rJ]
            g = _row(rows[rJ], m, sJ, c_max, dc)
            o = base[rJ] + g * k
            if add and abs(ka) * (abs(m) + sJ * umax[rJ]) * dJ <= expo_max:
                if eu_stamp[g] != stamp:
                    for i in range(k):
                        eu[g * k + i] = math.exp(ka * sJ * U[o + i])
                    eu_stamp[g] = stamp
                em = math.exp(ka * m)
                # R(E) at all nodes, coefficient by coefficient: loops over the nodes that
                # the compiler vectorises
                for i in range(k):
                    e[i] = em * eu[g * k + i]
                    num[i] = fac_coef[kJ, 0, dJ]
                    den[i] = fac_coef[kJ, 1, dJ]
                for c in range(dJ - 1, -1, -1):
                    p, q = fac_coef[kJ, 0, c], fac_coef[kJ, 1, c]
                    for i in range(k):
                        num[i] = num[i] * e[i] + p
                        den[i] = den[i] * e[i] + q
                for i in range(k):
                    f[i] = W[o + i] * num[i] / den[i]
            else:
                for i in range(k):
                    f[i] = W[o + i] * _block(J, t, m + sJ * U[o + i], nmem, fid, alpha, fac_kappa,
                                             fac_deg, fac_coef)
            acc = 0.0
            if tv < 0:
                for i in range(k):
                    acc += f[i]
            else:
                mt = (mu[J, tv] + M) / h_mu
                lt = L[t, tv, J] / h_mu
                for i in range(k):
                    x = min(max(mt + lt * U[o + i], lo), hi)
                    row = int(x)
                    x -= row
                    acc += f[i] * (((cells[row, 3] * x + cells[row, 2]) * x + cells[row, 1]) * x
                                   + cells[row, 0])
            total += wt[J] * acc
            j = J - 1  # J ≥ 1: m ≥ 2
            idx[j] += 1
        return total

    @_njit
    def _nested_group(grp, groups, L, codes, U, W, base, rows, width, umax, nmem, fid, alpha,
                      fac_kappa, fac_deg, fac_coef, outer, tv, tab, M, h_mu, h_s, reach, c_max,
                      dc, expo_max, out):
        """The tuples t ≡ grp (mod groups), with one set of scratch arrays.  Interleaved
        groups spread expensive and cheap tuples evenly; they run in Python threads (the
        kernel releases the GIL), not in numba's threading layer: GNU OpenMP is not safe
        across fork (scripts use process pools) and the workqueue layer not across threads."""
        kmax = np.max(width)
        cells = np.empty((tab.shape[0], 4))
        y = np.empty(tab.shape[0])
        eu = np.empty(np.max(rows * width))
        eu_stamp = np.zeros(np.max(rows), np.int64)
        f, e, num, den = np.empty(kmax), np.empty(kmax), np.empty(kmax), np.empty(kmax)
        idx = np.zeros(LEVELS, np.intp)
        off = np.zeros(LEVELS, np.intp)
        wt = np.ones(LEVELS + 1)
        mu = np.zeros((LEVELS + 1, LEVELS + 1))
        ws = np.zeros(4)
        for t in range(grp, L.shape[0], groups):
            out[t] = _tuple_sum(t, L, codes, U, W, base, rows, width, umax, nmem, fid, alpha,
                                fac_kappa, fac_deg, fac_coef, outer, tv, tab, M, h_mu, h_s,
                                reach, c_max, dc, expo_max, cells, y, eu, eu_stamp, f, e, num,
                                den, idx, off, wt, mu, ws)


def exponential_coefficients(num, den, degree):
    """Rows P, Q, P̃, Q̃ (ascending powers, length degree + 1) of f = P(E)/Q(E)."""
    c = np.zeros((4, degree + 1))
    c[0, :len(num)] = num
    c[1, :len(den)] = den
    c[2] = c[0, ::-1]
    c[3] = c[1, ::-1]
    return c


def nested(L, codes, bank, nmem, fid, alpha, factors, outer, tab, tv, M, h_mu, h_s, reach,
           c_max, dc, expo_max, pool=None, groups=1):
    """Σ of the nested rule per tuple (see the module docstring).  ``factors``: per distinct
    factor (κ, coefficient rows of :func:`exponential_coefficients`); ``expo_max``: the bound
    on |κα z|·d of the addition theorem (negative: never used); ``pool``: an executor whose
    threads share the tuples in ``groups`` interleaved groups (None: this thread)."""
    F = len(factors)
    deg = np.zeros(F, np.intp)
    kappa = np.zeros(F)
    D = max(c.shape[1] for _, c in factors)
    coef = np.zeros((F, 4, D))
    for k, (kap, c) in enumerate(factors):
        kappa[k], deg[k] = kap, c.shape[1] - 1
        coef[k, :, :c.shape[1]] = c
    U, W, base, rows, width, umax = bank
    T = L.shape[0]
    out = np.empty(T)
    groups = 1 if pool is None else max(1, min(T, groups))

    def run(grp):
        _nested_group(grp, groups, L, codes, U, W, base, rows, width, umax, nmem, fid, alpha,
                      kappa, deg, coef, outer, tv, tab, M, h_mu, h_s, reach, c_max, dc,
                      float(expo_max), out)
    if groups == 1:
        run(0)
    else:
        list(pool.map(run, range(groups)))
    return out
