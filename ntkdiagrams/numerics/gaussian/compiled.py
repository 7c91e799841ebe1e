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
G(μ, s) = E[f(μ + s ξ)] is the 6 × 6-point Lagrange interpolant of the same table, with the
same formulas (:mod:`ntkdiagrams.numerics.gaussian.interpolation`, compiled here; its quintic
coefficients in μ are computed per tuple on the cells within TABLE_REACH standard deviations of
μ).  So the two paths agree to rounding (tests/test_gaussian_jit.py: 1e-13 relative), up to
the piecewise polynomials of the elementary forms (below).

A tuple with fewer quadrature points than table cells within TABLE_REACH standard deviations of μ
(three-variable tuples of deep layers: ~10³ points, ~4·10³ cells) skips the cells' quintic
coefficients and reads the table rows (interpolated in s) by the 6-point Lagrange weights per point:
the same interpolant, so the numbers agree to rounding.

Four variables whose three outer levels are each one elementary form with a piecewise
polynomial (:func:`three_levels`) take three plain loops instead of the walk (:func:`_three_levels`):
the same operations in the same order, ~20 % less time.

:func:`two_factor` is the kernel of the two-factor form (:mod:`.twofactor`): two outer levels, and
per point the product of three factors read from their tables, each interpolated in s once per
tuple.  :func:`pair_horner` sums the Hermite series of :mod:`.series` pair by pair.

Factors.  Every factor is data, so one compiled kernel serves them all (numba caches it on
disk; nothing is compiled per activation).  Two kinds (:func:`pack_factors` lays both out in
two flat arrays: every array handed to an inlined helper costs reference counts per call):

* an exponential form f(z) = P(E)/Q(E), E = e^{κz}, P and Q polynomials of degree ≤ d
  (tanh, sigmoid, their powers and derivatives; :func:`.factors.exponential_form`):

      f(z) = P(E)/Q(E)                       for κz ≤ 0,   E = e^{κz} ≤ 1,
           = P̃(y)/Q̃(y),  y = e^{−κz} ≤ 1      for κz > 0,   P̃(y) = y^d P(1/y),

  so nothing overflows.  On the last outer level, where most points are, a block of one such
  factor uses the addition theorem instead, f(α(μ + s u_i)) = R(e^{κα μ} · e^{κα s u_i}):
  e^{κα s u_i} is computed once per tuple and rule row, e^{κα μ} once per parent point, so no
  exponential is taken per point (guarded: |κα z|·d ≤ ``expo_max``, else the direct form);
* an elementary form (:mod:`.elementary`: GELU, erf, softplus, swish, sin, their derivatives,
  powers and products), f(z) = Σ_t P_t(z) Π B_a(z) with atoms B from a fixed set (erf(κz + λ),
  exp(κz² + λz), log(1 + e^{κz+λ}), sin, cos, an exponential form), evaluated by code.  Where
  it has one, the kernel reads its piecewise polynomial (:func:`.elementary.form_table`:
  f = z^q h, h of degree 7 on cells of width 1/32 over |z| < 32, within 5e-14 of f relative
  to |f| + |z|^q max|h|, so also at tiny variances), one Horner sum per
  point instead of erf and exp (on the last outer level inline, node by node); beyond the
  table, the terms and atoms themselves.

Factors with neither form (atan, …) keep the numpy path.  Agreement with the numpy path, which
evaluates the lambdified expressions: ≤ 1e-13 relative (tests/test_gaussian_jit.py,
tests/test_gaussian_elementary.py; measured ≤ 1e-14); the exponential forms' arithmetic is
unchanged, so their numbers are bit-identical to the kernel's before the elementary forms.

Pruning.  Points whose product of rule weights is below the tuple's threshold thr[t]
(:mod:`.pruning`: ≤ 1e-16 of the factors' size in all, ~1e-25 per point on four-point tuples)
are skipped, and a parent node whose weight product is already below it is skipped with
everything under it; thr = 0 (or None) prunes nothing.  The numpy path does not prune; the two
still agree to ≤ 1e-13 (tests/test_gaussian_pruning.py, at variance 6).

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

from .context import in_groups
from .elementary import ATOM_EXPO, FORM_TABLE_H, FORM_TABLE_Z, elementary_form
from .factors import Factor
from .interpolation import lagrange6, quintic_coefficients

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
    def _horner(fd, o, d, x):
        """Σ_i fd[o + i] xⁱ, i ≤ d."""
        v = fd[o + d]
        for i in range(d - 1, -1, -1):
            v = v * x + fd[o + i]
        return v

    @_inline
    def _cell_poly(fd, o, d, t):
        """Σ_i fd[o + i] tⁱ, i ≤ d: a cell of a piecewise polynomial (t ∈ [−1, 1]); degree 7 (the
        tables' degree, :data:`.elementary.FORM_TABLE_DEGREE`) by Estrin's scheme, a dependency
        chain of 3 multiply-adds instead of Horner's 7 (~15 % of a four-point tuple's time)."""
        if d == 7:
            t2 = t * t
            return ((fd[o] + fd[o + 1] * t) + (fd[o + 2] + fd[o + 3] * t) * t2
                    + ((fd[o + 4] + fd[o + 5] * t) + (fd[o + 6] + fd[o + 7] * t) * t2) * (t2 * t2))
        return _horner(fd, o, d, t)

    @_inline
    def _expo(k, x, fd, fi):
        """f_k(x) = P(E)/Q(E) with E = e^{−|κx|} ≤ 1: rows P, Q for κx ≤ 0, P̃, Q̃ for κx > 0
        (fi[k] = (0, offset o, degree d): κ = fd[o], then the four rows of d + 1)."""
        o, d = fi[k, 1], fi[k, 2]
        a = fd[o] * x
        e = math.exp(-abs(a))
        r = o + 1 if a <= 0.0 else o + 1 + 2 * (d + 1)
        return _horner(fd, r, d, e) / _horner(fd, r + d + 1, d, e)

    @_inline
    def _atom(c, p0, p1, p2, x):
        """Atom of code c ≠ EXPO with parameters (κ, λ, μ) = (p0, p1, p2) at x (codes of
        :mod:`.elementary`)."""
        if c == 1:  # ATOM_GAUSS: exp(κx² + λx)
            return math.exp(x * (p0 * x + p1))
        t = p0 * x + p1
        if c == 0:  # ATOM_ERF
            return math.erf(t)
        if c == 2:  # ATOM_SOFTPLUS: μ + log(1 + e^t), stably
            return p2 + (max(t, 0.0) + math.log1p(math.exp(-abs(t))))
        if c == 3:  # ATOM_SIN
            return math.sin(t)
        return math.cos(t)  # ATOM_COS

    @_njit
    def _terms(k, x, fd, fi):
        """An elementary form k off its table: Σ_terms P_t(x) Π atoms (each atom evaluated
        where it occurs).  Not inlined: rare, and it would bloat the hot loops."""
        v = 0.0
        for r in range(fi[k, 3], fi[k, 4]):  # term rows: (−, offset, degree, atoms from, to)
            p = _horner(fd, fi[r, 1], fi[r, 2], x)
            for q in range(fi[r, 3], fi[r, 4]):  # atom rows: (code, offset of κ λ μ, row)
                c = fi[q, 0]
                if c == 5:  # ATOM_EXPO: an exponential form of its own row
                    p *= _expo(fi[q, 2], x, fd, fi)
                else:
                    o = fi[q, 1]
                    p *= _atom(c, fd[o], fd[o + 1], fd[o + 2], x)
            v += p
        return v

    @_inline
    def _piecewise(k, x, fd, fi):
        """An elementary form k with a piecewise polynomial (fi[k, 2] ≥ 0) at x, inline; off the
        table by its terms (:func:`_terms`).  For the parent levels (:func:`_form` costs a call
        per parent node: a quarter of the time of deep layers' tuples, with few inner nodes) and
        blocks of several such factors on the last level."""
        o, d = fi[k, 1], fi[k, 2]
        y = (x + fd[o]) * fd[o + 1]  # fd[o] = Z, fd[o + 1] = 1/h, fd[o + 2] = cells,
        if y >= 0.0 and y < fd[o + 2]:  # fd[o + 3] = q of g = x^q h
            c = int(y)
            v = _cell_poly(fd, o + 4 + c * (d + 1), d, 2.0 * (y - c) - 1.0)
            for _ in range(int(fd[o + 3])):
                v *= x
            return v
        return _terms(k, x, fd, fi)

    @_njit
    def _form(k, x, fd, fi):
        """An elementary form k (fi[k, 0] = 1) at x: its piecewise polynomial where x is on
        it (:func:`_piecewise`), else its terms (:func:`_terms`).  Not inlined into the loops: a
        branch there costs the exponential forms' direct evaluation ~2× (missed optimisations of
        the inlined code)."""
        if fi[k, 2] >= 0:
            return _piecewise(k, x, fd, fi)
        return _terms(k, x, fd, fi)

    @_inline
    def _factor(k, x, fd, fi):
        """f_k(x) from the flat arrays of :func:`pack_factors`: an exponential form (fi[k, 0]
        = 0) inline, an elementary form (fi[k, 0] = 1) by :func:`_form`."""
        if fi[k, 0] == 0:
            v = _expo(k, x, fd, fi)
        else:
            v = _form(k, x, fd, fi)
        return v

    @_inline
    def _repeats(j, i, t, fid, alpha):
        """Whether member i of level j is member i − 1 again (same factor, same scale: merged
        slots, f(z)²), so that its value is reused."""
        return i > 0 and fid[j, i] == fid[j, i - 1] and alpha[t, j, i] == alpha[t, j, i - 1]

    @_inline
    def _block(j, t, z, nmem, fid, alpha, fd, fi):
        """F_j(z) = Π_members f(α z), every member an exponential form; a member equal to the one
        before it (same factor and scale: merged slots, f(z)²) reuses its value."""
        v = 1.0
        last = 1.0
        for i in range(nmem[j]):
            if not _repeats(j, i, t, fid, alpha):
                last = _expo(fid[j, i], alpha[t, j, i] * z, fd, fi)
            v *= last
        return v

    @_inline
    def _block_any(j, t, z, nmem, fid, alpha, fd, fi):
        """F_j(z) = Π_members f(α z), any member.  Kept apart from :func:`_block`: a branch
        per factor in the inlined loops makes the exponential forms' direct evaluation ~2×
        slower.  A member equal to the one before it reuses its value (as :func:`_block`)."""
        v = 1.0
        last = 1.0
        for i in range(nmem[j]):
            if not _repeats(j, i, t, fid, alpha):
                last = _factor(fid[j, i], alpha[t, j, i] * z, fd, fi)
            v *= last
        return v

    # the same formulas as the numpy path's, compiled
    _lagrange = _inline(lagrange6)
    _quintic = _inline(quintic_coefficients)

    @_inline
    def _tuple_table(t, L, codes, width, outer, tv, tab, M, h_mu, h_s, reach, ws, y, cells):
        """The table of tuple t's last variable tv, interpolated in s at s = L[t, tv, tv] (the
        same for all its points): the rows y (window [lo, hi] of TABLE_REACH standard deviations
        of μ, in table units) and, unless the tuple is ``direct``, the quintic coefficients of
        every cell in it.  Returns (lo, hi, direct)."""
        n_s, n_mu = tab.shape
        xs = L[t, tv, tv] / h_s + 2.0
        js = min(max(int(math.floor(xs)), 2), n_s - 4)
        ws[0], ws[1], ws[2], ws[3], ws[4], ws[5] = _lagrange(xs - js)
        sd = 0.0
        for k in range(tv):
            sd += L[t, tv, k] ** 2
        rr = reach * math.sqrt(sd) / h_mu
        lo = max(M / h_mu - rr, 2.0)
        hi = min(M / h_mu + rr, n_mu - 4.0)
        # quintic coefficients (in x − i) of the interpolant on every table cell i the tuple
        # can reach, through the rows y_{i−2} … y_{i+3} interpolated in s
        _in_s(tab, js, ws, y, 0, int(lo) - 2, int(hi) + 4)
        # a tuple with fewer points than cells reads y by the Lagrange weights per point
        # (the same interpolant): the cells' coefficients would cost more than its points
        points = 1
        for j in range(outer):
            points *= width[codes[t, j]]
        direct = points < hi - lo
        if not direct:
            for i in range(int(lo), int(hi) + 1):
                (cells[i, 0], cells[i, 1], cells[i, 2], cells[i, 3], cells[i, 4],
                 cells[i, 5]) = _quintic(y[i - 2], y[i - 1], y[i], y[i + 1], y[i + 2], y[i + 3])
        return lo, hi, direct

    @_njit
    def _tuple_sum(t, L, codes, U, W, base, rows, width, umax, nmem, fid, alpha, fd, fi, outer,
                   tv, tab, M, h_mu, h_s, reach, c_max, dc, expo_max, thr, cells, y, eu, eu_stamp,
                   f, e, num, den, idx, off, wt, pw, mu, ws, expo, pieces, three, xq, cq, tq, rq, fq,
                   vq):
        """E_t.  The parent levels 0 … J−1 (J = outer − 1) are walked depth-first with an
        explicit stack (node index, rule offset, weight and running means per level); the
        last outer level J is summed in the inner loop, with the table lookup when tv ≥ 0.

        ``three``: the call qualifies for :func:`_three_levels`, which takes the tuple where it
        reads the table's cells (not ``direct``).  The remaining arguments are scratch arrays of
        the calling thread, reused from tuple to tuple; a row of e^{κα s u} is valid for this
        tuple where its stamp is t + 1, so nothing needs clearing."""
        lo = hi = 0.0
        direct = False
        if tv >= 0:  # the interpolation in s is the same for every point of the tuple
            lo, hi, direct = _tuple_table(t, L, codes, width, outer, tv, tab, M, h_mu, h_s, reach,
                                          ws, y, cells)
            if three and not direct:
                return _three_levels(t, L, codes, U, W, base, rows, width, fid, alpha, fd, fi, M,
                                     h_mu, c_max, dc, thr, lo, hi, cells, xq, cq, tq, rq, fq, vq)
        stamp = t + 1
        J = outer - 1
        for j in range(outer):  # the levels whose factors are all exponential forms, or all
            expo[j] = True      # elementary forms with a piecewise polynomial
            pieces[j] = True
            for i in range(nmem[j]):
                if fi[fid[j, i], 0] != 0:
                    expo[j] = False
                if fi[fid[j, i], 0] != 1 or fi[fid[j, i], 2] < 0:
                    pieces[j] = False
        # the last level's single factor by the addition theorem: e^{κα s u} per rule row
        rJ = codes[t, J]
        sJ = L[t, J, J]
        kJ = fid[J, 0]
        oJ, dJ = fi[kJ, 1], fi[kJ, 2]
        ka = fd[oJ] * alpha[t, J, 0]
        pJ, qJ = oJ + 1, oJ + 1 + (dJ + 1)  # rows P and Q
        add = nmem[J] == 1 and fi[kJ, 0] == 0  # an elementary form is evaluated directly
        poly = nmem[J] == 1 and fi[kJ, 0] == 1 and dJ >= 0  # or by its piecewise polynomial
        many = nmem[J] > 1 and pieces[J]  # or several, each by its piecewise polynomial
        zJ, ihJ, ncJ, powJ = fd[oJ], fd[oJ + 1], fd[oJ + 2], int(fd[oJ + 3])
        idx[:] = 0
        wt[0] = 1.0
        pw[0] = 1.0  # pw[j]: the product of the rule weights of levels 0 … j−1 (no factors)
        th = thr[t]
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
                wj = W[off[j] + idx[j]]
                if pw[j] * wj < th:  # every point below weighs less than thr: pruned
                    idx[j] += 1
                    continue
                pw[j + 1] = pw[j] * wj
                u = U[off[j] + idx[j]]
                zj = mu[j, j] + L[t, j, j] * u
                if expo[j]:
                    fj = _block(j, t, zj, nmem, fid, alpha, fd, fi)
                elif pieces[j]:
                    fj = 1.0
                    last = 1.0
                    for q in range(nmem[j]):
                        if not _repeats(j, q, t, fid, alpha):
                            last = _piecewise(fid[j, q], alpha[t, j, q] * zj, fd, fi)
                        fj *= last
                else:
                    fj = _block_any(j, t, zj, nmem, fid, alpha, fd, fi)
                wt[j + 1] = wt[j] * wj * fj
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
            if poly and tv >= 0 and not direct:
                # one elementary form and the table's cells: both per node in one loop (the same
                # operations as the two loops below, so the same numbers; ~10 % fewer cycles per
                # point).  The piecewise polynomial is written out here and in the `poly` branch
                # below on purpose: the same lines as an inline helper made this loop 2.3× slower
                # (5.8 → 13.7 ns per point; numba's inlining, with or without an early return)
                aJ = alpha[t, J, 0]
                mt = (mu[J, tv] + M) / h_mu
                lt = L[t, tv, J] / h_mu
                lim = th / pw[J]
                acc = 0.0
                for i in range(k):
                    if W[o + i] < lim:  # a point of weight < thr: pruned
                        continue
                    u = U[o + i]
                    x = aJ * (m + sJ * u)
                    yc = (x + zJ) * ihJ
                    if yc >= 0.0 and yc < ncJ:
                        c = int(yc)
                        tc = 2.0 * (yc - c) - 1.0
                        v = _cell_poly(fd, oJ + 4 + c * (dJ + 1), dJ, tc)
                        for jj in range(powJ):
                            v *= x
                    else:
                        v = _terms(kJ, x, fd, fi)
                    fw = W[o + i] * v
                    xt = min(max(mt + lt * u, lo), hi)
                    row = int(xt)
                    xt -= row
                    acc += fw * (((((cells[row, 5] * xt + cells[row, 4]) * xt + cells[row, 3]) * xt
                                   + cells[row, 2]) * xt + cells[row, 1]) * xt + cells[row, 0])
                total += wt[J] * acc
                j = J - 1  # J ≥ 1: m ≥ 2
                idx[j] += 1
                continue
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
                    num[i] = fd[pJ + dJ]
                    den[i] = fd[qJ + dJ]
                for c in range(dJ - 1, -1, -1):
                    p, q = fd[pJ + c], fd[qJ + c]
                    for i in range(k):
                        num[i] = num[i] * e[i] + p
                        den[i] = den[i] * e[i] + q
                for i in range(k):
                    f[i] = W[o + i] * num[i] / den[i]
            elif poly:  # one elementary form: its piecewise polynomial, inline
                aJ = alpha[t, J, 0]
                lim = th / pw[J]
                for i in range(k):
                    if W[o + i] < lim:  # pruned
                        f[i] = 0.0
                        continue
                    x = aJ * (m + sJ * U[o + i])
                    yc = (x + zJ) * ihJ
                    if yc >= 0.0 and yc < ncJ:
                        c = int(yc)
                        tc = 2.0 * (yc - c) - 1.0
                        v = _cell_poly(fd, oJ + 4 + c * (dJ + 1), dJ, tc)
                        for jj in range(powJ):
                            v *= x
                    else:
                        v = _terms(kJ, x, fd, fi)
                    f[i] = W[o + i] * v
            elif many:  # several elementary forms: their piecewise polynomials, member by member
                for i in range(k):
                    f[i] = W[o + i]
                for q in range(nmem[J]):
                    kq, aq = fid[J, q], alpha[t, J, q]
                    if _repeats(J, q, t, fid, alpha):
                        for i in range(k):  # the member before, again (merged slots: f(z)²)
                            f[i] *= e[i]
                        continue
                    for i in range(k):
                        e[i] = _piecewise(kq, aq * (m + sJ * U[o + i]), fd, fi)
                        f[i] *= e[i]
            elif expo[J]:
                for i in range(k):
                    f[i] = W[o + i] * _block(J, t, m + sJ * U[o + i], nmem, fid, alpha, fd, fi)
            else:
                for i in range(k):
                    f[i] = W[o + i] * _block_any(J, t, m + sJ * U[o + i], nmem, fid, alpha, fd,
                                                 fi)
            acc = 0.0
            if tv < 0:
                for i in range(k):
                    acc += f[i]
            elif direct:
                mt = (mu[J, tv] + M) / h_mu
                lt = L[t, tv, J] / h_mu
                for i in range(k):
                    acc += f[i] * _in_mu(y, 0, min(max(mt + lt * U[o + i], lo), hi))
            else:
                mt = (mu[J, tv] + M) / h_mu
                lt = L[t, tv, J] / h_mu
                for i in range(k):
                    x = min(max(mt + lt * U[o + i], lo), hi)
                    row = int(x)
                    x -= row
                    acc += f[i] * (((((cells[row, 5] * x + cells[row, 4]) * x + cells[row, 3]) * x
                                     + cells[row, 2]) * x + cells[row, 1]) * x + cells[row, 0])
            total += wt[J] * acc
            j = J - 1  # J ≥ 1: m ≥ 2
            idx[j] += 1
        return total

    @_njit
    def _three_levels(t, L, codes, U, W, base, rows, width, fid, alpha, fd, fi, M, h_mu, c_max, dc,
                      thr, lo, hi, cells, xq, cq, tq, rq, fq, vq):
        """E_t of :func:`_tuple_sum` for four variables whose three outer levels are each one
        elementary form with a piecewise polynomial (GELU, erf, softplus, swish: the four-point
        expectations ⟨σ_a σ_b σ_c σ_d⟩ of deep layers), the table's cells read (not ``direct``):
        the same sum, with the same operations in the same order (the same numbers,
        tests/test_gaussian_jit.py), written as three plain loops instead of the walk, and the
        last level in passes over its nodes without a branch (cell coordinates; the polynomial;
        weight × polynomial × table; then the sum in order), which the compiler pipelines and
        partly vectorises: ~15 % less time on these tuples (docs/gaussian.md).  Indices into the
        flat tables are unsigned, so no wrap-around of negative indices is tested per read."""
        cf = cells.reshape(-1)
        th = thr[t]
        k0, k1, k2 = fid[0, 0], fid[1, 0], fid[2, 0]
        a0, a1, a2 = alpha[t, 0, 0], alpha[t, 1, 0], alpha[t, 2, 0]
        L00, L10, L11, L20, L21, L22 = L[t, 0, 0], L[t, 1, 0], L[t, 1, 1], L[t, 2, 0], L[t, 2, 1], L[t, 2, 2]
        L30, L31, L32 = L[t, 3, 0], L[t, 3, 1], L[t, 3, 2]
        r0, r1, r2 = codes[t, 0], codes[t, 1], codes[t, 2]
        k = width[r2]
        # the last level's piecewise polynomial (:func:`_piecewise`): Z, 1/h, cells, q, then 8
        # coefficients per cell
        oJ = fi[k2, 1]
        zJ, ihJ, ncJ, powJ = fd[oJ], fd[oJ + 1], fd[oJ + 2], int(fd[oJ + 3])
        last = int(ncJ) - 1
        first = np.uint64(oJ + 4)
        lt = L32 / h_mu
        o0 = base[r0] + _row(rows[r0], 0.0, L00, c_max, dc) * width[r0]
        total = 0.0
        for i0 in range(width[r0]):  # level 0 (the walk's pw, wt and mu, written out)
            w0 = W[o0 + i0]
            if 1.0 * w0 < th:  # every point below weighs less than thr: pruned
                continue
            u0 = U[o0 + i0]
            wt1 = 1.0 * w0 * _piecewise(k0, a0 * (0.0 + L00 * u0), fd, fi)
            pw1 = 1.0 * w0
            m1, m2, m3 = 0.0 + L10 * u0, 0.0 + L20 * u0, 0.0 + L30 * u0
            o1 = base[r1] + _row(rows[r1], m1, L11, c_max, dc) * width[r1]
            for i1 in range(width[r1]):  # level 1
                w1 = W[o1 + i1]
                if pw1 * w1 < th:  # pruned
                    continue
                u1 = U[o1 + i1]
                wt2 = wt1 * w1 * _piecewise(k1, a1 * (m1 + L11 * u1), fd, fi)
                lim = th / (pw1 * w1)
                m = m2 + L21 * u1
                mt = (m3 + L31 * u1 + M) / h_mu
                o = base[r2] + _row(rows[r2], m, L22, c_max, dc) * k
                # level 2: the nodes from the first to the last of weight ≥ thr / pw
                i_lo, i_hi = 0, k
                while i_lo < k and W[o + i_lo] < lim:
                    i_lo += 1
                while i_hi > i_lo and W[o + i_hi - 1] < lim:
                    i_hi -= 1
                off_table = False
                for i in range(i_lo, i_hi):  # the cells of the polynomial and of the table
                    u = U[o + i]
                    x = a2 * (m + L22 * u)
                    xq[i] = x
                    yc = (x + zJ) * ihJ
                    off_table |= not (yc >= 0.0 and yc < ncJ)
                    c = min(int(max(yc, 0.0)), last)  # = int(yc) on the polynomial
                    cq[i] = first + np.uint64(c) * np.uint64(8)
                    tq[i] = 2.0 * (yc - c) - 1.0
                    xt = min(max(mt + lt * u, lo), hi)
                    row = int(xt)
                    rq[i] = np.uint64(row) * np.uint64(6)
                    fq[i] = xt - row
                for i in range(i_lo, i_hi):  # the polynomial (:func:`_cell_poly`, degree 7)
                    tc = tq[i]
                    q = cq[i]
                    t2 = tc * tc
                    vq[i] = ((fd[q] + fd[q + np.uint64(1)] * tc)
                             + (fd[q + np.uint64(2)] + fd[q + np.uint64(3)] * tc) * t2
                             + ((fd[q + np.uint64(4)] + fd[q + np.uint64(5)] * tc)
                                + (fd[q + np.uint64(6)] + fd[q + np.uint64(7)] * tc) * t2) * (t2 * t2))
                for _ in range(powJ):
                    for i in range(i_lo, i_hi):
                        vq[i] *= xq[i]
                if off_table:  # beyond the polynomial: the form's terms
                    for i in range(i_lo, i_hi):
                        yc = (xq[i] + zJ) * ihJ
                        if not (yc >= 0.0 and yc < ncJ):
                            vq[i] = _terms(k2, xq[i], fd, fi)
                for i in range(i_lo, i_hi):  # weight × f × G (the cell's quintic)
                    xt = fq[i]
                    q = rq[i]
                    vq[i] = (W[o + i] * vq[i]) * (((((cf[q + np.uint64(5)] * xt + cf[q + np.uint64(4)]) * xt
                                                    + cf[q + np.uint64(3)]) * xt + cf[q + np.uint64(2)]) * xt
                                                   + cf[q + np.uint64(1)]) * xt + cf[q])
                acc = 0.0
                for i in range(i_lo, i_hi):
                    if W[o + i] >= lim:  # the points of weight < thr stay out, as in the walk
                        acc += vq[i]
                total += wt2 * acc
        return total

    @_njit
    def _nested_group(grp, groups, L, codes, U, W, base, rows, width, umax, nmem, fid, alpha,
                      fd, fi, outer, tv, tab, M, h_mu, h_s, reach, c_max, dc, expo_max, thr, three,
                      out):
        """The tuples t ≡ grp (mod groups), with one set of scratch arrays.  Interleaved
        groups spread expensive and cheap tuples evenly; they run in Python threads (the
        kernel releases the GIL), not in numba's threading layer: GNU OpenMP is not safe
        across fork (scripts use process pools) and the workqueue layer not across threads."""
        kmax = np.max(width)
        cells = np.empty((tab.shape[1], 6))
        y = np.empty(tab.shape[1])
        eu = np.empty(np.max(rows * width))
        eu_stamp = np.zeros(np.max(rows), np.int64)
        f, e, num, den = np.empty(kmax), np.empty(kmax), np.empty(kmax), np.empty(kmax)
        idx = np.zeros(LEVELS, np.intp)
        off = np.zeros(LEVELS, np.intp)
        wt = np.ones(LEVELS + 1)
        pw = np.ones(LEVELS + 1)
        mu = np.zeros((LEVELS + 1, LEVELS + 1))
        ws = np.zeros(6)
        expo = np.zeros(LEVELS, np.bool_)
        pieces = np.zeros(LEVELS, np.bool_)
        xq, tq, fq, vq = np.empty(kmax), np.empty(kmax), np.empty(kmax), np.empty(kmax)
        cq, rq = np.zeros(kmax, np.uint64), np.zeros(kmax, np.uint64)
        for t in range(grp, L.shape[0], groups):
            out[t] = _tuple_sum(t, L, codes, U, W, base, rows, width, umax, nmem, fid, alpha,
                                fd, fi, outer, tv, tab, M, h_mu, h_s, reach, c_max, dc, expo_max,
                                thr, cells, y, eu, eu_stamp, f, e, num, den, idx, off, wt, pw, mu,
                                ws, expo, pieces, three, xq, cq, tq, rq, fq, vq)


    @_inline
    def _in_s(tc, js, ws, y, o, lo, hi):
        """y[o + i] = Σ_q ws[q] tc[js − 2 + q, i] for lo ≤ i < hi: the rows of μ of a table in
        columns (n_s, n_μ) interpolated in s (6-point Lagrange): six streams through memory."""
        c0, c1, c2, c3, c4, c5 = tc[js - 2], tc[js - 1], tc[js], tc[js + 1], tc[js + 2], tc[js + 3]
        w0, w1, w2, w3, w4, w5 = ws[0], ws[1], ws[2], ws[3], ws[4], ws[5]
        for i in range(lo, hi):
            y[o + i] = (w0 * c0[i] + w1 * c1[i] + w2 * c2[i] + w3 * c3[i] + w4 * c4[i]
                        + w5 * c5[i])

    @_inline
    def _in_mu(y, o, x):
        """The 6-point Lagrange interpolant of the rows y[o + i − 2 … o + i + 3] at x (i = ⌊x⌋, in
        table units): the value of the quintic of cell i (:func:`_quintic`) without building it."""
        i = int(x)
        w0, w1, w2, w3, w4, w5 = _lagrange(x - i)
        o += i
        return (w0 * y[o - 2] + w1 * y[o - 1] + w2 * y[o] + w3 * y[o + 1] + w4 * y[o + 2]
                + w5 * y[o + 3])

    @_inline
    def _g_row(y, k, n, mu, M, h_mu, lo, hi):
        """G of row k at μ: x = (μ + M)/h_μ clamped to [lo[k], hi[k]] (TABLE_REACH standard
        deviations), read from the row's s-interpolated table y[k n : (k + 1) n] by :func:`_in_mu`."""
        return _in_mu(y, k * n, min(max((mu + M) / h_mu, lo[k]), hi[k]))

    @_njit
    def _two_factor_sum(t, A, sd, tid, codes, U, W, base, rows, width, tabs, M, h_mu, h_s, reach,
                        c_max, dc, thr, y, lo, hi, ws):
        """E_t = Σ_{i₀} w₀ G₀(A₀₀ u₀) Σ_{i₁} w₁ Π_{k=1..3} G_k(A_k0 u₀ + A_k1 u₁) (module
        :mod:`.twofactor`): per row k the table tabs[tid[t, k]] interpolated in s = sd[t, k] once
        (y[k n_μ + i], rows i within TABLE_REACH standard deviations |A_k| of μ), then in μ per
        point."""
        n_s, n_mu = tabs.shape[1], tabs.shape[2]
        for k in range(4):
            xs = sd[t, k] / h_s + 2.0
            js = min(max(int(math.floor(xs)), 2), n_s - 4)
            ws[0], ws[1], ws[2], ws[3], ws[4], ws[5] = _lagrange(xs - js)
            rr = reach * math.sqrt(A[t, k, 0] ** 2 + A[t, k, 1] ** 2) / h_mu
            lo[k] = max(M / h_mu - rr, 2.0)
            hi[k] = min(M / h_mu + rr, n_mu - 4.0)
            _in_s(tabs[tid[t, k]], js, ws, y, k * n_mu, int(lo[k]) - 2, int(hi[k]) + 4)
        r0, r1 = codes[t, 0], codes[t, 1]
        o0 = base[r0] + _row(rows[r0], 0.0, 1.0, c_max, dc) * width[r0]
        a00 = A[t, 0, 0]
        a10, a11, a20, a21, a30, a31 = (A[t, 1, 0], A[t, 1, 1], A[t, 2, 0], A[t, 2, 1], A[t, 3, 0],
                                        A[t, 3, 1])
        # the rows' coordinates in table units, x_k = (μ_k + M)/h_μ, scaled once per node of w₀ and
        # stepped along w₁ (a division per read before: ~8 % of this kernel; rounding only)
        ih = 1.0 / h_mu
        b11, b21, b31 = a11 * ih, a21 * ih, a31 * ih
        lo1, hi1, lo2, hi2, lo3, hi3 = lo[1], hi[1], lo[2], hi[2], lo[3], hi[3]
        k1 = width[r1]
        total = 0.0
        th = thr[t]
        for i0 in range(width[r0]):
            w0 = W[o0 + i0]
            if w0 < th:  # every point of this node weighs less than thr: pruned
                continue
            lim = th / w0
            u0 = U[o0 + i0]
            g0 = _g_row(y, 0, n_mu, a00 * u0, M, h_mu, lo, hi)
            m1, m2, m3 = a10 * u0, a20 * u0, a30 * u0
            x1, x2, x3 = (m1 + M) * ih, (m2 + M) * ih, (m3 + M) * ih
            o1 = base[r1] + _row(rows[r1], m1, a11, c_max, dc) * k1
            acc = 0.0
            for i1 in range(k1):
                if W[o1 + i1] < lim:  # pruned
                    continue
                u1 = U[o1 + i1]
                acc += (W[o1 + i1] * _in_mu(y, n_mu, min(max(x1 + b11 * u1, lo1), hi1))
                        * _in_mu(y, 2 * n_mu, min(max(x2 + b21 * u1, lo2), hi2))
                        * _in_mu(y, 3 * n_mu, min(max(x3 + b31 * u1, lo3), hi3)))
            total += w0 * g0 * acc
        return total

    @_njit
    def _two_factor_group(grp, groups, A, sd, tid, codes, U, W, base, rows, width, tabs, M, h_mu,
                          h_s, reach, c_max, dc, thr, out):
        """The tuples t ≡ grp (mod groups) of :func:`two_factor`, with one set of scratch rows."""
        y = np.empty(4 * tabs.shape[2])
        lo, hi, ws = np.empty(4), np.empty(4), np.empty(6)
        for t in range(grp, A.shape[0], groups):
            out[t] = _two_factor_sum(t, A, sd, tid, codes, U, W, base, rows, width, tabs, M, h_mu,
                                     h_s, reach, c_max, dc, thr, y, lo, hi, ws)


    @_njit
    def pair_horner(K, mult, a, b, cfT, cgT, start, step, out):
        """out[p] = Σ_{k ≤ K[p]} mult[p]^k cfT[n_k, a[p]] cgT[n_k, b[p]], n_k = start + step k, by
        Horner's rule from the highest term: the pair sums of :func:`.series.pair_series` (which
        runs the same recurrence over all pairs at once in numpy, one Python step per term: ~1 ms
        a call at Q = 2048), with the same operations per pair in the same order."""
        for p in range(K.size):
            v = 0.0
            for k in range(K[p], -1, -1):
                n = start + step * k
                v = v * mult[p] + cfT[n, a[p]] * cgT[n, b[p]]
            out[p] = v


def exponential_coefficients(num, den, degree):
    """Rows P, Q, P̃, Q̃ (ascending powers, length degree + 1) of f = P(E)/Q(E)."""
    c = np.zeros((4, degree + 1))
    c[0, :len(num)] = num
    c[1, :len(den)] = den
    c[2] = c[0, ::-1]
    c[3] = c[1, ::-1]
    return c


def factor_data(f: Factor):
    """The kernel's description of a smooth factor, or None when it has neither form (it then
    keeps the numpy path): ``("expo", κ, rows)`` for an exponential form R(e^{κz}) (rows of
    :func:`exponential_coefficients`), ``("form", form)`` for an
    :class:`.elementary.ElementaryForm`."""
    if f.expo is not None:
        return ("expo", f.expo.kappa, exponential_coefficients(f.expo.num, f.expo.den,
                                                               f.expo.degree))
    form = elementary_form(f.expr) if f.smooth and f.delta == 0 else None
    return None if form is None else ("form", form)


def pack_factors(factors):
    """The two flat arrays the kernel reads the factors from: ``fd`` (float64) and ``fi``
    (int rows of 5).  Row k < len(factors) describes factor k:

    * exponential form: fi[k] = (0, o, d, 0, 0); fd[o] = κ, then the rows P, Q, P̃, Q̃ of
      :func:`exponential_coefficients`, d + 1 each;
    * elementary form (:mod:`.elementary`): fi[k] = (1, o, d, first term row, end); d ≥ 0:
      its piecewise polynomial (:func:`.elementary.form_table`, g = x^q h) at fd[o] = Z,
      fd[o + 1] = 1/h, fd[o + 2] = number of cells, fd[o + 3] = q, then d + 1 coefficients of
      h per cell; d = −1: none.

    Further rows: a term, (2, offset of its polynomial's coefficients, degree, first atom row,
    end); an atom, (code, offset of (κ, λ, μ), row of its exponential form for EXPO, 0, 0);
    the exponential form of an EXPO atom, as for a factor."""
    fd: list = []  # float64 arrays, concatenated at the end
    size = [0]
    rows: list = [None] * len(factors)

    def put(values):
        v = np.ravel(np.asarray(values, dtype=float))
        fd.append(v)
        size[0] += v.size
        return size[0] - v.size

    def expo_row(kappa, c):
        return [0, put(np.concatenate([[kappa], c.ravel()])), c.shape[1] - 1, 0, 0]

    for k, d in enumerate(factors):
        if d[0] == "expo":
            rows[k] = expo_row(d[1], d[2])
    for k, d in enumerate(factors):
        if d[0] != "form":
            continue
        form = d[1]
        if form.table is not None:
            o = put([FORM_TABLE_Z, 1.0 / FORM_TABLE_H, form.table.shape[0], form.power])
            put(form.table)
            deg = form.table.shape[1] - 1
        else:
            o, deg = 0, -1
        atoms = []  # rows of the form's distinct atoms
        for a in form.atoms:
            ref = 0
            if a.code == ATOM_EXPO:
                ref = len(rows)
                rows.append(expo_row(a.expo.kappa, exponential_coefficients(
                    a.expo.num, a.expo.den, a.expo.degree)))
            atoms.append([a.code, put([a.kappa, a.shift, a.offset]), ref, 0, 0])
        t0 = len(rows)
        terms = []
        for t in form.terms:
            rows.append(None)  # the term rows first (contiguous), then their atom rows
            terms.append(t)
        for i, t in enumerate(terms):
            q0 = len(rows)
            rows.extend(atoms[j] for j in t.atoms)
            rows[t0 + i] = [2, put(t.poly), len(t.poly) - 1, q0, len(rows)]
        rows[k] = [1, o, deg, t0, t0 + len(terms)]
    # padded: the kernel reads fd[o … o + 3] of the last level's factor before it knows its kind
    return np.concatenate(fd + [np.zeros(4)]), np.array(rows, dtype=np.intp).reshape(-1, 5)


def guarded(kernel, *args, **kwargs):
    """``kernel(*args, **kwargs)``, with numba's compiler errors (a broken installation, a compiler
    failure) raised as a RuntimeError that names the numpy path."""
    try:
        return kernel(*args, **kwargs)
    except COMPILER_ERRORS as exc:
        raise RuntimeError(f"the compiled quadrature kernel failed ({type(exc).__name__}); "
                           "use Settings(jit=False) (NTKDIAGRAMS_JIT=0) for the numpy path") from exc


def three_levels(nmem, fid, fi, outer: int, tv: int) -> bool:
    """Whether the tuples of a call can take the kernel's three-level loops
    (:func:`_three_levels`): three outer levels and the table (four variables), each outer level
    one elementary form with its piecewise polynomial, the last one of degree 7 (the tables'
    degree); ``fi``: the factors' rows of :func:`pack_factors`."""
    if outer != 3 or tv != 3:
        return False
    ks = [int(fid[j, 0]) for j in range(3)]
    return (all(nmem[j] == 1 and fi[k, 0] == 1 and fi[k, 2] >= 0 for j, k in enumerate(ks))
            and fi[ks[2], 2] == 7)


def nested(L, codes, bank, nmem, fid, alpha, factors, outer, tab, tv, M, h_mu, h_s, reach,
           c_max, dc, expo_max, thr=None, pool=None, groups=1, three=True):
    """Σ of the nested rule per tuple (see the module docstring).  ``factors``: per distinct
    factor its :func:`factor_data`; ``expo_max``: the bound on |κα z|·d of the addition
    theorem (negative: never used); ``tab``: the table of the last variable's factor in columns,
    (n_s, n_μ) (:func:`.table.g_table_columns`; with ``tv`` < 0 unused); ``pool``: an executor
    whose threads share the tuples in ``groups`` interleaved groups (None: this thread);
    ``three``: where :func:`three_levels` holds, the tuples that read the table's cells take the
    three plain loops (False: the walk; the same numbers)."""
    fd, fi = pack_factors(factors)
    three = bool(three) and three_levels(nmem, fid, fi, outer, tv)
    U, W, base, rows, width, umax = bank
    T = L.shape[0]
    out = np.empty(T)
    groups = 1 if pool is None else max(1, min(T, groups))

    thr = np.zeros(T) if thr is None else np.ascontiguousarray(thr, dtype=float)

    def run(grp):
        _nested_group(grp, groups, L, codes, U, W, base, rows, width, umax, nmem, fid, alpha,
                      fd, fi, outer, tv, tab, M, h_mu, h_s, reach, c_max, dc, float(expo_max),
                      thr, three, out)
    in_groups(pool, groups, run)
    return out


def two_factor(A, sd, tid, codes, bank, tabs, M, h_mu, h_s, reach, c_max, dc, thr=None, pool=None,
               groups=1):
    """E per tuple of the two-factor forms (:mod:`.twofactor`): loadings A (T, 4, 2), private
    standard deviations sd (T, 4), each row's table tabs[tid[t, k]] (tables of G on the same
    grid μ = −M + i h_μ, s = (j − 2) h_s, in columns: tabs (·, n_s, n_μ)), the rule codes (T, 2) as indices into ``bank``
    (:func:`.rules.rule_bank`); threads as in :func:`nested`."""
    U, W, base, rows, width, _ = bank
    T = A.shape[0]
    out = np.empty(T)
    groups = 1 if pool is None else max(1, min(T, groups))

    thr = np.zeros(T) if thr is None else np.ascontiguousarray(thr, dtype=float)

    def run(grp):
        _two_factor_group(grp, groups, A, sd, tid, codes, U, W, base, rows, width, tabs, float(M),
                          h_mu, h_s, reach, c_max, dc, thr, out)
    in_groups(pool, groups, run)
    return out
