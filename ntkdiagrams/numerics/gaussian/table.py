"""The tabulated innermost integral of the fast path.

For m ≥ 3 variables the fast path ends with one smooth factor f of the last variable,
z_{m−1} = μ + s ξ given the outer coordinates (μ = Σ_{j<m−1} L_{m−1,j} u_j, s = L_{m−1,m−1}):

    G(μ, s) = E[f(μ + s ξ)],   ξ ~ N(0, 1).

It is tabulated once per factor on μ = −M + i h, s = |j − 2| h (:func:`g_table`, grown to
the widest extent asked for so far: :class:`GrowingTable`; the spacing h of each factor's table from
:mod:`.spacing`, :data:`TABLE_H_MU` for the sharpest factors; each entry
by the split rule of :data:`TABLE_DEGREE` nodes per side, :data:`TABLE_DEGREE_WIDE` for
s > :data:`TABLE_WIDE_S`, :data:`TABLE_DEGREE_WIDER` for s > :data:`TABLE_WIDER_S`, split at ξ = −μ/s), and read by 6-point
Lagrange interpolation in s (the same weights for all points of a tuple) and the quintic of the
6-point interpolant in μ on each cell (:mod:`.interpolation`).  The interpolation error is
O(h⁶ max|∂⁶G|); until 2026-12-01 4 × 4 points, O(h⁴ max|∂⁴G|), left up to 1e-6 of max|f| pointwise
(tanh'' at s ≤ 0.05), ~1e-8 per expectation and the fast path's floor (docs/gaussian.md).  G is
even in s: the rows j = 0, 1 are those of s = 2 h, h.  Values of
μ beyond :data:`TABLE_REACH` standard deviations of μ are clamped: their nodes carry a Gaussian
weight < e^{−TABLE_REACH²/2} ≈ 3e-18.
"""
from __future__ import annotations

import math
import threading
from functools import lru_cache

import numpy as np

from .context import in_groups
from .factors import Factor
from .interpolation import lagrange6, quintic_coefficients
from .rules import split_nodes, split_rules_full

__all__ = ["TABLE_DEGREE", "TABLE_DEGREE_WIDE", "TABLE_DEGREE_WIDER", "TABLE_H_MU", "TABLE_H_S", "TABLE_REACH",
           "TABLE_WIDE_S", "TABLE_WIDER_S", "expectation_at", "table_degree",
           "GrowingTable", "extent_for", "g_table", "g_table_columns", "growing_table", "table_extent",
           "table_lookup"]

#: Grid spacings (in μ and in s) of the table of the innermost conditional expectation
#: G(μ, s) = E[f(μ + s ξ)], interpolated with 6 × 6-point Lagrange stencils: the finest, and the
#: default of the functions below; smoother factors take coarser ones (:mod:`.spacing`, since
#: 2026-12-03), the same in μ and s.
TABLE_H_MU, TABLE_H_S = 0.02, 0.02
#: The table lookup clamps μ to ± TABLE_REACH standard deviations of μ (nodes beyond carry
#: a weight < e^{-TABLE_REACH²/2} ≈ 3e-18).
TABLE_REACH = 9.0
#: Nodes per side used to build the G(μ, s) table (rows s ≤ TABLE_WIDE_S).
TABLE_DEGREE = 24
#: Rows with s > TABLE_WIDE_S (large conditional variances, issue 15) use TABLE_DEGREE_WIDE nodes
#: per side: at s = 3 … 5 the 24-node rule leaves up to 6e-7 (tanh'') … 2e-5 pointwise, 48
#: nodes ≤ 2e-9 (tanh, erf, gelu and their first two derivatives; docs/gaussian.md).
TABLE_WIDE_S, TABLE_DEGREE_WIDE = 2.0, 48
#: Rows with s > TABLE_WIDER_S (effective variances beyond 20, 2026-12-01) use TABLE_DEGREE_WIDER
#: nodes per side: at s = 6.5 … 8 the 48-node rule leaves up to 1.8e-6 … 2.5e-5 of a column's
#: largest entry (tanh, erf), 96 nodes ≤ 3.2e-12 (tanh, gelu, erf, softplus, swish and their first
#: two derivatives, against 140 nodes; at s = 5: 48 nodes 5.4e-8, 96 nodes 3.4e-14).
TABLE_WIDER_S, TABLE_DEGREE_WIDER = 4.5, 96
#: a column of the table is computed in slices of about this many (μ, node) values: the slices'
#: temporaries stay in the heap and mostly in the cache, where a whole column's (4601 × 192
#: doubles at s > TABLE_WIDER_S, 7 MB each) went through fresh pages every time (the growths of
#: a softplus network, |x|²/n0 = 3, C_W = 2: 0.75 → 0.57 s on 2 threads).  The entries are the
#: same: each row's sum is the same sum
TABLE_CHUNK_VALUES = 1 << 17


class GrowingTable:
    """G(μ, s) of one factor on the grid μ_i = i h (|i| ≤ I), s_j = |j − 2| h (j < J), spacing
    ``h`` (default :data:`TABLE_H_MU`), grown on demand: a call that needs a wider extent
    computes only the entries it lacks.

    Before 2026-12-01 each extent (M, S) of :func:`table_extent` built its own table; the calls
    of one GELU network at |x|²/n0 = 3, C_W = 2 asked for eleven extents and spent 7.9 s of 32 s
    building them.  Each entry depends only on (i, j), so a table read beyond the extent a call
    needs gives the same values."""

    def __init__(self, factor: Factor, h: float = TABLE_H_MU):
        self.factor = factor
        self.h = float(h)
        self.I, self.J = -1, 0
        self.tab = np.empty((0, 0))
        self._columns = None  # the transposed copy of self.tab, made on the first columns() call
        self._lock = threading.Lock()

    def extent(self, M: float, S: float, quad=None) -> tuple[np.ndarray, float]:
        """(tab, M_t): the table (n_μ, n_s) on μ = −M_t + i h, s = |j − 2| h, with
        M_t ≥ M and s up to at least S + 3 h (the 6-point stencil's last row).  ``quad``: a
        :class:`.context.Quadrature` whose pool's threads share the new columns and whose tables'
        folder holds the split rules (None: this thread, the rules computed; the same entries
        either way)."""
        I = int(math.ceil(M / self.h - 1e-9))
        J = int(math.ceil(S / self.h - 1e-9)) + 6
        with self._lock:
            if I > self.I or J > self.J:
                self._grow(max(I, self.I), max(J, self.J), quad)
            return self.tab, self.I * self.h

    def _grow(self, I: int, J: int, quad) -> None:
        tab = np.empty((2 * I + 1, J))
        I0, J0 = self.I, self.J
        if J0:
            tab[I - I0:I + I0 + 1, :J0] = self.tab
            rest = np.r_[np.arange(-I, -I0), np.arange(I0 + 1, I + 1)]
            self._entries(rest, np.arange(J0), tab, rest + I, 0, quad)
        self._entries(np.arange(-I, I + 1), np.arange(J0, J), tab, slice(None), J0, quad)
        self.tab, self.I, self.J, self._columns = tab, I, J, None

    def columns(self, tab: np.ndarray) -> np.ndarray:
        """The table ``tab`` (one returned by :meth:`extent`) as contiguous columns, (n_s, n_μ):
        the compiled kernel interpolates a tuple's six columns in s over the whole window of μ it
        can reach, a stream through six rows of this layout; in the (n_μ, n_s) layout each row of
        μ is a cache line of its own (2–4× slower on tables of 4000 × 250 entries)."""
        with self._lock:
            if tab is self.tab:
                if self._columns is None:
                    self._columns = np.ascontiguousarray(tab.T)
                return self._columns
        return np.ascontiguousarray(tab.T)

    def _entries(self, i: np.ndarray, j: np.ndarray, out: np.ndarray, rows, col0: int,
                 quad) -> None:
        """out[rows, col0 + c] = G(i h, |j_c − 2| h) for each column c (:func:`expectation_at`).  With a ``quad`` whose pool has
        threads, they take the columns in interleaved groups (the wide columns cost 4× the
        narrow ones; numpy releases the GIL in the array operations; a column's arithmetic does
        not depend on the thread: the same entries).  The growths of one softplus network at
        |x|²/n0 = 3, C_W = 2 compute ~1.5·10⁶ entries, ~1 s on one thread."""
        mu = i * self.h
        if i.size == 0 or j.size == 0:
            return
        folder = None if quad is None else quad.tables

        def column(c: int) -> None:
            out[rows, col0 + c] = expectation_at(self.factor, mu, abs(int(j[c]) - 2) * self.h, folder)

        pool = None if quad is None else quad.pool
        groups = 1 if pool is None else min(j.size, 4 * quad.threads)
        in_groups(pool, groups, lambda g: [column(c) for c in range(g, j.size, groups)])


def expectation_at(factor: Factor, mu: np.ndarray, s: float, folder=None) -> np.ndarray:
    """G(μ, s) = E[f(μ + s ξ)] at the values ``mu`` (n,) and one s ≥ 0, as the table's entries
    are computed: f(μ) at s = 0, else the split rule of :func:`table_degree` nodes per side,
    split at ξ = −μ/s (``folder``: where the rules are stored, :mod:`.stored`), in slices of
    about :data:`TABLE_CHUNK_VALUES` (μ, node) values."""
    if s == 0:
        return factor.plus(mu)
    rule = split_rules_full(table_degree(s), folder)
    col = np.empty(mu.size)
    step = max(1, TABLE_CHUNK_VALUES // rule[0].shape[1])
    for a in range(0, mu.size, step):
        m = mu[a:a + step]
        u, w = split_nodes(rule, -m / s)
        col[a:a + m.size] = np.sum(w * factor.plus(m[:, None] + s * u), axis=1)
    return col


def table_degree(s: float) -> int:
    """Nodes per side of the split rule of the table's row at s: TABLE_DEGREE, TABLE_DEGREE_WIDE
    beyond TABLE_WIDE_S, TABLE_DEGREE_WIDER beyond TABLE_WIDER_S."""
    return TABLE_DEGREE if s <= TABLE_WIDE_S else TABLE_DEGREE_WIDE if s <= TABLE_WIDER_S \
        else TABLE_DEGREE_WIDER


@lru_cache(maxsize=32)
def growing_table(factor: Factor, h: float = TABLE_H_MU) -> GrowingTable:
    """The one growing table of a factor at spacing h (:class:`GrowingTable`)."""
    return GrowingTable(factor, h)


def g_table(factor: Factor, M: float, S: float, quad=None, h: float = TABLE_H_MU) -> tuple[np.ndarray, float]:
    """(tab, M_t): G(μ, s) = E[f(μ + s ξ)] on μ = −M_t + i h (M_t ≥ M), s = (j − 2) h
    (j = 0, 1 are s = −2 h, −h ≡ 2 h, h), s up to at least S; shape (n_μ, n_s).  Read with M_t
    and the same h.  ``quad``: the :class:`.context.Quadrature` whose threads and stored rules a
    growth uses (:meth:`GrowingTable.extent`)."""
    return growing_table(factor, h).extent(M, S, quad)


def g_table_columns(factor: Factor, tab: np.ndarray, h: float = TABLE_H_MU) -> np.ndarray:
    """``tab`` (a table of ``factor`` at spacing h from :func:`g_table`) as contiguous columns
    (n_s, n_μ), the layout of the compiled kernel (:meth:`GrowingTable.columns`; the same
    entries)."""
    return growing_table(factor, h).columns(tab)


def extent_for(mu_sd: float, s_max: float) -> tuple[float, float]:
    """(M, S) of the table for lookups whose μ has standard deviation ≤ ``mu_sd`` and whose
    s ≤ ``s_max``: |μ| ≤ M = TABLE_REACH standard deviations (beyond: clamped; such nodes carry
    weight < 1e-17), both rounded up (M to a multiple of 2, S of 1/4) so that a table grows in a
    few steps.  The entries do not depend on the extent (:class:`GrowingTable`).  Until
    2026-12-02 S was rounded up to an integer: the columns beyond TABLE_WIDER_S take 192 nodes
    per entry, and a network whose largest s is 4.27 (softplus at |x|²/n0 = 3, C_W = 2) computed
    28 such columns of 4801 entries that no lookup reads."""
    S = max(2.0, math.ceil(4.0 * s_max) / 4.0)
    M = max(20.0, 2.0 * math.ceil(TABLE_REACH * mu_sd / 2))
    return float(M), float(S)


def table_extent(L: np.ndarray, m: int) -> tuple[float, float]:
    """(M, S) of :func:`extent_for` for tuples with Cholesky factors L (T, m, m): the last
    variable's μ = Σ_{j<m−1} L_{m−1,j} u_j and s = L_{m−1,m−1}."""
    return extent_for(float(np.sqrt(np.max(np.sum(L[:, m - 1, :m - 1] ** 2, axis=1)))),
                      float(np.max(L[:, m - 1, m - 1])))


def table_lookup(tab: np.ndarray, M: float, x: np.ndarray, L: np.ndarray, m: int,
                 h: float = TABLE_H_MU) -> np.ndarray:
    """G(μ, s) at the points of a chunk: x (T, P) holds μ in table units, x = (μ + M)/h
    (modified in place), s = L[t, m−1, m−1] per tuple; ``tab`` of spacing h.

    6-point Lagrange interpolation in s (per tuple) and the quintic in μ of each table cell, on
    the window of table rows that the chunk's μ values need."""
    T = L.shape[0]
    n_mu, n_s = tab.shape
    # nodes whose μ lies beyond TABLE_REACH standard deviations of μ carry a weight
    # < e^{-TABLE_REACH²/2} (Cauchy–Schwarz on u): clamp them, which keeps the window small
    reach = TABLE_REACH * np.sqrt(np.sum(L[:, m - 1, :m - 1] ** 2, axis=1))[:, None] / h
    np.clip(x, M / h - reach, M / h + reach, out=x)
    lo, hi = int(x.min()), int(x.max())
    if lo < 2 or hi > n_mu - 4:  # beyond the table (weight < 1e-17): clamped
        np.clip(x, 2.0, n_mu - 4.0, out=x)
        lo, hi = int(x.min()), int(x.max())
    lo, hi = lo - 2, hi + 3  # the 6-point stencil of cell i is rows i-2 … i+3
    xs = L[:, m - 1, m - 1] / h + 2.0
    js = np.clip(np.floor(xs).astype(np.intp), 2, n_s - 4)
    ws = lagrange6(xs - js)
    win = tab[lo:hi + 1]
    tt = sum(wk[:, None] * win[:, js + (k - 2)].T for k, wk in enumerate(ws))  # (T, nw)
    nw = tt.shape[1]
    # quintic coefficients of the 6-point interpolant on each cell [i, i+1]
    coef = np.stack(quintic_coefficients(*(tt[:, k:nw - 5 + k] for k in range(6))),
                    axis=-1).reshape(-1, 6)
    i0 = x.astype(np.intp)
    x -= i0
    i0 += (np.arange(T) * (nw - 5) - 2 - lo)[:, None]
    cf = np.take(coef, i0, axis=0)  # (T, P, 6): one row per point
    g = cf[..., 5] * x
    for k in (4, 3, 2, 1):
        g += cf[..., k]
        g *= x
    g += cf[..., 0]
    return g
